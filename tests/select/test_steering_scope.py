"""asn rules, latency maps and spillover against the reference selection
(tests/select/reference.py), like test_scope.py does for geography:

* the compiled answer is the reference's, IPv4 and IPv6 (IPv4 inside IPv6 too);
* the ECS scope is sound: every address inside client/scope gets the same answer;
* and maximal where no hash decides (a spilled interval's scope is never wider than
  the client's /24 or /56).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import maxminddb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import Config
from geodns.geoip.asn_tables import asn_tables
from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthSnapshot, State
from geodns.select.inputs import Inputs
from geodns.select.latency import LatencyBook
from geodns.select.selector import Selector
from geodns.select.spill import PopLoad, SpillHolder, SpillState
from geodns.traffic.latency_map import LatencyMap, parse_latency_map
from tests.select.conftest import POPS_TOML, make_config
from tests.select.mmdb_writer import MAXMIND_ALIASES, write_asn_mmdb
from tests.select.reference import Latency, Reference, Spill
from tests.select.test_scope import INTERESTING_V4, INTERESTING_V6, POP_NAMES, check

# Networks of a small ASN database: overlapping real GeoLite2 networks, nets rules and
# each other in awkward places (the /20 holds the /24 holds the /26).
ASN_ROWS = [
    ("81.2.64.0/20", 64500, "Transit"),
    ("81.2.69.0/24", 64501, "Access"),
    ("81.2.69.192/26", 64500, "Transit"),
    ("8.8.8.0/24", 15169, "Google"),
    ("1.0.0.0/9", 64502, "Big"),
    ("93.184.216.0/24", 64504, None),
    ("2.16.0.0/13", 64505, None),
    ("2a02:2e0::/29", 64503, None),
    ("2a02:2e0:3fe::/48", 64500, "Transit"),
    ("2001:4860::/32", 15169, "Google"),
]

ASN_POOLS = """
[pools.ga]
strategy = "geo"
continent.EU = ["fra", "iad"]
continent.NA = ["iad", "fra"]
country.GB = ["iad", "fra"]
subdivision."GB-ENG" = ["fra", "sin"]
asn.64500 = ["syd", "fra"]
asn.AS15169 = ["gru", "iad"]
asn.64503 = ["sin", "syd"]
asn.64505 = ["sin"]
nets = { "81.2.69.0/25" = ["sin"], "8.8.8.128/25" = ["fra"], "2a02:2e0:3fe:1::/64" = ["iad"], \
"2002:5db8:d8ff::/48" = ["gru"] }
default = ["iad", "fra"]
"""

MAP1 = """prefix,pop,rtt_ms,samples
81.2.64.0/20,fra,30,50
81.2.64.0/20,iad,90,50
81.2.69.0/24,iad,20,50
81.2.69.0/24,fra,21,50
81.2.69.64/26,sin,15,40
81.2.69.64/26,fra,40,40
8.8.0.0/16,iad,12,80
8.8.0.0/16,gru,70,80
1.0.0.0/9,syd,40,30
1.0.0.0/9,sin,45,30
2a02:2e0::/32,fra,25,20
2a02:2e0::/32,syd,300,20
2001:4860:4860::/48,gru,50,20
2001:4860:4860::/48,sfo,60,20
"""
# The next map: 81.2.69.0/24's fra is now 1 ms faster than iad (within the margin:
# iad, the incumbent, stays); 8.8.0.0/16's gru is much faster (moves); a new row.
MAP2 = MAP1.replace("81.2.69.0/24,iad,20,50", "81.2.69.0/24,iad,21.5,50") \
    .replace("81.2.69.0/24,fra,21,50", "81.2.69.0/24,fra,20.5,50") \
    .replace("8.8.0.0/16,gru,70,80", "8.8.0.0/16,gru,5,80") + "2.16.0.0/16,sin,9,20\n" \
    "2.16.0.0/16,fra,80,20\n"

LATENCY_POOLS = """
[pools.ln]
strategy = "latency"
map = "MAP"
margin = "10%"

[pools.lg]
strategy = "latency"
map = "MAP"
fallback = "geo"
margin = 5
continent.EU = ["fra", "iad"]
asn.64500 = ["syd", "fra"]
nets = { "81.2.69.0/25" = ["sin"], "2001:4860::/32" = ["syd"] }
default = ["iad", "gru"]

[pools.lw]
strategy = "latency"
map = "MAP"
fallback = "weighted"
pops = ["iad", "fra", "sin"]
weights = { iad = 5, fra = 3, sin = 1 }

[pools.lf]
strategy = "latency"
map = "MAP"
fallback = "failover"
pops = ["gru", "iad", "fra", "syd", "sin"]
"""

SPILL_HEAD = """
[loads.edge]
type = "file"
path = "/dev/null"
"""
SPILL_POOLS = """
[pools.sn]
strategy = "nearest"
spill = true
spill_at = 0.7

[pools.sg]
strategy = "geo"
spill = true
continent.EU = ["fra", "iad", "sin"]
continent.NA = ["iad", "fra", "gru"]
asn.64500 = ["syd", "fra", "sin"]
nets = { "81.2.69.0/25" = ["sin", "fra"] }
default = ["iad", "fra", "gru"]

[pools.sw]
strategy = "weighted"
spill = true
pops = ["iad", "fra", "sin", "syd"]
weights = { iad = 5, fra = 3, sin = 1, syd = 1 }

[pools.sf]
strategy = "failover"
spill = true
answers = 2
pops = ["fra", "iad", "gru", "syd"]
"""


def _spill_pops() -> str:
    """The test POPs, each with a capacity and the load feed (spill needs both)."""
    out = []
    for block in POPS_TOML.strip().split("\n\n"):
        out.append(block + '\ncapacity = 1000\nload = "edge"')
    return SPILL_HEAD + "\n\n".join(out) + "\n"


@pytest.fixture(scope="module")
def asn_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_asn_mmdb(tmp_path_factory.mktemp("asn") / "asn.mmdb", ASN_ROWS,
                          aliases=MAXMIND_ALIASES)


def _config(pools: str, asn_db: Path, pops: str = POPS_TOML, map_path: str = "") -> Config:
    head = f'[geoip]\nasn_database = "{asn_db}"\n'
    return make_config(head + pools.replace("MAP", map_path), pops=pops)


states = st.sampled_from(["up", "up", "up", "down", "drain"])
healths = st.dictionaries(st.sampled_from(POP_NAMES), states, max_size=3)


@st.composite
def clients(draw: st.DrawFn) -> tuple[str, int | None]:
    """Addresses where GeoIP networks, ASN networks, nets and map rows interact."""
    nets = INTERESTING_V4 + INTERESTING_V6 + [
        "81.2.69.0/24", "81.2.69.64/26", "8.8.8.0/24", "2.16.0.0/13", "2a02:2e0:3fe::/48",
        "2001:4860:4860::/48", "::ffff:81.2.64.0/116", "2002:5102:4000::/36"]
    net = ipaddress.ip_network(draw(st.sampled_from(nets)))
    addr = net[draw(st.integers(0, net.num_addresses - 1))]
    bits = 32 if addr.version == 4 else 128
    return str(addr), draw(st.one_of(st.none(), st.integers(1, bits)))


def _health(overrides: dict[str, State]) -> HealthSnapshot:
    return HealthSnapshot.build(overrides=dict(overrides), generation=5)


# ------------------------------------------------------------------------------ asn


@pytest.fixture(scope="module")
def asn_shared(real_db: GeoDB, asn_db: Path) -> Iterator[tuple[Config, Selector, Reference]]:
    cfg = _config(ASN_POOLS, asn_db)
    with maxminddb.open_database(str(real_db.path)) as reader, \
            maxminddb.open_database(str(asn_db)) as asn_reader:
        yield cfg, Selector(cfg, real_db), Reference(cfg, reader, asn_reader)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=clients(), overrides=healths, qtype=st.sampled_from([1, 28]),
       seed=st.integers(0, 2**32))
def test_asn_rules_agree_and_scopes_are_exact(
        asn_shared: tuple[Config, Selector, Reference], client: tuple[str, int | None],
        overrides: dict[str, State], qtype: int, seed: int) -> None:
    cfg, sel, ref = asn_shared
    check(sel, ref, cfg, "ga", qtype, client[0], client[1], _health(overrides), seed)


@pytest.mark.parametrize(("client", "rule", "pops"), [
    ("81.2.70.1", "asn.64500", ("syd",)),  # AS rule beats subdivision GB-ENG
    ("81.2.69.130", "subdivision.\"GB-ENG\"", ("fra",)),  # AS64501 has no rule
    ("81.2.69.200", "asn.64500", ("syd",)),  # the /26 inside the /24
    ("81.2.69.10", 'nets."81.2.69.0/25"', ("sin",)),  # nets beat asn
    ("8.8.8.8", "asn.15169", ("gru",)),
    ("8.8.8.200", 'nets."8.8.8.128/25"', ("fra",)),
    ("2a02:2e0:3fe::1", "asn.64500", ("syd",)),  # the longer AS network inside AS64503's
    ("2a02:2e0:3fe:1::1", 'nets."2a02:2e0:3fe:1::/64"', ("iad",)),
    ("2a02:2e1::1", "asn.64503", ("sin",)),
    ("::ffff:8.8.8.8", "asn.15169", ("gru",)),  # IPv4-mapped: as 8.8.8.8
])
def test_precedence_nets_asn_geography(asn_shared: tuple[Config, Selector, Reference],
                                       client: str, rule: str, pops: tuple[str, ...]) -> None:
    _, sel, _ = asn_shared
    e = sel.explain("ga", 28 if ":" in client and "." not in client else 1, client, None,
                    HealthSnapshot.all_up())
    assert e.rule == rule
    assert e.selection.pops == pops


def test_six_to_four_follows_the_ipv4_asn(asn_shared: tuple[Config, Selector, Reference]
                                          ) -> None:
    """2002:0808:0808:: is 8.8.8.8 in 6to4: AS15169's rule, not IPv4's nets."""
    _, sel, _ = asn_shared
    packed = ipaddress.IPv6Address("2002:808:8c8::").packed  # 8.8.8.200 inside
    got = sel.select("ga", 1, packed, 48, HealthSnapshot.all_up())
    assert got.pops == ("gru",)
    assert got.scope >= 16 + 24  # inside 2002:808:800::/40, the /24's 6to4 block


def test_ipv6_rules_inside_ipv4_in_ipv6_blocks_bound_the_scope(
        asn_shared: tuple[Config, Selector, Reference]) -> None:
    """An IPv6 nets rule inside 6to4 space: the IPv4 neighbours' scope stops at it."""
    _, sel, _ = asn_shared
    up = HealthSnapshot.all_up()
    client = ipaddress.IPv6Address("2002:5db8:d800::")  # 6to4 of 93.184.216.0
    got = sel.select("ga", 1, client.packed, 48, up)
    block = ipaddress.ip_network(f"{client}/{got.scope}", strict=False)
    assert ipaddress.ip_address("2002:5db8:d8ff::1") not in block
    inside = sel.select("ga", 1, ipaddress.IPv6Address("2002:5db8:d8ff::").packed, 48, up)
    assert inside.pops == ("gru",) and got.pops != ("gru",)


def test_asn_rules_without_an_asn_database_are_a_config_problem(tmp_path: Path) -> None:
    from geodns.config import ConfigError

    with pytest.raises(ConfigError, match="asn rules need"):
        make_config('[pools.g]\nstrategy = "geo"\nasn.1 = ["fra"]\ndefault = ["iad"]\n')


def test_wrong_asn_database_is_reported_with_its_path(tmp_path: Path, real_db: GeoDB) -> None:
    from geodns.problems import Problems
    from tests.select.mmdb_writer import city, write_mmdb

    path = write_mmdb(tmp_path / "city.mmdb", [("1.0.0.0/8", city("EU", "DE", 50, 8))])
    cfg = _config('[pools.g]\nstrategy = "geo"\nasn.1 = ["fra"]\ndefault = ["iad"]\n', path)
    with pytest.raises(Problems, match=r"city\.mmdb:0: a Test-City database, not an ASN"):
        Selector(cfg, real_db)


# ------------------------------------------------------------------------------ latency


def _map(text: str, mtime: float | None = None) -> LatencyMap:
    return parse_latency_map(text, "rtt.csv", frozenset(POP_NAMES), mtime=mtime)


def _previous(cfg: Config, lmap: LatencyMap) -> dict[str, dict[object, str]]:
    """What the first map chose per prefix and pool: its fastest POP of the pool."""
    out: dict[str, dict[object, str]] = {}
    for name, pool in cfg.pools.items():
        mine = {}
        for net, ms in lmap:
            cands = sorted((m.rtt_ms, m.pop) for m in ms if m.pop in pool.referenced_pops())
            if cands:
                mine[net] = cands[0][1]
        out[name] = mine
    return out


@pytest.fixture(scope="module")
def latency_shared(real_db: GeoDB, asn_db: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Config, Selector, Reference]]:
    path = tmp_path_factory.mktemp("lat") / "rtt.csv"
    path.write_text(MAP1)
    cfg = _config(LATENCY_POOLS, asn_db, map_path=str(path))
    map1, map2 = _map(MAP1), _map(MAP2)
    books = {name: LatencyBook(str(path), map1) for name in cfg.pools}
    sel = Selector(cfg, real_db, inputs=Inputs(asn_tables(asn_db), books))
    for name, plan in sel.plans.items():  # the map is replaced: margins against map 1
        book = LatencyBook(str(path), map2, books[name].incumbents)
        maps, choices, _ = plan.compile_latency(book)
        plan.install_latency(maps, choices, False)
    prev = _previous(cfg, map1)
    with maxminddb.open_database(str(real_db.path)) as reader, \
            maxminddb.open_database(str(asn_db)) as asn_reader:
        yield cfg, sel, Reference(cfg, reader, asn_reader, latency={
            name: Latency(map2, prev[name]) for name in cfg.pools})


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=clients(), overrides=healths, qtype=st.sampled_from([1, 28]),
       pool=st.sampled_from(["ln", "lg", "lw", "lf"]), seed=st.integers(0, 2**32))
def test_latency_agrees_and_scopes_are_exact(
        latency_shared: tuple[Config, Selector, Reference], client: tuple[str, int | None],
        overrides: dict[str, State], qtype: int, pool: str, seed: int) -> None:
    cfg, sel, ref = latency_shared
    check(sel, ref, cfg, pool, qtype, client[0], client[1], _health(overrides), seed)


def test_margin_keeps_the_incumbent_and_explain_says_why(
        latency_shared: tuple[Config, Selector, Reference]) -> None:
    _, sel, _ = latency_shared
    up = HealthSnapshot.all_up()
    # 81.2.69.0/24: fra 20.5 ms vs iad 21.5 ms: within 10%, iad (map 1's best) stays
    e = sel.explain("ln", 1, "81.2.69.150", 24, up)
    assert e.selection.pops == ("iad",) and e.rule == "latency map 81.2.69.0/24"
    assert "note: latency map 81.2.69.0/24: fra 20.5ms (50 samples), iad 21.5ms (50 samples)" \
        in e.lines()
    assert any("does not beat iad (21.5ms) by more than the margin" in n for n in e.notes)
    # 8.8.0.0/16: gru 5 ms beats iad 12 ms by more than 10%: clients move
    assert sel.select("ln", 1, "8.8.4.0", 24, up).pops == ("gru",)
    # pool lg's margin is 5 ms: 1 ms is not enough there either
    assert sel.select("lg", 1, "81.2.69.150", 24, up).pops == ("iad",)
    # the longest row decides, and its scope is the row (here the /26)
    got = sel.select("ln", 1, "81.2.69.70", 32, up)
    assert got.pops == ("sin",) and got.scope == 26
    # not in the map: the fallback (nearest) decides, and explain says so
    e = sel.explain("ln", 1, "93.184.216.34", 24, up)
    assert any("no row for this client: the fallback (nearest) decides" in n for n in e.notes)


def test_measured_pops_down_then_the_pools_others(
        latency_shared: tuple[Config, Selector, Reference]) -> None:
    _, sel, _ = latency_shared
    h = HealthSnapshot.build(overrides={"sin": "down", "fra": "down"}, generation=9)
    # 81.2.69.64/26 measured sin and fra only: the pool's other POPs follow, in order
    assert sel.select("ln", 1, "81.2.69.70", 32, h).pops == ("iad",)


def test_stale_map_falls_back_for_everyone(real_db: GeoDB, asn_db: Path,
                                           tmp_path: Path) -> None:
    path = tmp_path / "rtt.csv"
    path.write_text(MAP1)
    cfg = _config(LATENCY_POOLS.replace('margin = "10%"', 'margin = "10%"\nmax_age = 60'),
                  asn_db, map_path=str(path))
    old = LatencyBook(str(path), _map(MAP1, mtime=1000.0))  # written long ago
    sel = Selector(cfg, real_db, inputs=Inputs(asn_tables(asn_db), {"ln": old}))
    up = HealthSnapshot.all_up()
    plain = Selector(make_config('[pools.n]\nstrategy = "nearest"\n'), real_db)
    for client in ("81.2.69.70", "8.8.4.0", "2a02:2e0::1"):
        qtype = 28 if ":" in client else 1
        assert sel.select("ln", qtype, client, None, up) == \
            plain.select("n", qtype, client, None, up)
    e = sel.explain("ln", 1, "81.2.69.70", None, up)
    assert any("older than max_age 60s: the fallback (nearest) decides" in n
               for n in e.notes)


# ------------------------------------------------------------------------------ spill

spill_shares = st.dictionaries(st.sampled_from(POP_NAMES), st.floats(0.0, 1.0),
                               max_size=4)
spill_loads = st.dictionaries(st.sampled_from(POP_NAMES), st.floats(0.0, 1500.0),
                              min_size=3, max_size=6)


@pytest.fixture(scope="module")
def spill_config(asn_db: Path) -> Config:
    return _config(SPILL_POOLS, asn_db, pops=_spill_pops())


@pytest.fixture(scope="module")
def spill_readers(real_db: GeoDB, asn_db: Path) -> Iterator[tuple[object, object]]:
    with maxminddb.open_database(str(real_db.path)) as reader, \
            maxminddb.open_database(str(asn_db)) as asn_reader:
        yield reader, asn_reader


@pytest.fixture(scope="module")
def spill_selector(spill_config: Config, real_db: GeoDB, asn_db: Path
                   ) -> tuple[Selector, SpillHolder]:
    holder = SpillHolder()
    return Selector(spill_config, real_db,
                    inputs=Inputs(asn_tables(asn_db), {}, holder)), holder


_generation = iter(range(1, 10**9))


def _publish(holder: SpillHolder, cfg: Config, shares: dict[str, float],
             loads: dict[str, float], room: dict[str, float] | None = None) -> Spill:
    """The same shares (and receivers' room) for every spill pool; the reference's
    view of it."""
    holder.state = SpillState(
        next(_generation), {p: dict(shares) for p in cfg.pools},
        {pop: PopLoad(v, 1000.0) for pop, v in loads.items()},
        {name: pool.spill_at for name, pool in cfg.pools.items()},
        {p: {pop: PopLoad(v, 1000.0) for pop, v in room.items()} for p in cfg.pools}
        if room is not None else {})
    return Spill({(p, pop): s for p in cfg.pools for pop, s in shares.items()},
                 {pop: (v, 1000.0) for pop, v in loads.items()},
                 {pop: (v, 1000.0) for pop, v in room.items()} if room is not None else None)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=clients(), overrides=healths, qtype=st.sampled_from([1, 28]),
       pool=st.sampled_from(["sn", "sg", "sw", "sf"]), shares=spill_shares,
       loads=spill_loads, room=st.one_of(st.none(), spill_loads),
       seed=st.integers(0, 2**32))
def test_spill_agrees_and_scopes_hold(
        spill_config: Config, spill_selector: tuple[Selector, SpillHolder],
        spill_readers: tuple[object, object], client: tuple[str, int | None],
        overrides: dict[str, State], qtype: int, pool: str, shares: dict[str, float],
        loads: dict[str, float], room: dict[str, float] | None, seed: int) -> None:
    sel, holder = spill_selector
    spill = _publish(holder, spill_config, shares, loads, room)
    ref = Reference(spill_config, *spill_readers, spill=spill)
    check(sel, ref, spill_config, pool, qtype, client[0], client[1], _health(overrides), seed,
          maximal=not any(v > 0 for v in shares.values()))


def test_spill_moves_a_share_spread_by_headroom(
        spill_config: Config, spill_selector: tuple[Selector, SpillHolder]) -> None:
    """Failover pool: every client's first choice is fra.  fra sheds 30 %: about 30 %
    of 4000 client /24s move, to iad and gru in proportion to their headroom (400 and
    100 below the 0.8 target), none to syd (past capacity)."""
    sel, holder = spill_selector
    _publish(holder, spill_config, {"fra": 0.3},
             {"fra": 950, "iad": 400, "gru": 700, "syd": 1200})
    up = HealthSnapshot.all_up()
    counts: dict[str, int] = {}
    for i in range(4000):
        client = str(ipaddress.IPv4Address((11 << 24) + (i << 8)))
        got = sel.select("sf", 1, client, 24, up)
        assert got.scope == 24
        counts[got.pops[0]] = counts.get(got.pops[0], 0) + 1
        assert sel.select("sf", 1, client[:-1] + "77", 32, up).pops == got.pops  # sticky
    assert set(counts) == {"fra", "iad", "gru"}
    moved = counts["iad"] + counts["gru"]
    assert 0.27 * 4000 < moved < 0.33 * 4000
    assert 0.75 < counts["iad"] / moved < 0.85  # 400 / (400 + 100)
    # a bigger share moves more blocks, never others: the moved ones stay moved
    _publish(holder, spill_config, {"fra": 0.5},
             {"fra": 950, "iad": 400, "gru": 700, "syd": 1200})
    for i in range(0, 4000, 7):
        client = str(ipaddress.IPv4Address((11 << 24) + (i << 8)))
        _publish(holder, spill_config, {"fra": 0.3},
                 {"fra": 950, "iad": 400, "gru": 700, "syd": 1200})
        before = sel.select("sf", 1, client, 24, up).pops
        _publish(holder, spill_config, {"fra": 0.5},
                 {"fra": 950, "iad": 400, "gru": 700, "syd": 1200})
        if before[0] != "fra":
            assert sel.select("sf", 1, client, 24, up).pops == before


def test_no_receiver_with_headroom_means_nothing_moves(
        spill_config: Config, spill_selector: tuple[Selector, SpillHolder]) -> None:
    sel, holder = spill_selector
    _publish(holder, spill_config, {"fra": 0.9},
             {"fra": 1100, "iad": 1001, "gru": 1200, "syd": 1000})
    up = HealthSnapshot.all_up()
    assert {sel.select("sf", 1, f"11.0.{i}.0", 24, up).pops[0] for i in range(200)} == {"fra"}
    e = sel.explain("sf", 1, "11.0.1.0", 24, up)
    assert any("no later POP of this ranking has headroom: nothing moves" in n
               for n in e.notes)


def test_explain_names_load_capacity_and_share(
        spill_config: Config, spill_selector: tuple[Selector, SpillHolder]) -> None:
    sel, holder = spill_selector
    _publish(holder, spill_config, {"fra": 0.25},
             {"fra": 900, "iad": 500, "gru": 700, "syd": 100})
    up = HealthSnapshot.all_up()
    moved = stayed = None
    for i in range(200):
        e = sel.explain("sf", 1, f"11.0.{i}.0", 24, up)
        assert e.selection == sel.select("sf", 1, f"11.0.{i}.0", 24, up)
        text = "\n".join(e.lines())
        # the next two POPs with room take them (syd has more room but comes later)
        assert "spill: fra load 900 of capacity 1000 (90%, spill_at 80%): sheds 25.0% of " \
            "its client blocks to iad 300, gru 100 (headroom)" in text
        if e.selection.pops[0] != "fra":
            moved = text
        else:
            stayed = text
    assert moved is not None and "< 0.250: moved to" in moved
    assert stayed is not None and ">= 0.250: stays on fra" in stayed
