"""The validated config as frozen values, so a reload can swap it atomically.

Only types and the defaults they carry live here; building them from TOML is the
job of :mod:`geodns.config.load`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, NamedTuple

from geodns.problems import Problems

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
KeyPath = tuple[str | int, ...]

STRATEGIES: Final = ("geo", "nearest", "failover", "weighted", "all", "latency")
FALLBACK_STRATEGIES: Final = ("nearest", "geo", "weighted", "failover")  # latency's fallback
LOAD_FEED_TYPES: Final = ("file", "http", "prometheus")
ALL_DOWN_POLICIES: Final = ("fail_open", "nodata", "servfail")
ON_EMPTY_POLICIES: Final = ("servfail", "nodata")  # a fence that leaves a client no POP
CHECK_TYPES: Final = ("http", "https", "tcp", "dns", "external")
CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
MAX_TTL: Final = 2**31 - 1


class ConfigError(Problems):
    """The config is invalid (``FILE:LINE: key.path: problem`` lines)."""


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
    tcp_message_timeout: float = 3.0  # a query must arrive whole within this
    tcp_max_connections_per_client: int = 100  # per IPv4 address / IPv6 /64
    http: HostPort | None = _DEFAULT_HTTP  # None: control listener disabled
    http_token: str | None = None  # bearer token; required for a non-loopback listener
    minimal_responses: bool = False  # True: no target addresses for NS/MX/SRV answers
    nsid: bytes | None = None  # RFC 5001 identity sent to clients that ask (None: off)


DEFAULT_GEOIP_MAX_AGE_DAYS: Final = 45  # MaxMind ships weekly, DB-IP monthly: 45 has slack


@dataclass(frozen=True, slots=True)
class GeoIPConfig:
    """``[geoip]``: the mmdb file (defaults to the packaged GeoLite2-City), how old its
    build may be before we warn (0: never warn), and an optional GeoLite2-ASN style
    database for ``asn.NNNN`` rules and explain."""

    database: Path
    max_age_days: int = DEFAULT_GEOIP_MAX_AGE_DAYS
    asn_database: Path | None = None


def _allows(nets: tuple[IPNetwork, ...], address: str) -> bool:
    """True when ``address`` (IPv4-mapped IPv6 counts as IPv4) lies in one of ``nets``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in nets)


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
        return self.enabled and _allows(self.allow, address)


@dataclass(frozen=True, slots=True)
class QueryLogConfig:
    """``[querylog]``: optional JSON-lines query log (None path: off)."""

    path: Path | None = None
    sample: float = 1.0
    max_bytes: int = 100 * 1024 * 1024
    keep: int = 5
    queue: int = 10_000


@dataclass(frozen=True, slots=True)
class DnstapConfig:
    """``[dnstap]``: optional dnstap output to a file or a collector's Unix socket."""

    file: Path | None = None
    socket: Path | None = None
    sample: float = 1.0
    queue: int = 10_000
    identity: str | None = None  # default: the host name

    @property
    def enabled(self) -> bool:
        return self.file is not None or self.socket is not None


@dataclass(frozen=True, slots=True)
class RRLConfig:
    """``[rrl]``: response rate limiting (BIND/Knot/NSD semantics); off without the section.

    Rates are responses per second per (client block, answer class); 0 means unlimited
    for that class.  ``errors`` and ``nxdomains`` default to ``responses``.
    """

    enabled: bool = False
    responses_per_second: int = 20
    errors_per_second: int | None = None  # None: as responses_per_second
    nxdomains_per_second: int | None = None
    window: int = 15  # seconds of debt a flood can run up (and must pay off)
    slip: int = 2  # every Nth limited response goes out truncated; 0 never
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[IPNetwork, ...] = ()
    log_only: bool = False
    table_size: int = 131_072  # buckets (~14 MB at most); fixed whatever the sources


@dataclass(frozen=True, slots=True)
class CookiesConfig:
    """``[cookies]``: DNS cookies (RFC 7873) with RFC 9018 server cookies.

    ``secret`` (16 bytes) is shared by an anycast fleet and used as is; without it a
    random secret is generated at start and replaced every ``rotation`` seconds.  A
    cookie made with ``previous_secret`` (or the last generated one) is still accepted.
    """

    enabled: bool = True
    secret: bytes | None = None
    previous_secret: bytes | None = None
    rotation: float = 86400.0


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
    load: str | None = None  # name of a [loads.NAME] feed reporting this POP's load
    load_key: str | None = None  # the POP's name inside that feed (default: the POP name)

    @property
    def feed_key(self) -> str:
        """How the load feed names this POP."""
        return self.load_key if self.load_key is not None else self.name

    def addresses(self, family: int) -> tuple[str, ...]:
        """The POP's addresses of IP version ``family`` (4 or 6)."""
        return self.ipv4 if family == 4 else self.ipv6


@dataclass(frozen=True, slots=True)
class LoadFeed:
    """``[loads.NAME]``: where current POP loads come from.

    Loads are in the unit of ``pops.*.capacity`` (qps, Gbit/s, ...): only their ratio is
    used.  ``url`` is the JSON document (http) or the server's base URL (prometheus).
    """

    name: str
    type: Literal["file", "http", "prometheus"]
    path: Path | None = None  # file
    format: Literal["json", "csv"] = "json"  # file
    url: str | None = None  # http, prometheus
    query: str | None = None  # prometheus: PromQL, one sample per POP
    label: str = "pop"  # prometheus: the label naming the POP
    interval: float = 10.0  # seconds between polls (file: between change checks)
    timeout: float = 3.0  # http, prometheus
    max_age: float = 60.0  # data older than this is stale and ignored


@dataclass(frozen=True, slots=True)
class Margin:
    """``pools.NAME.margin`` of a latency pool: how much faster a challenger must be."""

    ms: float = 0.0  # absolute
    ratio: float = 0.0  # of the incumbent's rtt

    def beats(self, challenger_ms: float, incumbent_ms: float) -> bool:
        """True when ``challenger_ms`` is better than ``incumbent_ms`` by more than the margin."""
        return incumbent_ms - challenger_ms > max(self.ms, self.ratio * incumbent_ms)

    def __str__(self) -> str:
        return f"{self.ratio:.0%}" if self.ratio else f"{self.ms:g}ms"


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a pool's experiment (``pools.NAME.arms``): a share of client blocks,
    answered by the pool's own choice, restricted to ``pops``, or by another ``pool``."""

    name: str
    weight: float
    pops: tuple[str, ...] | None = None  # candidates restricted to these (pool order kept)
    pool: str | None = None  # answered by this pool instead

    def describe(self) -> str:
        if self.pops is not None:
            return f"POPs {', '.join(self.pops)}"
        if self.pool is not None:
            return f"pool {self.pool}"
        return "the pool's own choice"


DEFAULT_MARGIN: Final = Margin(ratio=0.1)
DEFAULT_MAP_MAX_AGE: Final = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Pool:
    """``[pools.NAME]``: a strategy over POPs, referenced by DYNA records."""

    name: str
    strategy: Literal["geo", "nearest", "failover", "weighted", "all", "latency"]
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
    asn: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # geo: asn.NNNN rules
    # capacity-aware spillover: shed blocks once load passes spill_at x capacity, moving at
    # most spill_step of a POP's blocks per feed interval
    spill: bool = False
    spill_at: float = 0.8
    spill_step: float = 0.1
    # strategy latency: the map file, the strategy for clients it does not cover (its keys
    # live in this pool too), when the map counts as too old, and the anti-flap margin
    map: Path | None = None
    fallback: Literal["nearest", "geo", "weighted", "failover"] | None = None
    max_age: float = DEFAULT_MAP_MAX_AGE
    margin: Margin = DEFAULT_MARGIN
    # guards checked before an override (drain, force down) is accepted
    min_up: int | None = None
    max_share: float | None = None
    # labelled experiment: client /24s (/56s) split into arms by a salted hash
    arms: tuple[Arm, ...] = ()
    salt: str | None = None  # None: the pool's name

    def fallback_pool(self) -> Pool:
        """A latency pool as its fallback strategy (same name, POPs and rules); else self."""
        if self.strategy != "latency" or self.fallback is None:
            return self
        return replace(self, strategy=self.fallback, map=None, fallback=None)

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
        for lst in self.asn.values():
            for p in lst:
                seen.setdefault(p)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Fence:
    """``[fences.NAME]``: clients (by place, network or AS) that may only ever be
    answered with ``pops``, whatever strategy, health, overrides or spillover say."""

    name: str
    pops: tuple[str, ...]
    countries: frozenset[str] = frozenset()
    continents: frozenset[str] = frozenset()
    subdivisions: frozenset[str] = frozenset()
    nets: tuple[IPNetwork, ...] = ()
    asn: frozenset[int] = frozenset()
    on_empty: Literal["servfail", "nodata"] = "servfail"
    pools: tuple[str, ...] | None = None  # None: every pool

    def applies_to(self, pool: str) -> bool:
        return self.pools is None or pool in self.pools

    @property
    def by_place(self) -> bool:
        """Selects clients by GeoIP place (needs the City database's networks)."""
        return bool(self.countries or self.continents or self.subdivisions)

    def describe(self) -> str:
        """``countries US, CA; nets 10.0.0.0/8``: who is inside, for explain and check."""
        parts = []
        for what, items in (("continents", sorted(self.continents)),
                            ("countries", sorted(self.countries)),
                            ("subdivisions", sorted(self.subdivisions)),
                            ("nets", [str(n) for n in self.nets]),
                            ("asn", [str(a) for a in sorted(self.asn)])):
            if items:
                parts.append(f"{what} {', '.join(items)}")
        return "; ".join(parts)


TSIG_ALGORITHMS: Final = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224")
WEAK_TSIG_ALGORITHMS: Final = ("hmac-md5", "hmac-md5.sig-alg.reg.int", "hmac-sha1")


@dataclass(frozen=True, slots=True)
class TsigKey:
    """``[tsig.NAME]``: a shared secret; the table name is the key name on the wire."""

    name: str
    algorithm: str  # one of TSIG_ALGORITHMS
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class TransferConfig:
    """``[transfer]``: we are a primary (AXFR/IXFR out, NOTIFY to secondaries)."""

    allow: tuple[IPNetwork, ...] = ()  # who may transfer; empty: nobody
    key: str | None = None  # transfers must be signed with this [tsig] key
    notify: tuple[HostPort, ...] = ()  # told about every serial change
    journal_max_bytes: int = 1 << 20  # per zone; oldest differences dropped beyond it

    def allows(self, address: str) -> bool:
        return _allows(self.allow, address)


@dataclass(frozen=True, slots=True)
class SecondaryZone:
    """``[secondary."zone."]``: a zone we transfer from its primaries."""

    zone: str  # absolute, lower case, with the trailing dot
    primaries: tuple[HostPort, ...]
    key: str | None = None


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
    dnstap: DnstapConfig = field(default_factory=DnstapConfig)
    tsig: Mapping[str, TsigKey] = field(default_factory=lambda: MappingProxyType({}))
    transfer: TransferConfig | None = None  # None: no [transfer], not a primary
    secondary: Mapping[str, SecondaryZone] = field(default_factory=lambda: MappingProxyType({}))
    # Journals and secondary zone copies ([transfer] state_dir); None when neither
    # [transfer] nor [secondary] is configured, so plain servers write nothing.
    state_dir: Path | None = None
    loads: Mapping[str, LoadFeed] = field(default_factory=lambda: MappingProxyType({}))
    rrl: RRLConfig = field(default_factory=RRLConfig)
    cookies: CookiesConfig = field(default_factory=CookiesConfig)
    fences: Mapping[str, Fence] = field(default_factory=lambda: MappingProxyType({}))

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


def parse_hostport(text: str, default_port: int | None, *, min_port: int = 1) -> HostPort:
    """Parse ``addr:port``, ``[v6]:port``, ``addr`` or bare ``v6``; ValueError on junk.

    ``default_port`` None makes the port required; ``min_port`` 0 admits port 0 (any
    free port: command-line listeners in tests).
    """
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
            port = _parse_port(rest[1:], min_port)
        if ipaddress.ip_address(host).version != 6:
            raise ValueError("brackets are for IPv6 addresses")
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _parse_port(p, min_port)
        ipaddress.IPv4Address(host)
    else:
        host = text
        ipaddress.ip_address(host)
    if port is None:
        raise ValueError("missing port")
    return HostPort(str(ipaddress.ip_address(host)), port)


def _parse_port(text: str, min_port: int) -> int:
    if not text.isdigit() or not min_port <= int(text) < 65536:
        raise ValueError(f"bad port {text!r}")
    return int(text)
