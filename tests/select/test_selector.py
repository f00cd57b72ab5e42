"""Table-driven selection tests per strategy, on a tiny mmdb and on GeoLite2."""

from __future__ import annotations

import ipaddress
import random
from typing import Any, cast

import pytest

from geodns.config import load_config
from geodns.geoip.db import GeoDB
from geodns.geoip.location import haversine_km
from geodns.health.snapshot import HealthSnapshot, State
from geodns.select.selector import Selector
from tests.select.conftest import make_config

A, AAAA, TXT, MX = 1, 28, 16, 15
UP = HealthSnapshot.all_up()

GEO_POOLS = """
[pools.geo]
strategy = "geo"
continent.NA = ["iad", "fra"]
continent.EU = ["fra", "iad"]
continent.AS = ["sin", "syd"]
country.CA = ["fra"]
subdivision."US-CA" = ["sfo", "iad"]
subdivision."GB-ENG" = ["sin"]
subdivision."GB-LND" = ["iad"]
nets = { "1.2.3.0/24" = ["syd"], "1.2.3.128/25" = ["gru"], "2001:db8:1:ff00::/56" = ["sin"] }
default = ["gru", "iad"]

[pools.geo_nodata]
strategy = "geo"
continent.EU = ["fra"]
default = ["iad"]
all_down = "nodata"

[pools.geo_servfail]
strategy = "geo"
continent.EU = ["fra"]
default = ["iad"]
all_down = "servfail"
ttl = 300
ttl_on_failure = 30

[pools.geo_two]
strategy = "geo"
continent.EU = ["fra", "iad", "sin"]
default = ["iad"]
answers = 2
"""


def health(**states: str) -> HealthSnapshot:
    """Overrides from keywords: pop=state, or "pop/address"=state via dict unpacking."""
    overrides: dict[Any, State] = {}
    for k, v in states.items():
        overrides[tuple(k.split("/")) if "/" in k else k] = cast(State, v)
    return HealthSnapshot.build(overrides=overrides, generation=1)


def sel_tuple(s: Any) -> tuple[Any, ...]:
    return (s.kind, s.cname if s.kind == "cname" else s.addresses, s.ttl, s.scope)


@pytest.fixture(scope="module")
def geo_selector(tiny_db: GeoDB) -> Selector:
    return Selector(make_config(GEO_POOLS), tiny_db)


# (client, source_prefix, qtype, health, expected (kind, answer, ttl, scope))
GEO_CASES = [
    # subdivision US-CA: sfo has no IPv4, so for A it is no candidate (not a failure)
    ("1.1.5.5", None, A, UP, ("addresses", ("192.0.2.10",), 60, 16)),
    ("1.1.5.5", None, AAAA, UP, ("addresses", ("2001:db8:60::1",), 60, 16)),
    # continent NA; the /16 is cut at /22 so the scope never covers 1.2.3.0/24
    ("1.2.5.5", 24, A, UP, ("addresses", ("192.0.2.10",), 60, 22)),
    ("1.2.200.0", 24, A, UP, ("addresses", ("192.0.2.10",), 60, 17)),
    # nets: longest prefix wins, and the /24 answer's scope avoids the /25 inside it
    ("1.2.3.4", 32, A, UP, ("addresses", ("192.0.2.50",), 60, 25)),
    ("1.2.3.200", 32, A, UP, ("addresses", ("192.0.2.40",), 60, 25)),
    ("1.2.3.0", 24, A, UP, ("addresses", ("192.0.2.50",), 60, 25)),
    # country beats continent; subdivisions: the smallest listed one wins
    ("1.3.1.1", None, A, UP, ("addresses", ("192.0.2.20",), 60, 16)),
    ("2.2.2.2", None, A, UP, ("addresses", ("192.0.2.10",), 60, 16)),
    ("2.1.1.1", None, A, UP, ("addresses", ("192.0.2.20",), 60, 16)),
    ("2.1.1.1", None, AAAA, UP, ("addresses", ("2001:db8:20::1",), 60, 16)),
    # continent-only record; unknown address -> default (gru has no IPv6)
    ("7.1.1.1", None, A, UP, ("addresses", ("192.0.2.20",), 60, 8)),
    ("10.0.0.1", None, A, UP, ("addresses", ("192.0.2.40",), 60, 7)),
    ("10.0.0.1", None, AAAA, UP, ("addresses", ("2001:db8:10::1",), 60, 7)),
    # IPv6 clients, with and without a nets match
    ("2001:db8:1::1", 56, A, UP, ("addresses", ("192.0.2.20",), 60, 49)),  # not ff00::/56
    ("2001:db8:1:ff00::", 56, A, UP, ("addresses", ("192.0.2.30",), 60, 56)),
    ("2001:db8:3::1", 48, AAAA, UP, ("addresses", ("2001:db8:30::1",), 60, 48)),
    # health: first healthy POP wins, ttl_on_failure when one was skipped
    ("2.1.1.1", None, A, health(fra="down"), ("addresses", ("192.0.2.10",), 10, 16)),
    ("2.1.1.1", None, A, health(fra="drain"), ("addresses", ("192.0.2.10",), 10, 16)),
    ("1.2.5.5", None, A, health(fra="down"), ("addresses", ("192.0.2.10",), 60, 22)),
    ("1.2.5.5", None, A, health(**{"iad/192.0.2.10": "down"}),
     ("addresses", ("192.0.2.11",), 10, 22)),
    # every candidate down: fail_open answers as if all were up, with ttl_on_failure
    ("1.2.3.4", None, A, health(syd="down"), ("addresses", ("192.0.2.50",), 10, 25)),
    ("2.1.1.1", None, A, health(fra="down", iad="drain"),
     ("addresses", ("192.0.2.20",), 10, 16)),
    # only the family's candidates count: sfo down is a failure for AAAA only
    ("1.1.5.5", None, A, health(sfo="down"), ("addresses", ("192.0.2.10",), 60, 16)),
    ("1.1.5.5", None, AAAA, health(sfo="down"), ("addresses", ("2001:db8:10::1",), 10, 16)),
    # other qtypes: NODATA for everybody
    ("2.1.1.1", None, TXT, UP, ("nodata", (), 60, 0)),
]


@pytest.mark.parametrize(("client", "source", "qtype", "hs", "expected"), GEO_CASES)
def test_geo(geo_selector: Selector, client: str, source: int | None, qtype: int,
             hs: HealthSnapshot, expected: tuple[Any, ...]) -> None:
    got = geo_selector.select("geo", qtype, client, source, hs)
    assert sel_tuple(got) == expected
    # packed bytes (what the wire decoder has) give the very same Selection
    packed = ipaddress.ip_address(client).packed
    assert geo_selector.select("geo", qtype, packed, source, hs) == got
    # and so does a cold selector (no cache involved)
    cold = Selector(geo_selector.config, geo_selector.geo)
    assert cold.select("geo", qtype, client, source, hs) == got


@pytest.mark.parametrize(
    ("pool", "hs", "expected"),
    [
        ("geo_nodata", UP, ("addresses", ("192.0.2.20",), 60, 16)),
        ("geo_nodata", health(fra="down"), ("nodata", (), 10, 16)),
        ("geo_servfail", health(fra="down"), ("servfail", (), 30, 16)),
        ("geo_servfail", health(iad="down"), ("addresses", ("192.0.2.20",), 300, 16)),
        ("geo_two", UP, ("addresses", ("192.0.2.20", "192.0.2.10"), 60, 16)),
        ("geo_two", health(fra="down"), ("addresses", ("192.0.2.10", "192.0.2.11"), 10, 16)),
        ("geo_two", health(iad="down"), ("addresses", ("192.0.2.20", "192.0.2.30"), 10, 16)),
    ],
)
def test_geo_policies_and_answer_counts(geo_selector: Selector, pool: str, hs: HealthSnapshot,
                                        expected: tuple[Any, ...]) -> None:
    assert sel_tuple(geo_selector.select(pool, A, "2.1.1.1", None, hs)) == expected


def test_geo_selection_records_chosen_pops(geo_selector: Selector) -> None:
    s = geo_selector.select("geo_two", A, "2.1.1.1", None, health(fra="down"))
    assert s.pops == ("iad",)
    s = geo_selector.select("geo_two", A, "2.1.1.1", None, health(iad="down"))
    assert s.pops == ("fra", "sin")
    assert s.key == ("addresses", ("192.0.2.20", "192.0.2.30"), None, 10)


NEAREST_POOLS = """
[pools.near]
strategy = "nearest"
default = ["iad", "fra"]

[pools.near_subset]
strategy = "nearest"
pops = ["fra", "syd"]
answers = 2

[pools.solo]
strategy = "nearest"
pops = ["fra"]
"""


@pytest.fixture(scope="module")
def near_selector(tiny_db: GeoDB) -> Selector:
    return Selector(make_config(NEAREST_POOLS), tiny_db)


NEAREST_CASES = [
    # London -> fra; Paris (2.3.0.0/16) also goes to fra, 2.0.0.0/16 (no data) to iad: /15
    ("near", "2.2.2.2", A, UP, ("addresses", ("192.0.2.20",), 60, 15)),
    ("near", "2.2.2.2", A, health(fra="down"), ("addresses", ("192.0.2.10",), 10, 15)),
    # SF, no v4 sfo: iad, like every other client of 0.0.0.0/7 (2.x is EU)
    ("near", "1.1.1.1", A, UP, ("addresses", ("192.0.2.10",), 60, 7)),
    ("near", "1.1.1.1", AAAA, UP, ("addresses", ("2001:db8:60::1",), 60, 16)),
    ("near", "1.1.1.1", A, health(sfo="down"), ("addresses", ("192.0.2.10",), 60, 7)),
    ("near", "5.1.1.1", A, UP, ("addresses", ("192.0.2.50",), 60, 16)),  # Sydney
    ("near", "5.1.1.1", A, health(syd="down"), ("addresses", ("192.0.2.30",), 10, 16)),
    # gru has no v6: iad, as for the rest of 4.0.0.0/8 (no data: default); 5.x is Sydney
    ("near", "4.1.1.1", AAAA, UP, ("addresses", ("2001:db8:10::1",), 60, 8)),
    ("near", "7.1.1.1", A, UP, ("addresses", ("192.0.2.10",), 60, 8)),  # no coordinates
    ("near", "10.0.0.1", A, UP, ("addresses", ("192.0.2.10",), 60, 7)),  # no location
    ("near", "10.0.0.1", A, health(iad="down"), ("addresses", ("192.0.2.20",), 10, 7)),
    ("near", "2001:db8:3::9", AAAA, UP, ("addresses", ("2001:db8:30::1",), 60, 48)),
    # all of 2.0.0.0/8 ranks fra before syd (empty networks: the pool order); 3.x is Asia
    ("near_subset", "2.1.1.1", A, UP, ("addresses", ("192.0.2.20", "192.0.2.50"), 60, 8)),
    ("near_subset", "5.1.1.1", A, UP, ("addresses", ("192.0.2.50", "192.0.2.20"), 60, 16)),
    # a single candidate: the same answer for everybody, scope 0
    ("solo", "5.1.1.1", A, UP, ("addresses", ("192.0.2.20",), 60, 0)),
    ("solo", "5.1.1.1", A, health(fra="down"), ("addresses", ("192.0.2.20",), 10, 0)),
]


@pytest.mark.parametrize(("pool", "client", "qtype", "hs", "expected"), NEAREST_CASES)
def test_nearest(near_selector: Selector, pool: str, client: str, qtype: int,
                 hs: HealthSnapshot, expected: tuple[Any, ...]) -> None:
    assert sel_tuple(near_selector.select(pool, qtype, client, None, hs)) == expected


ORDER_POOLS = """
[pools.fo]
strategy = "failover"
pops = ["fra", "iad", "sin"]

[pools.every]
strategy = "all"
pops = ["iad", "fra", "gru"]

[pools.every2]
strategy = "all"
pops = ["iad", "fra", "gru"]
answers = 2
all_down = "servfail"
"""


@pytest.mark.parametrize(
    ("pool", "qtype", "hs", "expected"),
    [
        ("fo", A, UP, ("addresses", ("192.0.2.20",), 60, 0)),
        ("fo", A, health(fra="down"), ("addresses", ("192.0.2.10",), 10, 0)),
        ("fo", AAAA, health(fra="down", iad="down"), ("addresses", ("2001:db8:30::1",), 10, 0)),
        ("fo", A, health(fra="down", iad="down", sin="down"),
         ("addresses", ("192.0.2.20",), 10, 0)),
        ("every", A, UP,
         ("addresses", ("192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.40"), 60, 0)),
        ("every", AAAA, UP, ("addresses", ("2001:db8:10::1", "2001:db8:20::1"), 60, 0)),
        ("every", A, health(iad="down"), ("addresses", ("192.0.2.20", "192.0.2.40"), 10, 0)),
        ("every", A, health(**{"iad/192.0.2.11": "drain"}),
         ("addresses", ("192.0.2.10", "192.0.2.20", "192.0.2.40"), 10, 0)),
        ("every2", A, UP, ("addresses", ("192.0.2.10", "192.0.2.11"), 60, 0)),
        ("every2", A, health(iad="down", fra="down", gru="down"), ("servfail", (), 10, 0)),
    ],
)
def test_failover_and_all(tiny_db: GeoDB, pool: str, qtype: int, hs: HealthSnapshot,
                          expected: tuple[Any, ...]) -> None:
    s = Selector(make_config(ORDER_POOLS), tiny_db)
    for client in ("2.1.1.1", "5.1.1.1", "2001:db8:2::1"):
        assert sel_tuple(s.select(pool, qtype, client, 24, hs)) == expected


WEIGHTED_POOLS = """
[pools.canary]
strategy = "weighted"
pops = ["iad", "fra"]
weights = { iad = 95, fra = 5 }

[pools.w3]
strategy = "weighted"
pops = ["iad", "fra", "sin"]

[pools.w1]
strategy = "weighted"
pops = ["fra"]
"""


def _prefixes(n: int) -> list[bytes]:
    return [bytes([11 + (i >> 16) % 200, (i >> 8) & 0xFF, i & 0xFF, 0]) for i in range(n)]


def test_weighted_canary_share_is_about_five_percent_and_stable(tiny_db: GeoDB) -> None:
    cfg = make_config(WEIGHTED_POOLS)
    clients = _prefixes(20_000)
    first = [Selector(cfg, tiny_db).select("canary", A, c, 24, UP).pops[0] for c in clients]
    share = first.count("fra") / len(first)
    assert 0.03 <= share <= 0.07, share
    second_sel = Selector(cfg, tiny_db)  # a fresh instance: no shared cache
    assert [second_sel.select("canary", A, c, 24, UP).pops[0] for c in clients] == first


def test_weighted_is_sticky_per_slash24_and_slash56(tiny_db: GeoDB) -> None:
    s = Selector(make_config(WEIGHTED_POOLS), tiny_db)
    for base in range(200):
        net = ipaddress.IPv4Network(f"{11 + base}.{base}.7.0/24")
        picks = {s.select("w3", A, str(net[i]), None, UP).pops for i in (0, 1, 77, 255)}
        assert len(picks) == 1
        assert s.select("w3", A, str(net[5]), None, UP).scope == 24
    v6 = [s.select("w3", AAAA, f"2001:db8:{i:x}:{j:x}00::{k}", None, UP)
          for i in range(50) for j in (0, 0xff) for k in (1, 2)]
    for i in range(0, len(v6), 2):  # pairs share a /56 (only the host part differs)
        assert v6[i].pops == v6[i + 1].pops
        assert v6[i].scope == 56
    assert len({x.pops for x in v6}) == 3


def test_weighted_even_split_and_minimal_disruption(tiny_db: GeoDB) -> None:
    cfg = make_config(WEIGHTED_POOLS)
    clients = _prefixes(6000)
    before = [Selector(cfg, tiny_db).select("w3", A, c, 24, UP) for c in clients]
    counts = {p: sum(1 for b in before if b.pops == (p,)) for p in ("iad", "fra", "sin")}
    assert all(1800 < n < 2200 for n in counts.values()), counts
    down = health(sin="down")
    s = Selector(cfg, tiny_db)
    after = [s.select("w3", A, c, 24, down) for c in clients]
    for b, a in zip(before, after, strict=True):
        if b.pops != ("sin",):
            assert a.pops == b.pops and a.ttl == 60  # untouched clients keep everything
        else:
            assert a.pops in (("iad",), ("fra",)) and a.ttl == 10


def test_weighted_single_pop_is_untailored(tiny_db: GeoDB) -> None:
    s = Selector(make_config(WEIGHTED_POOLS), tiny_db)
    assert sel_tuple(s.select("w1", A, "2.1.1.1", 24, UP)) == (
        "addresses", ("192.0.2.20",), 60, 0)


def test_nearest_distances_are_great_circle() -> None:
    import numpy as np

    from geodns.select.compile import nearest_order

    cfg = make_config(NEAREST_POOLS)
    pops = cfg.pools["near"].pops
    coords = [(cfg.pops[p].lat, cfg.pops[p].lon) for p in pops]
    rnd = random.Random(3)
    lats = [rnd.uniform(-90, 90) for _ in range(200)]
    lons = [rnd.uniform(-180, 180) for _ in range(200)]
    order, dist = nearest_order(np.array(lats), np.array(lons), coords)
    for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
        ref = [haversine_km(lat, lon, la, lo) for la, lo in coords]
        assert all(abs(d - r) < 1e-6 for d, r in zip(dist[i], ref, strict=True))
        assert [pops[j] for j in order[i]] == [pops[j] for j in sorted(
            range(len(pops)), key=lambda j: (ref[j], j))]


CNAME_POPS = """
[pops.e1]
lat = 50.1
lon = 8.7
cname = "edge-fra.cdn.example.net"

[pops.e2]
lat = 38.9
lon = -77.0
cname = "edge-iad.cdn.example.net."
"""

CNAME_POOLS = """
[pools.c]
strategy = "nearest"

[pools.cf]
strategy = "failover"
pops = ["e2", "e1"]
"""


@pytest.mark.parametrize("qtype", [A, AAAA, TXT, MX])
def test_cname_pools_answer_cname_for_every_qtype(tiny_db: GeoDB, qtype: int) -> None:
    s = Selector(make_config(CNAME_POOLS, pops=CNAME_POPS), tiny_db)
    got = s.select("c", qtype, "2.2.2.2", None, UP)
    # 2.0.0.0/7 (EU, Asia, no data) all rank e1 first; 1.1.0.0/16 (San Francisco) does not
    assert sel_tuple(got) == ("cname", "edge-fra.cdn.example.net.", 60, 7)
    assert got.pops == ("e1",) and got.addresses == ()
    got = s.select("c", qtype, "2.2.2.2", None, health(e1="down"))
    assert sel_tuple(got) == ("cname", "edge-iad.cdn.example.net.", 10, 7)
    assert sel_tuple(s.select("cf", qtype, "2.2.2.2", None, UP)) == (
        "cname", "edge-iad.cdn.example.net.", 60, 0)


def test_no_candidate_of_the_family_is_nodata(tiny_db: GeoDB) -> None:
    cfg = make_config("""
        [pools.v4only]
        strategy = "failover"
        pops = ["gru"]

        [pools.v6only]
        strategy = "geo"
        continent.EU = ["sfo"]
        default = ["gru"]
    """)
    s = Selector(cfg, tiny_db)
    assert sel_tuple(s.select("v4only", AAAA, "2.1.1.1", None, UP)) == ("nodata", (), 60, 0)
    assert sel_tuple(s.select("v4only", A, "2.1.1.1", None, UP))[:2] == (
        "addresses", ("192.0.2.40",))
    assert sel_tuple(s.select("v6only", A, "2.1.1.1", None, UP)) == ("nodata", (), 60, 16)
    assert sel_tuple(s.select("v6only", AAAA, "2.1.1.1", None, UP)) == (
        "addresses", ("2001:db8:60::1",), 60, 16)
    # a down POP does not turn "no address of this family" into a failure
    assert sel_tuple(s.select("v6only", A, "2.1.1.1", None, health(sfo="down"))) == (
        "nodata", (), 60, 16)


def test_untailored_geo_pool_gets_scope_zero(tiny_db: GeoDB) -> None:
    cfg = make_config("""
        [pools.same]
        strategy = "geo"
        continent.EU = ["fra", "iad"]
        continent.NA = ["fra"]
        default = ["fra"]
    """)
    s = Selector(cfg, tiny_db)
    assert s.select("same", A, "2.1.1.1", None, UP).scope == 0
    assert s.select("same", A, "1.2.1.1", None, UP).scope == 0
    # once fra is down the lists resolve differently: tailored again
    got = s.select("same", A, "2.1.1.1", None, health(fra="down"))
    assert sel_tuple(got) == ("addresses", ("192.0.2.10",), 10, 16)


def test_ecs_source_prefix_zero_means_no_location(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS + NEAREST_POOLS), tiny_db)
    assert sel_tuple(s.select("geo", A, "0.0.0.0", 0, UP)) == (
        "addresses", ("192.0.2.40",), 60, 0)
    assert sel_tuple(s.select("near", A, "::", 0, UP)) == ("addresses", ("192.0.2.10",), 60, 0)


def test_source_prefix_masks_the_client(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS), tiny_db)
    # bits beyond the source prefix are ignored: 1.2.3.200/24 is 1.2.3.0/24
    assert s.select("geo", A, "1.2.3.200", 24, UP).addresses == ("192.0.2.50",)
    assert s.select("geo", A, "1.2.3.200", None, UP).addresses == ("192.0.2.40",)


def test_v4_mapped_text_client_is_ipv4(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS), tiny_db)
    assert s.select("geo", A, "::ffff:1.2.3.4", None, UP) == s.select(
        "geo", A, "1.2.3.4", None, UP)


def test_unknown_pool_and_bad_client(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS), tiny_db)
    assert s.select("nope", A, "1.2.3.4", None, UP).kind == "servfail"
    with pytest.raises(ValueError):
        s.select("geo", A, "not-an-ip", None, UP)
    with pytest.raises(ValueError):
        s.select("geo", A, b"\x01\x02\x03", None, UP)


def test_without_geoip_database(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS + NEAREST_POOLS), None)
    assert sel_tuple(s.select("near", A, "2.2.2.2", None, UP)) == (
        "addresses", ("192.0.2.10",), 60, 0)
    # nets still work and still bound the scope
    assert sel_tuple(s.select("geo", A, "1.2.3.4", None, UP)) == (
        "addresses", ("192.0.2.50",), 60, 25)
    assert sel_tuple(s.select("geo", A, "1.2.5.4", None, UP)) == (
        "addresses", ("192.0.2.40",), 60, 22)


def test_cache_follows_health_changes(tiny_db: GeoDB) -> None:
    s = Selector(make_config(GEO_POOLS), tiny_db)
    h0 = HealthSnapshot.all_up()
    assert s.select("geo", A, "2.1.1.1", None, h0).addresses == ("192.0.2.20",)
    h1 = h0.with_override("fra", "down")
    assert h1.generation == 1
    assert s.select("geo", A, "2.1.1.1", None, h1).addresses == ("192.0.2.10",)
    h2 = h1.with_override("fra", None)
    assert s.select("geo", A, "2.1.1.1", None, h2).addresses == ("192.0.2.20",)
    # a snapshot that reuses a generation with other content still misses the cache
    clash = HealthSnapshot.build(overrides={"fra": "down"}, generation=h2.generation)
    assert s.select("geo", A, "2.1.1.1", None, clash).addresses == ("192.0.2.10",)


def test_no_state_grows_with_clients(tiny_db: GeoDB) -> None:
    """Decisions come from compiled maps: many distinct clients leave nothing behind but
    one resolved answer per ranking."""
    s = Selector(make_config(GEO_POOLS + WEIGHTED_POOLS), tiny_db)
    for c in _prefixes(5000):
        s.select("canary", A, c, 24, UP)
        s.select("geo", A, c, 24, UP)
    assert len(s.plans["geo"]._answers) <= len(s.plans["geo"].maps[4].entries)
    assert len(s.plans["canary"]._answers) <= 2  # two possible rankings of two POPs


# --------------------------------------------------------------------------- real db


@pytest.fixture(scope="module")
def shipped(real_db: GeoDB) -> Selector:
    from tests.helpers.paths import REPO_ROOT

    return Selector(load_config(REPO_ROOT / "geodns.toml"), real_db)


@pytest.mark.parametrize(
    ("pool", "client", "source", "qtype", "answer"),
    [
        ("www", "81.2.69.0", 24, A, ("192.0.2.20",)),  # London -> fra
        ("www", bytes([81, 2, 69, 0]), 24, A, ("192.0.2.20",)),
        ("www", "81.2.69.0", 24, AAAA, ("2001:db8:20::1",)),
        ("www", "1.1.1.1", None, A, ("192.0.2.50",)),  # Melbourne -> syd
        ("www", "8.8.8.8", None, A, ("192.0.2.10",)),  # US -> iad
        ("www", "127.0.0.1", None, A, ("192.0.2.10",)),  # no location -> default
        ("api", "81.2.69.0", 24, A, ("192.0.2.20",)),  # EU -> fra
        ("api", "1.1.1.1", None, A, ("192.0.2.50",)),  # OC -> syd
        ("api", "8.8.8.8", None, AAAA, ("2001:db8:10::1",)),  # NA -> iad
        ("api", "2a02:2e0::1", 56, A, ("192.0.2.20",)),  # DE (IPv6 client) -> fra
        ("api", "10.1.2.3", None, A, ("192.0.2.10",)),  # private: default -> iad
    ],
)
def test_shipped_config_with_geolite2(shipped: Selector, pool: str, client: str | bytes,
                                      source: int | None, qtype: int,
                                      answer: tuple[str, ...]) -> None:
    got = shipped.select(pool, qtype, client, source, UP)
    assert got.kind == "addresses" and got.addresses == answer and got.ttl == 60


def test_shipped_www_scope_for_london(real_db: GeoDB) -> None:
    from tests.helpers.paths import REPO_ROOT

    cfg = load_config(REPO_ROOT / "geodns.toml")
    s = Selector(cfg, real_db)
    got = s.select("www", A, "81.2.69.0", 24, UP)
    # the GeoLite2 network is 81.2.68.0/23; its neighbours also go to fra: wider
    assert got.pops == ("fra",) and got.scope < 23
    block = ipaddress.ip_network(f"81.2.69.0/{got.scope}", strict=False)
    rnd = random.Random(5)
    for _ in range(200):
        other = str(block[rnd.randrange(block.num_addresses)])
        assert s.select("www", A, other, 32, UP).key == got.key
