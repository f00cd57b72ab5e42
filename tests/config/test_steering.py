"""Pool options for data-driven steering: spill, latency, asn rules, guards."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from geodns.config import Config, ConfigError, Margin, parse_config

POPS = """
[loads.edge]
type = "http"
url = "http://127.0.0.1:9/loads"

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
capacity = 1000
load = "edge"

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
capacity = 800
load = "edge"

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]
"""


def _text(pools: str, tmp: Path, head: str = "") -> str:
    return textwrap.dedent(head).replace("TMP", str(tmp)) + POPS + \
        textwrap.dedent(pools).replace("TMP", str(tmp))


def _ok(pools: str, tmp: Path, head: str = "") -> Config:
    return parse_config(_text(pools, tmp, head), tmp / "t.toml")


def _problems(pools: str, tmp: Path, head: str = "") -> list[str]:
    """Problems, with lines inside ``pools`` written as ``@N`` (1 = its first line)."""
    with pytest.raises(ConfigError) as info:
        parse_config(_text(pools, tmp, head), "t.toml")
    offset = len(textwrap.dedent(head).splitlines()) + len(POPS.splitlines())
    return [re.sub(r"^t\.toml:(\d+):", lambda m: f"t.toml:@{int(m.group(1)) - offset}:"
                   if int(m.group(1)) > offset else m.group(0), p)
            for p in info.value.problems]


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "rtt.csv").write_text("prefix,pop,rtt_ms,samples\n1.2.3.0/24,fra,20,50\n")
    (tmp_path / "asn.mmdb").write_bytes(b"not checked here")
    return tmp_path


ASN_HEAD = """
[geoip]
asn_database = "TMP/asn.mmdb"
"""


# ---------------------------------------------------------------- defaults keep today's behaviour


def test_plain_pool_gets_defaults_that_change_nothing(tmp: Path) -> None:
    cfg = _ok('[pools.www]\nstrategy = "nearest"\n', tmp)
    pool = cfg.pools["www"]
    assert (pool.spill, pool.spill_at, pool.spill_step) == (False, 0.8, 0.1)
    assert (pool.min_up, pool.max_share, pool.map, pool.fallback) == (None, None, None, None)
    assert dict(pool.asn) == {}
    assert pool.margin == Margin(ratio=0.1)
    assert pool.fallback_pool() is pool
    assert cfg.geoip.asn_database is None


# ------------------------------------------------------------------------------------ spill


def test_spill_pool_parses(tmp: Path) -> None:
    pool = _ok('[pools.www]\nstrategy = "nearest"\npops = ["iad", "fra"]\nspill = true\n'
               'spill_at = 0.7\nspill_step = 0.05\n', tmp).pools["www"]
    assert (pool.spill, pool.spill_at, pool.spill_step) == (True, 0.7, 0.05)


@pytest.mark.parametrize(("pools", "expected"), [
    ('[pools.www]\nstrategy = "nearest"\nspill = true\n',
     "t.toml:@3: pools.www.spill: POP 'sin' has no capacity or load (spill needs "
     "pops.NAME.capacity and pops.NAME.load on every POP of the pool)"),
    ('[pools.www]\nstrategy = "nearest"\nspill_at = 0.5\n',
     "t.toml:@3: pools.www.spill_at: has no effect without spill = true"),
    ('[pools.www]\nstrategy = "nearest"\npops = ["iad"]\nspill = true\nspill_at = 1.5\n',
     "t.toml:@5: pools.www.spill_at: must be at most 1"),
    ('[pools.www]\nstrategy = "nearest"\npops = ["iad"]\nspill = true\nspill_step = 0\n',
     "t.toml:@5: pools.www.spill_step: must be greater than 0"),
    ('[pools.www]\nstrategy = "all"\npops = ["iad"]\nspill = true\n',
     "t.toml:@4: pools.www.spill: strategy 'all' answers every POP: nothing to spill"),
])
def test_spill_problems(tmp: Path, pools: str, expected: str) -> None:
    assert _problems(pools, tmp) == [expected]


# ---------------------------------------------------------------------------------- latency


def test_latency_pool_with_geo_fallback_keeps_the_fallback_rules(tmp: Path) -> None:
    cfg = _ok("""
        [pools.www]
        strategy = "latency"
        map = "rtt.csv"
        fallback = "geo"
        max_age = 3600
        margin = "15%"
        continent.EU = ["fra"]
        default = ["iad"]
        """, tmp)
    pool = cfg.pools["www"]
    assert (pool.strategy, pool.fallback, pool.map) == ("latency", "geo", tmp / "rtt.csv")
    assert pool.max_age == 3600.0 and pool.margin == Margin(ratio=0.15)
    fb = pool.fallback_pool()
    assert (fb.strategy, fb.map, fb.fallback) == ("geo", None, None)
    assert dict(fb.continent) == {"EU": ("fra",)} and fb.default == ("iad",)


def test_latency_defaults_to_nearest_over_every_pop(tmp: Path) -> None:
    pool = _ok('[pools.www]\nstrategy = "latency"\nmap = "TMP/rtt.csv"\n', tmp).pools["www"]
    assert pool.fallback == "nearest" and pool.pops == ("iad", "fra", "sin")
    assert pool.max_age == 7 * 86400.0


@pytest.mark.parametrize(("margin", "expected"), [
    ("5", Margin(ms=5.0)), ('"5ms"', Margin(ms=5.0)), ('"12.5%"', Margin(ratio=0.125)),
    ("0", Margin()),
])
def test_margin_forms(tmp: Path, margin: str, expected: Margin) -> None:
    pool = _ok(f'[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nmargin = {margin}\n',
               tmp).pools["www"]
    assert pool.margin == expected


def test_margin_beats() -> None:
    assert Margin(ratio=0.1).beats(89, 100) and not Margin(ratio=0.1).beats(90, 100)
    assert Margin(ms=5).beats(14, 20) and not Margin(ms=5).beats(15, 20)
    assert not Margin().beats(20, 20) and Margin().beats(19.9, 20)


@pytest.mark.parametrize(("pools", "expected"), [
    ('[pools.www]\nstrategy = "latency"\n',
     "t.toml:@1: pools.www.map: missing required key (the latency map file)"),
    ('[pools.www]\nstrategy = "latency"\nmap = "nope.csv"\n',
     "t.toml:@3: pools.www.map: no such file: {tmp}/nope.csv (build one with geodns "
     "latency-map)"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nfallback = "latency"\n',
     "t.toml:@4: pools.www.fallback: must be one of nearest, geo, weighted, failover; got "
     "'latency'"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\ncontinent.EU = ["fra"]\n',
     "t.toml:@4: pools.www.continent: unknown key for strategy 'latency' with fallback "
     "'nearest'"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nfallback = "failover"\n',
     "t.toml:@1: pools.www.pops: missing required key"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nmargin = "fast"\n',
     "t.toml:@4: pools.www.margin: expected milliseconds (5, \"5ms\") or a percentage of the "
     "current best (\"10%\"), got 'fast'"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nmargin = "100%"\n',
     "t.toml:@4: pools.www.margin: must be below 100%"),
    ('[pools.www]\nstrategy = "latency"\nmap = "rtt.csv"\nmax_age = 0\n',
     "t.toml:@4: pools.www.max_age: must be greater than 0"),
    ('[pools.www]\nstrategy = "nearest"\nmargin = 5\n',
     "t.toml:@3: pools.www.margin: unknown key for strategy 'nearest'"),
])
def test_latency_problems(tmp: Path, pools: str, expected: str) -> None:
    pools = pools.replace('map = "', f'map = "{tmp}/')
    assert _problems(pools, tmp) == [expected.format(tmp=tmp)]


# -------------------------------------------------------------------------------------- asn


def test_asn_rules(tmp: Path) -> None:
    pool = _ok('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.13335 = ["fra"]\n'
               'asn.AS64500 = ["sin", "iad"]\n', tmp, ASN_HEAD).pools["api"]
    assert dict(pool.asn) == {13335: ("fra",), 64500: ("sin", "iad")}
    assert pool.referenced_pops() == ("iad", "fra", "sin")


@pytest.mark.parametrize(("pools", "head", "expected"), [
    ('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.13335 = ["fra"]\n', "",
     ["t.toml:@4: pools.api.asn: asn rules need [geoip] asn_database (a GeoLite2-ASN style "
      "mmdb)"]),
    ('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.13335 = ["fra"]\n'
     'asn.AS13335 = ["iad"]\n', ASN_HEAD, ["t.toml:@5: pools.api.asn.AS13335: duplicate asn "
                                           "13335"]),
    ('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.ASX = ["fra"]\n', ASN_HEAD,
     ["t.toml:@4: pools.api.asn.ASX: expected an AS number like 13335 or \"AS13335\", got "
      "'ASX'"]),
    ('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.0 = ["fra"]\n', ASN_HEAD,
     ["t.toml:@4: pools.api.asn.0: expected an AS number like 13335 or \"AS13335\", got '0'"]),
    ('[pools.api]\nstrategy = "geo"\ndefault = ["iad"]\nasn.1 = ["frx"]\n', ASN_HEAD,
     ["t.toml:@4: pools.api.asn.1[0]: unknown POP 'frx'; did you mean 'fra'?"]),
    ('[pools.api]\nstrategy = "nearest"\nasn.1 = ["fra"]\n', ASN_HEAD,
     ["t.toml:@3: pools.api.asn: unknown key for strategy 'nearest'"]),
])
def test_asn_problems(tmp: Path, pools: str, head: str, expected: list[str]) -> None:
    assert _problems(pools, tmp, head) == expected


def test_asn_database_must_exist(tmp: Path) -> None:
    assert _problems("", tmp, '[geoip]\nasn_database = "TMP/missing.mmdb"\n') == [
        f"t.toml:2: geoip.asn_database: no such file: {tmp}/missing.mmdb"]


# ----------------------------------------------------------------------------------- guards


def test_guards_parse(tmp: Path) -> None:
    pool = _ok('[pools.www]\nstrategy = "nearest"\nmin_up = 2\nmax_share = 0.6\n',
               tmp).pools["www"]
    assert (pool.min_up, pool.max_share) == (2, 0.6)


@pytest.mark.parametrize(("pools", "expected"), [
    ('[pools.www]\nstrategy = "failover"\npops = ["iad", "fra"]\nmin_up = 3\n',
     "t.toml:@4: pools.www.min_up: can never hold: the pool has 2 POPs"),
    ('[pools.www]\nstrategy = "nearest"\nmax_share = 0.3\n',
     "t.toml:@3: pools.www.max_share: can never hold with 3 POPs (a share of 0.3 each needs "
     "at least 4)"),
    ('[pools.www]\nstrategy = "nearest"\nmin_up = 0\n',
     "t.toml:@3: pools.www.min_up: must be at least 1"),
    ('[pools.www]\nstrategy = "nearest"\nmax_share = 0\n',
     "t.toml:@3: pools.www.max_share: must be greater than 0"),
    ('[pools.www]\nstrategy = "nearest"\nmin_up = 1.5\n',
     "t.toml:@3: pools.www.min_up: expected an integer, got float"),
])
def test_guard_problems(tmp: Path, pools: str, expected: str) -> None:
    assert _problems(pools, tmp) == [expected]


# ---------------------------------------------------------------------------------- all of it


def test_a_config_using_every_feature_is_valid(tmp: Path) -> None:
    """Every data-driven feature together (the server acts on each of them)."""
    (tmp / "rtt.csv").write_text("prefix,pop,rtt_ms,samples\n10.0.0.0/8,iad,5,10\n")
    pools = """
        [pools.www]
        strategy = "latency"
        map = "TMP/rtt.csv"
        fallback = "failover"
        pops = ["iad", "fra"]
        spill = true
        min_up = 1

        [pools.api]
        strategy = "geo"
        default = ["iad"]
        asn.13335 = ["fra"]
        max_share = 0.9
        """
    cfg = _ok(pools, tmp, ASN_HEAD)
    assert set(cfg.pools) == {"www", "api"}
    assert cfg.pools["www"].spill and cfg.pools["www"].min_up == 1
    assert cfg.pools["api"].asn == {13335: ("fra",)}


def test_shipped_config_is_valid() -> None:
    from geodns.config import load_config

    load_config(Path(__file__).resolve().parents[2] / "geodns.toml")
