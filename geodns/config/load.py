"""Entry points: TOML text or file in, a validated :class:`Config` or every problem out."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Final

from geodns.config.defences import _cookies, _rrl
from geodns.config.fences import check_arm_pools, parse_fences
from geodns.config.loads import _load_feed
from geodns.config.locator import TomlLocator
from geodns.config.model import (
    AdminConfig,
    Check,
    Config,
    ConfigError,
    CookiesConfig,
    DnstapConfig,
    ExplainConfig,
    GeoIPConfig,
    LoadFeed,
    Pool,
    Pop,
    QueryLogConfig,
    RRLConfig,
    ServerConfig,
    default_geoip_database,
)
from geodns.config.pools import _pool, _PoolCtx, _pop
from geodns.config.sections import (
    _admin,
    _check,
    _dnstap,
    _explain,
    _geoip,
    _querylog,
    _server,
)
from geodns.config.validator import _Validator
from geodns.config.xfr import DEFAULT_STATE_DIR, parse_secondary, parse_transfer, parse_tsig

_TOP_KEYS: Final = ("server", "geoip", "explain", "admin", "querylog", "dnstap", "loads",
                    "rrl", "cookies", "pops", "pools", "checks", "tsig", "transfer",
                    "secondary", "fences")


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
    dnstap = _dnstap(v, data["dnstap"]) if "dnstap" in data else DnstapConfig()
    rrl = _rrl(v, data["rrl"]) if "rrl" in data else RRLConfig()
    cookies = _cookies(v, data["cookies"]) if "cookies" in data else CookiesConfig()

    checks: dict[str, Check] = {}
    raw_checks = v.table(data.get("checks", {}), ("checks",)) or {}
    for name, raw in raw_checks.items():
        check = _check(v, name, raw)
        if check is not None:
            checks[name] = check

    loads: dict[str, LoadFeed] = {}
    raw_loads = v.table(data.get("loads", {}), ("loads",)) or {}
    for name, raw in raw_loads.items():
        feed = _load_feed(v, name, raw)
        if feed is not None:
            loads[name] = feed

    pops: dict[str, Pop | None] = {}
    raw_pops = v.table(data.get("pops", {}), ("pops",)) or {}
    for name, raw in raw_pops.items():
        pops[name] = _pop(v, name, raw, raw_checks, raw_loads)

    pools: dict[str, Pool] = {}
    raw_pools = v.table(data.get("pools", {}), ("pools",)) or {}
    ctx = _PoolCtx(pops, asn_database=geoip.asn_database is not None, loads=raw_loads)
    for name, raw in raw_pools.items():
        pool = _pool(v, name, raw, ctx)
        if pool is not None:
            pools[name] = pool
    for name in check_arm_pools(v, pools, raw_pools, pops):
        del pools[name]
    fences = parse_fences(v, data["fences"], ctx, pools, raw_pools) if "fences" in data \
        else {}

    declared = data.get("tsig", {}) if isinstance(data.get("tsig"), dict) else {}
    tsig = parse_tsig(v, data["tsig"]) if "tsig" in data else MappingProxyType({})
    transfer, state_dir = parse_transfer(v, data["transfer"], tsig, declared) \
        if "transfer" in data else (None, None)
    secondary = parse_secondary(v, data["secondary"], tsig, declared) \
        if "secondary" in data else MappingProxyType({})
    if state_dir is None and (transfer is not None or secondary):
        state_dir = v.base_dir / DEFAULT_STATE_DIR

    if v.problems:
        raise ConfigError(v.messages())
    return Config(
        server=server, geoip=geoip, explain=explain, admin=admin,
        pops=MappingProxyType({k: p for k, p in pops.items() if p is not None}),
        pools=MappingProxyType(pools), checks=MappingProxyType(checks),
        source=Path(path), querylog=querylog, dnstap=dnstap, loads=MappingProxyType(loads),
        tsig=tsig, transfer=transfer, secondary=secondary, state_dir=state_dir, rrl=rrl,
        cookies=cookies, fences=MappingProxyType(fences),
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
