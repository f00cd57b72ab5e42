"""Parsers for the sections that stand alone: [server], [geoip], [explain], [admin],
[querylog], [dnstap] and [checks.*].  Each records its problems and still returns something
(defaults, or None) so the rest of the file is checked in the same run.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Any, Final

from geodns.config.model import (
    CHECK_TYPES,
    DEFAULT_GEOIP_MAX_AGE_DAYS,
    AdminConfig,
    Check,
    DnstapConfig,
    ExplainConfig,
    GeoIPConfig,
    HostPort,
    IPNetwork,
    KeyPath,
    QueryLogConfig,
    ServerConfig,
    default_geoip_database,
    parse_hostport,
)
from geodns.config.serve import control_token_problem
from geodns.config.validator import _MISSING, _cidr, _name_ok, _type_name, _Validator

_METHOD_RE = re.compile(r"^[A-Z]{1,16}$")

_SERVER_KEYS: Final = (
    "listen", "zones", "udp_size", "tcp_idle_timeout", "tcp_max_connections",
    "tcp_message_timeout", "tcp_max_connections_per_client", "http", "http_token",
    "minimal_responses", "nsid",
)

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
    msg_timeout = v.number(tbl, "tcp_message_timeout", path, d.tcp_message_timeout, 0, 3600,
                           lo_open=True)
    per_client = v.number(tbl, "tcp_max_connections_per_client", path,
                          d.tcp_max_connections_per_client, 1, 10**6, integer=True)
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
    problem = control_token_problem(http.host, token) if http is not None else None
    if problem is not None:  # the one rule the command line and the listener apply too
        v.error((*path, "http"), f"{problem}: set server.http_token (every request must "
                "then send it as a bearer token), listen on 127.0.0.1, or \"\" to turn it off")
    minimal = v.boolean(tbl, "minimal_responses", path, d.minimal_responses)
    nsid = _nsid(v, tbl, path)
    return ServerConfig(
        nsid=nsid,
        http_token=token,
        minimal_responses=bool(minimal),
        listen=listen,
        zones=zones,
        udp_size=udp if udp is not None else d.udp_size,
        tcp_idle_timeout=float(idle) if idle is not None else d.tcp_idle_timeout,
        tcp_max_connections=maxc if maxc is not None else d.tcp_max_connections,
        tcp_message_timeout=(float(msg_timeout) if msg_timeout is not None
                             else d.tcp_message_timeout),
        tcp_max_connections_per_client=(per_client if per_client is not None
                                        else d.tcp_max_connections_per_client),
        http=http,
    )


def _nsid(v: _Validator, tbl: Mapping[str, Any], path: KeyPath) -> bytes | None:
    """``nsid = "text"`` (that text), ``true`` (the host name), ``false`` or absent (off)."""
    value = tbl.get("nsid", False)
    if value is False:
        return None
    if value is True:
        import socket

        return socket.gethostname().encode()[:128]
    if not isinstance(value, str) or not value:
        v.error((*path, "nsid"), "expected a non-empty string, or true for the host name")
        return None
    raw = value.encode()
    if len(raw) > 128:
        v.error((*path, "nsid"), f"at most 128 bytes, got {len(raw)}")
        return None
    return raw


def _geoip(v: _Validator, raw: object) -> GeoIPConfig:
    path: KeyPath = ("geoip",)
    tbl = v.table(raw, path)
    if tbl is None:
        return GeoIPConfig(default_geoip_database())
    v.keys(tbl, path, ("database", "max_age_days", "asn_database"))
    age = v.number(tbl, "max_age_days", path, DEFAULT_GEOIP_MAX_AGE_DAYS, 0, 36500,
                   integer=True)
    max_age = age if age is not None else DEFAULT_GEOIP_MAX_AGE_DAYS
    db = v.path_value(tbl, "database", path)
    if db is not None and not db.is_file():
        v.error((*path, "database"), f"no such file: {db}")
    asn = v.path_value(tbl, "asn_database", path)
    if asn is not None and not asn.is_file():
        v.error((*path, "asn_database"), f"no such file: {asn}")
    return GeoIPConfig(db or default_geoip_database(), max_age, asn_database=asn)


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


def _dnstap(v: _Validator, raw: object) -> DnstapConfig:
    d = DnstapConfig()
    path: KeyPath = ("dnstap",)
    tbl = v.table(raw, path)
    if tbl is None:
        return d
    v.keys(tbl, path, ("file", "socket", "sample", "queue", "identity"))
    file = v.path_value(tbl, "file", path)
    sock = v.path_value(tbl, "socket", path)
    if file is not None and sock is not None:
        v.error((*path, "socket"), "set either file or socket, not both")
        sock = None
    elif file is None and sock is None and "file" not in tbl and "socket" not in tbl:
        v.error(path, "needs file = \"PATH\" (a dnstap file) or socket = \"PATH\" (a "
                "collector's Unix socket)")
    sample = v.number(tbl, "sample", path, d.sample, 0, 1)
    queue = v.number(tbl, "queue", path, d.queue, 1, 10**7, integer=True)
    identity = v.string(tbl, "identity", path, None)
    return DnstapConfig(file=file, socket=sock,
                        sample=float(sample) if sample is not None else d.sample,
                        queue=queue if queue is not None else d.queue, identity=identity)


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
