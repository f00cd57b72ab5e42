"""geodns.toml: parse, validate and expose the server and POP-selection config.

Every problem is reported at once, each as ``FILE:LINE: key.path: problem`` so an
operator can fix a whole config in one edit cycle.  tomllib gives no positions, so
a small scanner (:class:`TomlLocator`) maps key paths back to source lines.
Unknown keys are errors: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import ipaddress
import math
import re
import shlex
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, cast

__all__ = [
    "AdminConfig",
    "Check",
    "Config",
    "ConfigError",
    "ExplainConfig",
    "GeoIPConfig",
    "HostPort",
    "IPNetwork",
    "Pool",
    "Pop",
    "ServerConfig",
    "TomlLocator",
    "default_geoip_database",
    "load_config",
    "parse_config",
    "parse_hostport",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
KeyPath = tuple[str | int, ...]

STRATEGIES: Final = ("geo", "nearest", "failover", "weighted", "all")
ALL_DOWN_POLICIES: Final = ("fail_open", "nodata", "servfail")
CHECK_TYPES: Final = ("http", "https", "tcp", "dns", "external")
CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
MAX_TTL: Final = 2**31 - 1

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_SUBDIVISION_RE = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
_BARE_RUN_RE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_RE = re.compile(r"[^,\]}\r\n#]*")


class ConfigError(Exception):
    """The config is invalid; ``problems`` lists every ``FILE:LINE: key.path: problem``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class HostPort(NamedTuple):
    """A listen address: IP literal (no brackets) and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_DEFAULT_HTTP: Final = HostPort("127.0.0.1", 8053)
_DEFAULT_LISTEN: Final = (HostPort("0.0.0.0", 53), HostPort("::", 53))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: what the DNS listeners and the control listener use."""

    listen: tuple[HostPort, ...] = _DEFAULT_LISTEN
    zones: Path = Path("zones")
    udp_size: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    http: HostPort | None = _DEFAULT_HTTP  # None: control listener disabled
    http_token: str | None = None  # bearer token; required for a non-loopback listener


@dataclass(frozen=True, slots=True)
class GeoIPConfig:
    """``[geoip]``: the mmdb file (defaults to the packaged GeoLite2-City)."""

    database: Path


@dataclass(frozen=True, slots=True)
class ExplainConfig:
    """``[explain]``: whether explain answers are served, and to whom."""

    enabled: bool = True
    allow: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )

    def allows(self, address: str) -> bool:
        """True when ``address`` may ask for explanations (and explain is enabled)."""
        if not self.enabled:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.allow)


@dataclass(frozen=True, slots=True)
class QueryLogConfig:
    """``[querylog]``: optional JSON-lines query log (None path: off)."""

    path: Path | None = None
    sample: float = 1.0
    max_bytes: int = 100 * 1024 * 1024
    keep: int = 5
    queue: int = 10_000


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: where forced health overrides are persisted (None: not persisted)."""

    state_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """``[checks.NAME]``: one health check definition (run by the checker)."""

    name: str
    type: Literal["http", "https", "tcp", "dns", "external"]
    interval: float = 10.0
    timeout: float = 3.0
    fall: int = 3
    rise: int = 2
    initial: Literal["up", "down"] = "up"
    port: int | None = None  # defaults: http 80, https 443, dns 53; required for tcp
    target: Literal["pop", "address"] = "pop"  # pop: one state per POP; address: per address
    address: str | None = None  # probe this address instead of the POP's own (target=pop)
    path: str = "/"
    method: str = "GET"
    host: str | None = None
    expect_status: tuple[int, ...] = (200,)
    expect_body: str | None = None
    tls_verify: bool = True
    qname: str = "."
    qtype: str = "SOA"
    expect_rcode: str = "NOERROR"
    command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pop:
    """``[pops.NAME]``: a point of presence and what to answer when it is chosen."""

    name: str
    lat: float
    lon: float
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    cname: str | None = None  # absolute, with trailing dot
    weight: float = 1.0
    health: str | None = None
    capacity: float | None = None

    def addresses(self, family: int) -> tuple[str, ...]:
        """The POP's addresses of IP version ``family`` (4 or 6)."""
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True, slots=True)
class Pool:
    """``[pools.NAME]``: a strategy over POPs, referenced by DYNA records."""

    name: str
    strategy: Literal["geo", "nearest", "failover", "weighted", "all"]
    ttl: int = 60
    ttl_on_failure: int = 10
    answers: int | None = 1  # max addresses per answer; None = unlimited (``all`` default)
    all_down: Literal["fail_open", "nodata", "servfail"] = "fail_open"
    pops: tuple[str, ...] = ()  # candidate set (nearest: all POPs when not given)
    default: tuple[str, ...] = ()  # geo: no rule matched; nearest: client without location
    continent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    country: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    subdivision: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    nets: tuple[tuple[IPNetwork, tuple[str, ...]], ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)  # effective, weighted only

    def referenced_pops(self) -> tuple[str, ...]:
        """Every POP name the pool can answer with, first-mention order."""
        seen: dict[str, None] = {}
        for p in self.pops:
            seen.setdefault(p)
        for p in self.default:
            seen.setdefault(p)
        for table in (self.continent, self.country, self.subdivision):
            for lst in table.values():
                for p in lst:
                    seen.setdefault(p)
        for _, lst in self.nets:
            for p in lst:
                seen.setdefault(p)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated config; immutable so it can be swapped atomically on reload."""

    server: ServerConfig
    geoip: GeoIPConfig
    explain: ExplainConfig
    admin: AdminConfig
    pops: Mapping[str, Pop]
    pools: Mapping[str, Pool]
    checks: Mapping[str, Check]
    source: Path | None = None
    querylog: QueryLogConfig = field(default_factory=QueryLogConfig)

    @classmethod
    def default(cls) -> Config:
        """No POPs or pools, server defaults: what runs without a config file."""
        return cls(
            server=ServerConfig(),
            geoip=GeoIPConfig(default_geoip_database()),
            explain=ExplainConfig(),
            admin=AdminConfig(),
            pops=MappingProxyType({}),
            pools=MappingProxyType({}),
            checks=MappingProxyType({}),
        )


def default_geoip_database() -> Path:
    """Path of the GeoLite2-City db shipped by ``maxminddb-geolite2`` (no network, no import)."""
    import importlib.util

    spec = importlib.util.find_spec("_maxminddb_geolite2")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent / "GeoLite2-City.mmdb"
    return Path("GeoLite2-City.mmdb")


def parse_hostport(text: str, default_port: int) -> HostPort:
    """Parse ``addr:port``, ``[v6]:port``, ``addr`` or bare ``v6``; ValueError on junk."""
    text = text.strip()
    port = default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':' after ']'")
            port = _parse_port(rest[1:])
        if ipaddress.ip_address(host).version != 6:
            raise ValueError("brackets are for IPv6 addresses")
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _parse_port(p)
        ipaddress.IPv4Address(host)
    else:
        host = text
        ipaddress.ip_address(host)
    return HostPort(str(ipaddress.ip_address(host)), port)


def _parse_port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)


# --------------------------------------------------------------------------- locator


class TomlLocator:
    """Maps key paths to the line where they are written in a TOML text.

    Runs only on text tomllib already accepted, so it can be permissive.  Records
    table headers (and their implicit parents), keys (dotted and inside inline
    tables) and array elements; :meth:`line` falls back to the nearest recorded
    parent, i.e. the enclosing table's line.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._pos: dict[KeyPath, int] = {}
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._scan()  # best effort: unrecorded lines fall back to parents

    def line(self, path: KeyPath) -> int:
        """1-based line of ``path``, or of its nearest recorded parent (1 if none)."""
        for n in range(len(path), 0, -1):
            off = self._pos.get(path[:n])
            if off is not None:
                return bisect.bisect_right(self._starts, off)
        return 1

    # scanning -------------------------------------------------------------

    def _record(self, path: KeyPath, off: int) -> None:
        for n in range(1, len(path) + 1):
            self._pos.setdefault(path[:n], off)

    def _scan(self) -> None:
        s = self._s
        table: KeyPath = ()
        aot: dict[KeyPath, int] = {}
        while True:
            self._skip(newlines=True)
            if self._i >= len(s):
                return
            start = self._i
            if s.startswith("[[", start):
                self._i += 2
                path = self._key()
                self._skip()
                self._i += 2  # ]]
                idx = aot.get(path, -1) + 1
                aot[path] = idx
                table = (*path, idx)
                self._record(table, start)
            elif s[start] == "[":
                self._i += 1
                table = self._key()
                self._skip()
                self._i += 1  # ]
                self._record(table, start)
            else:
                self._keyval(table)

    def _keyval(self, prefix: KeyPath) -> None:
        start = self._i
        path = (*prefix, *self._key())
        self._record(path, start)
        self._skip()
        self._i += 1  # =
        self._skip()
        self._value(path)

    def _skip(self, newlines: bool = False) -> None:
        s = self._s
        n = len(s)
        while self._i < n:
            c = s[self._i]
            if c in " \t" or (newlines and c in "\r\n"):
                self._i += 1
            elif c == "#":
                while self._i < n and s[self._i] != "\n":
                    self._i += 1
            else:
                return

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        s = self._s
        while True:
            self._skip()
            c = s[self._i]
            if c == '"':
                start = self._i
                self._string()
                parts.append(tomllib.loads("k = " + s[start : self._i])["k"])
            elif c == "'":
                end = s.index("'", self._i + 1)
                parts.append(s[self._i + 1 : end])
                self._i = end + 1
            else:
                m = _BARE_RUN_RE.match(s, self._i)
                if m is None:
                    raise ValueError("bad key")
                parts.append(m.group())
                self._i = m.end()
            self._skip()
            if self._i < len(s) and s[self._i] == ".":
                self._i += 1
                continue
            return tuple(parts)

    def _string(self) -> None:
        s = self._s
        q = s[self._i]
        if s.startswith(q * 3, self._i):
            self._i += 3
            while True:
                if q == '"' and s[self._i] == "\\":
                    self._i += 2
                    continue
                if s.startswith(q * 3, self._i):
                    self._i += 3
                    extra = 0
                    while extra < 2 and self._i < len(s) and s[self._i] == q:
                        self._i += 1
                        extra += 1
                    return
                self._i += 1
        self._i += 1
        while s[self._i] != q:
            self._i += 2 if (q == '"' and s[self._i] == "\\") else 1
        self._i += 1

    def _value(self, path: KeyPath) -> None:
        s = self._s
        c = s[self._i]
        if c in "\"'":
            self._string()
        elif c == "[":
            self._i += 1
            idx = 0
            while True:
                self._skip(newlines=True)
                if s[self._i] == "]":
                    self._i += 1
                    return
                if s[self._i] == ",":
                    self._i += 1
                    continue
                self._record((*path, idx), self._i)
                self._value((*path, idx))
                idx += 1
        elif c == "{":
            self._i += 1
            while True:
                self._skip(newlines=True)
                if s[self._i] == "}":
                    self._i += 1
                    return
                if s[self._i] == ",":
                    self._i += 1
                    continue
                self._keyval(path)
        else:
            m = _SCALAR_RE.match(s, self._i)
            assert m is not None
            self._i = m.end()


# --------------------------------------------------------------------------- validation


def format_path(path: KeyPath) -> str:
    """``pools.api.nets."10.0.0.0/8"[0]``: TOML-like, quoting non-bare keys."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY_RE.match(part) else '"' + part.replace('"', '\\"') + '"'
            out += ("." if out else "") + key
    return out


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "datetime"


class _Missing:
    pass


_MISSING: Final = _Missing()


class _Validator:
    """Collects problems with their key paths; lines are resolved at the end."""

    def __init__(self, filename: str, locator: TomlLocator, base_dir: Path) -> None:
        self.filename = filename
        self.locator = locator
        self.base_dir = base_dir
        self.problems: list[tuple[int, str]] = []

    def error(self, path: KeyPath, problem: str) -> None:
        line = self.locator.line(path)
        self.problems.append((line, f"{self.filename}:{line}: {format_path(path)}: {problem}"))

    def messages(self) -> list[str]:
        return [msg for _, msg in sorted(self.problems, key=lambda p: p[0])]

    # generic helpers --------------------------------------------------------

    def table(self, value: object, path: KeyPath) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, f"expected a table, got {_type_name(value)}")
        return None

    def keys(self, tbl: Mapping[str, Any], path: KeyPath, allowed: Iterable[str],
             context: str = "") -> None:
        """Flag every key not in ``allowed`` (with a did-you-mean hint)."""
        allowed = list(allowed)
        for key in tbl:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.error((*path, key), f"unknown key{context}{hint}")

    def number(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: Any,
               lo: float | None = None, hi: float | None = None, integer: bool = False,
               lo_open: bool = False) -> Any:
        value: Any = tbl.get(key, _MISSING)
        kp = (*path, key)
        if value is _MISSING:
            if default is _MISSING:
                self.error(kp, "missing required key")
                return None
            return default
        ok_types: tuple[type, ...] = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            want = "an integer" if integer else "a number"
            self.error(kp, f"expected {want}, got {_type_name(value)}")
            return None
        num = float(cast(float, value))
        if not math.isfinite(num):
            self.error(kp, "must be finite")
            return None
        if lo is not None and (num <= lo if lo_open else num < lo):
            self.error(kp, f"must be {'greater than' if lo_open else 'at least'} {lo:g}")
            return None
        if hi is not None and num > hi:
            self.error(kp, f"must be at most {hi:g}")
            return None
        return value

    def string(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: Any,
               choices: Iterable[str] | None = None) -> Any:
        value = tbl.get(key, _MISSING)
        kp = (*path, key)
        if value is _MISSING:
            if default is _MISSING:
                self.error(kp, "missing required key")
                return None
            return default
        if not isinstance(value, str):
            self.error(kp, f"expected a string, got {_type_name(value)}")
            return None
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                self.error(kp, f"must be one of {', '.join(choices)}; got {value!r}")
                return None
        return value

    def boolean(self, tbl: Mapping[str, Any], key: str, path: KeyPath, default: bool) -> bool:
        value = tbl.get(key, default)
        if not isinstance(value, bool):
            self.error((*path, key), f"expected a boolean, got {_type_name(value)}")
            return default
        return value

    def str_list(self, tbl: Mapping[str, Any], key: str, path: KeyPath) -> list[str] | None:
        """A list of strings; None when absent or broken (problems already recorded)."""
        value = tbl.get(key, _MISSING)
        if value is _MISSING:
            return None
        kp = (*path, key)
        if not isinstance(value, list):
            self.error(kp, f"expected an array of strings, got {_type_name(value)}")
            return None
        out: list[str] = []
        ok = True
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error((*kp, i), f"expected a string, got {_type_name(item)}")
                ok = False
            else:
                out.append(item)
        return out if ok else None

    def path_value(self, tbl: Mapping[str, Any], key: str, path: KeyPath) -> Path | None:
        value = self.string(tbl, key, path, None)
        if not value:
            if value == "":
                self.error((*path, key), "must not be empty")
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


# --------------------------------------------------------------------------- sections

_TOP_KEYS: Final = ("server", "geoip", "explain", "admin", "querylog", "pops", "pools",
                    "checks")
_SERVER_KEYS: Final = (
    "listen", "zones", "udp_size", "tcp_idle_timeout", "tcp_max_connections", "http",
    "http_token",
)
_POP_KEYS: Final = ("lat", "lon", "ipv4", "ipv6", "cname", "weight", "health", "capacity")
_POOL_COMMON: Final = ("strategy", "ttl", "ttl_on_failure", "answers", "all_down", "pops")
_POOL_EXTRA: Final[dict[str, tuple[str, ...]]] = {
    "geo": ("continent", "country", "subdivision", "nets", "default"),
    "nearest": ("default",),
    "failover": (),
    "weighted": ("weights",),
    "all": (),
}
_CHECK_COMMON: Final = ("type", "interval", "timeout", "fall", "rise", "initial", "target",
                        "address")
_CHECK_EXTRA: Final[dict[str, tuple[str, ...]]] = {
    "http": ("port", "path", "method", "host", "expect_status", "expect_body"),
    "https": ("port", "path", "method", "host", "expect_status", "expect_body", "tls_verify"),
    "tcp": ("port",),
    "dns": ("port", "qname", "qtype", "expect_rcode"),
    "external": ("command",),
}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "dns": 53}


def _server(v: _Validator, raw: object) -> ServerConfig:
    d = ServerConfig()
    path: KeyPath = ("server",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, _SERVER_KEYS)
    listen = d.listen
    items = v.str_list(tbl, "listen", path)
    if items is not None:
        parsed: list[HostPort] = []
        for i, item in enumerate(items):
            try:
                parsed.append(parse_hostport(item, 53))
            except ValueError:
                v.error((*path, "listen", i),
                        f"expected \"addr:port\" or \"[v6addr]:port\", got {item!r}")
        if not items:
            v.error((*path, "listen"), "must not be empty")
        listen = tuple(parsed)
    zones = v.path_value(tbl, "zones", path) or v.base_dir / d.zones
    udp = v.number(tbl, "udp_size", path, d.udp_size, 512, 65535, integer=True)
    idle = v.number(tbl, "tcp_idle_timeout", path, d.tcp_idle_timeout, 0, 3600, lo_open=True)
    maxc = v.number(tbl, "tcp_max_connections", path, d.tcp_max_connections, 1, 10**6,
                    integer=True)
    http: HostPort | None = d.http
    hv = v.string(tbl, "http", path, None)
    if hv == "":
        http = None
    elif hv is not None:
        try:
            http = parse_hostport(hv, 8053)
        except ValueError:
            v.error((*path, "http"),
                    f"expected \"addr:port\" or \"[v6addr]:port\" (\"\" disables), got {hv!r}")
    token = v.string(tbl, "http_token", path, None)
    if token == "":
        v.error((*path, "http_token"), "must not be empty (leave it out for no token)")
        token = None
    return ServerConfig(
        http_token=token,
        listen=listen,
        zones=zones,
        udp_size=udp if udp is not None else d.udp_size,
        tcp_idle_timeout=float(idle) if idle is not None else d.tcp_idle_timeout,
        tcp_max_connections=maxc if maxc is not None else d.tcp_max_connections,
        http=http,
    )


def _geoip(v: _Validator, raw: object) -> GeoIPConfig:
    path: KeyPath = ("geoip",)
    tbl = v.table(raw, path)
    if tbl is None:
        return GeoIPConfig(default_geoip_database())
    v.keys(tbl, path, ("database",))
    db = v.path_value(tbl, "database", path)
    if db is None:
        return GeoIPConfig(default_geoip_database())
    if not db.is_file():
        v.error((*path, "database"), f"no such file: {db}")
    return GeoIPConfig(db)


def _explain(v: _Validator, raw: object) -> ExplainConfig:
    d = ExplainConfig()
    path: KeyPath = ("explain",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, ("enabled", "allow"))
    enabled = v.boolean(tbl, "enabled", path, True)
    allow = d.allow
    items = v.str_list(tbl, "allow", path)
    if items is not None:
        nets: list[IPNetwork] = []
        for i, item in enumerate(items):
            net = _cidr(v, (*path, "allow", i), item)
            if net is not None:
                nets.append(net)
        allow = tuple(nets)
    return ExplainConfig(enabled=enabled, allow=allow)


def _admin(v: _Validator, raw: object) -> AdminConfig:
    path: KeyPath = ("admin",)
    tbl = v.table(raw, path)
    if tbl is None:
        return AdminConfig()
    v.keys(tbl, path, ("state_file",))
    return AdminConfig(state_file=v.path_value(tbl, "state_file", path))


def _querylog(v: _Validator, raw: object) -> QueryLogConfig:
    d = QueryLogConfig()
    path: KeyPath = ("querylog",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, ("path", "sample", "max_bytes", "keep", "queue"))
    sample = v.number(tbl, "sample", path, d.sample, 0, 1)
    max_bytes = v.number(tbl, "max_bytes", path, d.max_bytes, 0, 2**50, integer=True)
    keep = v.number(tbl, "keep", path, d.keep, 1, 1000, integer=True)
    queue = v.number(tbl, "queue", path, d.queue, 1, 10**7, integer=True)
    return QueryLogConfig(
        path=v.path_value(tbl, "path", path),
        sample=float(sample) if sample is not None else d.sample,
        max_bytes=max_bytes if max_bytes is not None else d.max_bytes,
        keep=keep if keep is not None else d.keep,
        queue=queue if queue is not None else d.queue,
    )


def _cidr(v: _Validator, path: KeyPath, text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(text, strict=False)
            v.error(path, f"{text!r} has host bits set (did you mean {str(loose)!r}?)")
        else:
            v.error(path, f"invalid CIDR {text!r}")
        return None


def _name_ok(v: _Validator, path: KeyPath, name: str, what: str) -> bool:
    if _NAME_RE.match(name):
        return True
    v.error(path, f"invalid {what} name {name!r} (letters, digits, '_', '-', '.'; max 63)")
    return False


def _check(v: _Validator, name: str, raw: object) -> Check | None:
    path: KeyPath = ("checks", name)
    tbl = v.table(raw, path)
    if tbl is None or not _name_ok(v, path, name, "check"):
        return None
    ctype = v.string(tbl, "type", path, _MISSING, CHECK_TYPES)
    if ctype is None:
        v.keys(tbl, path, _CHECK_COMMON + tuple({k for e in _CHECK_EXTRA.values() for k in e}))
        return None
    v.keys(tbl, path, _CHECK_COMMON + _CHECK_EXTRA[ctype], f" for check type {ctype!r}")
    d = Check(name=name, type=ctype)
    interval = v.number(tbl, "interval", path, d.interval, 0, 86400, lo_open=True)
    timeout = v.number(tbl, "timeout", path, d.timeout, 0, 3600, lo_open=True)
    if interval is not None and timeout is not None and timeout >= interval:
        v.error((*path, "timeout"), f"must be less than interval ({interval:g})")
    fall = v.number(tbl, "fall", path, d.fall, 1, 1000, integer=True)
    rise = v.number(tbl, "rise", path, d.rise, 1, 1000, integer=True)
    initial = v.string(tbl, "initial", path, d.initial, ("up", "down"))
    target = v.string(tbl, "target", path, d.target, ("pop", "address"))
    address = v.string(tbl, "address", path, None)
    if address is not None:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            v.error((*path, "address"), f"invalid IP address {address!r}")
            address = None
        if address is not None and target == "address":
            v.error((*path, "address"), "an address override needs target = \"pop\"")
    port = v.number(tbl, "port", path, _DEFAULT_PORTS.get(ctype, _MISSING if ctype == "tcp"
                                                           else None), 1, 65535, integer=True)
    http_path = v.string(tbl, "path", path, d.path)
    if http_path is not None and not http_path.startswith("/"):
        v.error((*path, "path"), "must start with '/'")
    method = v.string(tbl, "method", path, d.method)
    if method is not None and not _METHOD_RE.match(method):
        v.error((*path, "method"), f"expected an upper-case HTTP method, got {method!r}")
    host = v.string(tbl, "host", path, None)
    expect_status: tuple[int, ...] = d.expect_status
    if "expect_status" in tbl:
        raw_status = tbl["expect_status"]
        kp = (*path, "expect_status")
        if not isinstance(raw_status, list) or not raw_status:
            v.error(kp, "expected a non-empty array of HTTP status codes")
        else:
            codes: list[int] = []
            for i, code in enumerate(raw_status):
                if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                    v.error((*kp, i), f"expected an HTTP status code (100-599), got {code!r}")
                else:
                    codes.append(code)
            expect_status = tuple(codes)
    expect_body = v.string(tbl, "expect_body", path, None)
    tls_verify = v.boolean(tbl, "tls_verify", path, True)
    qname = v.string(tbl, "qname", path, d.qname)
    qtype = v.string(tbl, "qtype", path, d.qtype)
    expect_rcode = v.string(tbl, "expect_rcode", path, d.expect_rcode)
    if ctype == "dns":
        qname, qtype, expect_rcode = _dns_check_fields(v, path, qname, qtype, expect_rcode)
    command: tuple[str, ...] = ()
    if ctype == "external":
        command = _command(v, tbl, path)
    return Check(
        name=name, type=ctype,
        interval=float(interval if interval is not None else d.interval),
        timeout=float(timeout if timeout is not None else d.timeout),
        fall=fall or d.fall, rise=rise or d.rise,
        initial=initial or d.initial, port=port, target=target or d.target, address=address,
        path=http_path or d.path, method=method or d.method, host=host,
        expect_status=expect_status, expect_body=expect_body, tls_verify=tls_verify,
        qname=qname or d.qname, qtype=qtype or d.qtype,
        expect_rcode=expect_rcode or d.expect_rcode, command=command,
    )


def _dns_check_fields(v: _Validator, path: KeyPath, qname: str | None, qtype: str | None,
                      rcode: str | None) -> tuple[str | None, str | None, str | None]:
    import dns.exception
    import dns.name
    import dns.rcode
    import dns.rdatatype

    if qname is not None:
        try:
            qname = dns.name.from_text(qname).to_text()
        except dns.exception.DNSException:
            v.error((*path, "qname"), f"invalid domain name {qname!r}")
            qname = None
    if qtype is not None:
        try:
            qtype = dns.rdatatype.to_text(dns.rdatatype.from_text(qtype.upper()))
        except dns.exception.DNSException:
            v.error((*path, "qtype"), f"unknown record type {qtype!r}")
            qtype = None
    if rcode is not None:
        try:
            rcode = dns.rcode.to_text(dns.rcode.from_text(rcode.upper()))
        except dns.exception.DNSException:
            v.error((*path, "expect_rcode"), f"unknown rcode {rcode!r}")
            rcode = None
    return qname, qtype, rcode


def _command(v: _Validator, tbl: Mapping[str, Any], path: KeyPath) -> tuple[str, ...]:
    raw = tbl.get("command", _MISSING)
    kp = (*path, "command")
    if raw is _MISSING:
        v.error(kp, "missing required key")
        return ()
    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError as exc:
            v.error(kp, f"cannot split command: {exc}")
            return ()
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        argv = list(raw)
    else:
        v.error(kp, f"expected a string or an array of strings, got {_type_name(raw)}")
        return ()
    if not argv:
        v.error(kp, "must not be empty")
    return tuple(argv)


def _addresses(v: _Validator, tbl: Mapping[str, Any], key: str, path: KeyPath,
               version: int) -> tuple[str, ...]:
    items = v.str_list(tbl, key, path)
    if items is None:
        return ()
    out: list[str] = []
    for i, item in enumerate(items):
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            ip = None
        if ip is None or ip.version != version:
            v.error((*path, key, i), f"invalid IPv{version} address {item!r}")
            continue
        text = str(ip)
        if text in out:
            v.error((*path, key, i), f"duplicate address {text}")
            continue
        out.append(text)
    return tuple(out)


def _pop(v: _Validator, name: str, raw: object, checks: Mapping[str, Any]) -> Pop | None:
    path: KeyPath = ("pops", name)
    tbl = v.table(raw, path)
    if tbl is None:
        return None
    named = _name_ok(v, path, name, "POP")
    v.keys(tbl, path, _POP_KEYS)
    lat = v.number(tbl, "lat", path, _MISSING, -90, 90)
    lon = v.number(tbl, "lon", path, _MISSING, -180, 180)
    ipv4 = _addresses(v, tbl, "ipv4", path, 4)
    ipv6 = _addresses(v, tbl, "ipv6", path, 6)
    cname = v.string(tbl, "cname", path, None)
    if cname is not None:
        cname = _dns_name(v, (*path, "cname"), cname)
    weight = v.number(tbl, "weight", path, 1.0, 0, 1e9)
    health = v.string(tbl, "health", path, None)
    if health is not None and health not in checks:
        close = difflib.get_close_matches(health, list(checks), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        v.error((*path, "health"), f"unknown check {health!r}{hint}")
    capacity = v.number(tbl, "capacity", path, None, 0, 1e12, lo_open=True)
    if not ipv4 and not ipv6 and cname is None and not any(
            k in tbl for k in ("ipv4", "ipv6", "cname")):
        v.error(path, "POP has no ipv4, ipv6 or cname")
    if lat is None or lon is None or not named:
        return None
    return Pop(name=name, lat=float(lat), lon=float(lon), ipv4=ipv4, ipv6=ipv6, cname=cname,
               weight=float(weight if weight is not None else 1.0), health=health,
               capacity=float(capacity) if capacity is not None else None)


def _dns_name(v: _Validator, path: KeyPath, text: str) -> str | None:
    import dns.exception
    import dns.name

    try:
        name = dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        v.error(path, f"invalid domain name {text!r}: {exc}")
        return None
    if name == dns.name.root:
        v.error(path, "must not be the root name")
        return None
    return name.to_text()


class _PoolCtx:
    """What pool validation needs to know about the rest of the config."""

    def __init__(self, pops: Mapping[str, Pop | None]) -> None:
        self.pops = pops


def _pop_list(v: _Validator, ctx: _PoolCtx, value: object, path: KeyPath,
              allow_empty: bool = False) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        v.error(path, f"expected an array of POP names, got {_type_name(value)}")
        return None
    if not value and not allow_empty:
        v.error(path, "must not be empty")
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(value):
        if not isinstance(item, str):
            v.error((*path, i), f"expected a POP name, got {_type_name(item)}")
            ok = False
        elif item not in ctx.pops:
            close = difflib.get_close_matches(item, list(ctx.pops), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            v.error((*path, i), f"unknown POP {item!r}{hint}")
            ok = False
        elif item in out:
            v.error((*path, i), f"duplicate POP {item!r}")
            ok = False
        else:
            out.append(item)
    return tuple(out) if ok else None


def _rule_table(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any], key: str,
                path: KeyPath) -> dict[str, tuple[str, ...]]:
    raw = tbl.get(key, _MISSING)
    if raw is _MISSING:
        return {}
    kp = (*path, key)
    sub = v.table(raw, kp)
    if sub is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for code, lst in sub.items():
        norm = code.upper()
        if key == "continent" and norm not in CONTINENTS:
            v.error((*kp, code), f"unknown continent code {code!r} (one of "
                    f"{', '.join(sorted(CONTINENTS))})")
            continue
        if key == "country" and not _COUNTRY_RE.match(norm):
            v.error((*kp, code), f"expected an ISO 3166-1 alpha-2 country code, got {code!r}")
            continue
        if key == "subdivision" and not _SUBDIVISION_RE.match(norm):
            v.error((*kp, code),
                    f"expected an ISO 3166-2 code like \"US-CA\", got {code!r}")
            continue
        if norm in out:
            v.error((*kp, code), f"duplicate {key} {norm!r}")
            continue
        pops = _pop_list(v, ctx, lst, (*kp, code))
        if pops is not None:
            out[norm] = pops
    return out


def _nets(v: _Validator, ctx: _PoolCtx, tbl: Mapping[str, Any],
          path: KeyPath) -> tuple[tuple[IPNetwork, tuple[str, ...]], ...]:
    raw = tbl.get("nets", _MISSING)
    if raw is _MISSING:
        return ()
    kp = (*path, "nets")
    sub = v.table(raw, kp)
    if sub is None:
        return ()
    out: dict[IPNetwork, tuple[str, ...]] = {}
    for cidr, lst in sub.items():
        net = _cidr(v, (*kp, cidr), cidr)
        if net is None:
            continue
        if net in out:
            v.error((*kp, cidr), f"duplicate network {net}")
            continue
        pops = _pop_list(v, ctx, lst, (*kp, cidr))
        if pops is not None:
            out[net] = pops
    return tuple(out.items())


def _pool(v: _Validator, name: str, raw: object, ctx: _PoolCtx) -> Pool | None:
    path: KeyPath = ("pools", name)
    tbl = v.table(raw, path)
    if tbl is None:
        return None
    named = _name_ok(v, path, name, "pool")
    strategy = v.string(tbl, "strategy", path, _MISSING, STRATEGIES)
    if strategy is None:
        every = _POOL_COMMON + tuple({k for e in _POOL_EXTRA.values() for k in e})
        v.keys(tbl, path, every)
        return None
    v.keys(tbl, path, _POOL_COMMON + _POOL_EXTRA[strategy], f" for strategy {strategy!r}")
    ttl = v.number(tbl, "ttl", path, 60, 0, MAX_TTL, integer=True)
    ttl_fail = v.number(tbl, "ttl_on_failure", path, 10, 0, MAX_TTL, integer=True)
    answers = v.number(tbl, "answers", path, None if strategy == "all" else 1, 1, 1000,
                       integer=True)
    all_down = v.string(tbl, "all_down", path, "fail_open", ALL_DOWN_POLICIES)
    ok = named and None not in (ttl, ttl_fail, all_down)
    if "answers" in tbl and answers is None:
        ok = False

    pops: tuple[str, ...] | None = ()
    if "pops" in tbl:
        pops = _pop_list(v, ctx, tbl["pops"], (*path, "pops"))
    elif strategy in ("failover", "weighted", "all"):
        v.error((*path, "pops"), "missing required key")
        pops = None
    elif strategy == "nearest":
        pops = tuple(ctx.pops)
    default: tuple[str, ...] | None = ()
    if "default" in tbl:
        default = _pop_list(v, ctx, tbl["default"], (*path, "default"))
    if pops is None or default is None:
        ok = False
        pops, default = pops or (), default or ()

    continent = country = subdivision = {}
    nets: tuple[tuple[IPNetwork, tuple[str, ...]], ...] = ()
    weights: dict[str, float] = {}
    if strategy == "geo":
        continent = _rule_table(v, ctx, tbl, "continent", path)
        country = _rule_table(v, ctx, tbl, "country", path)
        subdivision = _rule_table(v, ctx, tbl, "subdivision", path)
        nets = _nets(v, ctx, tbl, path)
        if not default:
            if pops:
                default = pops
            elif "default" not in tbl:
                v.error((*path, "default"), "missing required key (a geo pool needs a "
                        "default list, or pops)")
                ok = False
    elif strategy == "nearest":
        stray = [p for p in default if p not in pops]
        for p in stray:
            v.error((*path, "default", default.index(p)),
                    f"POP {p!r} is not in {format_path((*path, 'pops'))}")
        ok = ok and not stray
    elif strategy == "weighted":
        for p in pops:
            pop_obj = ctx.pops[p]
            if pop_obj is not None:
                weights[p] = pop_obj.weight
        raw_w = tbl.get("weights", _MISSING)
        if raw_w is not _MISSING:
            wp = (*path, "weights")
            wt = v.table(raw_w, wp)
            for pop_name in wt or {}:
                if pop_name not in pops:
                    v.error((*wp, pop_name), f"POP {pop_name!r} is not in "
                            f"{format_path((*path, 'pops'))}")
                    ok = False
                    continue
                w = v.number(wt or {}, pop_name, wp, _MISSING, 0, 1e9)
                if w is None:
                    ok = False
                else:
                    weights[pop_name] = float(w)
        if ok and pops and not any(weights.get(p, 0) > 0 for p in pops):
            v.error((*path, "weights") if "weights" in tbl else path,
                    "every POP has weight 0")
            ok = False

    pool = Pool(
        name=name, strategy=strategy, ttl=ttl or 0, ttl_on_failure=ttl_fail or 0,
        answers=answers, all_down=all_down or "fail_open", pops=pops, default=default,
        continent=MappingProxyType(continent), country=MappingProxyType(country),
        subdivision=MappingProxyType(subdivision), nets=nets,
        weights=MappingProxyType(weights),
    )
    refs = [ctx.pops[p] for p in pool.referenced_pops() if ctx.pops.get(p) is not None]
    with_cname = [p.name for p in refs if p is not None and p.cname is not None]
    if with_cname and len(with_cname) != len(refs):
        plain = [p.name for p in refs if p is not None and p.cname is None]
        implicit = " (pops defaults to every POP)" if "pops" not in tbl and \
            strategy == "nearest" else ""
        v.error(path, f"mixes CNAME POPs ({', '.join(with_cname)}) with address POPs "
                f"({', '.join(plain)}){implicit}")
        ok = False
    return pool if ok else None


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, path: str | Path) -> Config:
    """Validate TOML ``text`` as if read from ``path`` (relative paths resolve beside it)."""
    filename = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else 1
        msg = msg[: m.start()].strip() if m else msg
        col = f" (column {m.group(2)})" if m else ""
        raise ConfigError([f"{filename}:{line}: <toml>: {msg}{col}"]) from None
    v = _Validator(filename, TomlLocator(text), Path(path).parent)
    v.keys(data, (), _TOP_KEYS)

    server = _server(v, data["server"]) if "server" in data else ServerConfig(
        zones=v.base_dir / "zones")
    geoip = _geoip(v, data["geoip"]) if "geoip" in data else GeoIPConfig(
        default_geoip_database())
    explain = _explain(v, data["explain"]) if "explain" in data else ExplainConfig()
    admin = _admin(v, data["admin"]) if "admin" in data else AdminConfig()
    querylog = _querylog(v, data["querylog"]) if "querylog" in data else QueryLogConfig()

    checks: dict[str, Check] = {}
    raw_checks = v.table(data.get("checks", {}), ("checks",)) or {}
    for name, raw in raw_checks.items():
        check = _check(v, name, raw)
        if check is not None:
            checks[name] = check

    pops: dict[str, Pop | None] = {}
    raw_pops = v.table(data.get("pops", {}), ("pops",)) or {}
    for name, raw in raw_pops.items():
        pops[name] = _pop(v, name, raw, raw_checks)

    pools: dict[str, Pool] = {}
    raw_pools = v.table(data.get("pools", {}), ("pools",)) or {}
    ctx = _PoolCtx(pops)
    for name, raw in raw_pools.items():
        pool = _pool(v, name, raw, ctx)
        if pool is not None:
            pools[name] = pool

    if v.problems:
        raise ConfigError(v.messages())
    return Config(
        server=server, geoip=geoip, explain=explain, admin=admin,
        pops=MappingProxyType({k: p for k, p in pops.items() if p is not None}),
        pools=MappingProxyType(pools), checks=MappingProxyType(checks),
        source=Path(path), querylog=querylog,
    )


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raises :class:`ConfigError` listing every problem."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}:0: <file>: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: <file>: not valid UTF-8"]) from None
    return parse_config(text, path)
