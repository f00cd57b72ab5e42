"""Entry points: TOML text or file in, a validated :class:`Config` or every problem out."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Final

from geodns.config.defences import _cookies, _rrl
from geodns.config.locator import TomlLocator
from geodns.config.model import (
    AdminConfig,
    Check,
    Config,
    ConfigError,
    CookiesConfig,
    ExplainConfig,
    GeoIPConfig,
    Pool,
    Pop,
    QueryLogConfig,
    RRLConfig,
    ServerConfig,
    default_geoip_database,
)
from geodns.config.pools import _pool, _PoolCtx, _pop
from geodns.config.sections import _admin, _check, _explain, _geoip, _querylog, _server
from geodns.config.validator import _Validator

_TOP_KEYS: Final = ("server", "geoip", "explain", "admin", "querylog", "rrl", "cookies",
                    "pops", "pools", "checks")


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
    rrl = _rrl(v, data["rrl"]) if "rrl" in data else RRLConfig()
    cookies = _cookies(v, data["cookies"]) if "cookies" in data else CookiesConfig()

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
        source=Path(path), querylog=querylog, rrl=rrl, cookies=cookies,
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
