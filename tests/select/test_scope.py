"""ECS scope soundness: every address inside client/scope gets the same Selection.key.

Checked with cold selectors (no cache can mask a wrong scope), on the real GeoLite2
database, with ``nets`` that cut GeoIP networks in awkward places, random health,
random source prefixes, and scope widening on and off.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import Config
from geodns.geo import GeoDB
from geodns.health.snapshot import HealthKey, HealthSnapshot, State
from geodns.select.selector import Selector
from tests.select.conftest import make_config

POOLS = """
[pools.geo]
strategy = "geo"
continent.EU = ["fra", "iad"]
continent.NA = ["iad", "fra"]
continent.AS = ["sin", "syd"]
continent.OC = ["syd", "sin"]
country.GB = ["iad", "fra"]
country.BR = ["gru", "iad"]
subdivision."GB-ENG" = ["fra", "sin"]
subdivision."US-CA" = ["sfo", "iad"]
nets = { "81.2.69.0/25" = ["sin"], "81.2.69.64/26" = ["syd"], "81.2.68.128/28" = ["gru"], \
"8.8.0.0/17" = ["fra"], "8.8.8.0/24" = ["sin"], "1.0.0.0/8" = ["gru"], \
"2a02:2e0:3fe::/47" = ["syd"], "2001:4860:4860::/48" = ["gru"] }
default = ["iad", "fra"]

[pools.near]
strategy = "nearest"
default = ["fra"]

[pools.near2]
strategy = "nearest"
pops = ["iad", "fra", "sin"]
answers = 2
all_down = "nodata"

[pools.w]
strategy = "weighted"
pops = ["iad", "fra", "sin"]
weights = { iad = 10, fra = 3 }
"""

POP_NAMES = ["iad", "fra", "sin", "gru", "syd", "sfo"]
CONFIG: Config = make_config(POOLS)
INTERESTING_V4 = [
    "81.2.69.0/24", "81.2.68.0/22", "8.8.0.0/16", "1.0.0.0/8", "1.1.1.0/24", "2.0.0.0/8",
    "93.184.216.0/24", "0.0.0.0/0",
]
INTERESTING_V6 = ["2a02:2e0::/32", "2001:4860::/32", "2000::/3"]

states = st.sampled_from(["up", "up", "up", "down", "drain"])
healths = st.dictionaries(st.sampled_from(POP_NAMES), states, max_size=4)


@st.composite
def clients(draw: st.DrawFn) -> tuple[str, int | None]:
    """An address, biased toward networks where nets and GeoIP boundaries interact."""
    if draw(st.booleans()):
        net = ipaddress.ip_network(draw(st.sampled_from(INTERESTING_V4)))
    else:
        net = ipaddress.ip_network(draw(st.sampled_from(INTERESTING_V6)))
    offset = draw(st.integers(0, net.num_addresses - 1))
    addr = net[offset]
    bits = 32 if addr.version == 4 else 128
    source = draw(st.one_of(st.none(), st.integers(1, bits)))
    return str(addr), source


def _keys(overrides: dict[str, State]) -> dict[HealthKey, State]:
    return {k: v for k, v in overrides.items()}


def _samples(addr: str, scope: int, rnd: random.Random, config: Config) -> list[str]:
    """Addresses of addr/scope: its ends, random ones, and the starts and ends of every
    nets entry inside it (where a wrong scope would show)."""
    block = ipaddress.ip_network(f"{addr}/{scope}", strict=False)
    picks = {block[0], block[-1]}
    for _ in range(12):
        picks.add(block[rnd.randrange(block.num_addresses)])
    for pool in config.pools.values():
        for net, _ in pool.nets:
            if net.version == block.version and net.overlaps(block):
                inner = net if net.subnet_of(block) else block  # type: ignore[arg-type]
                picks.update({inner[0], inner[-1]})
    return [str(p) for p in picks]


def _check(db: GeoDB, pool: str, qtype: int, client: str, source: int | None,
           overrides: dict[str, State], budget: int, seed: int) -> None:
    health = HealthSnapshot.build(overrides=_keys(overrides), generation=3)
    sel = Selector(CONFIG, db, widen_budget=budget, lazy_widen=False).select(
        pool, qtype, client, source, health)
    addr = ipaddress.ip_address(client)
    if source is not None:  # the selection is for the masked address
        addr = ipaddress.ip_network(f"{client}/{source}", strict=False).network_address
    bits = 32 if addr.version == 4 else 128
    assert 0 <= sel.scope <= bits
    rnd = random.Random(seed)
    for other in _samples(str(addr), sel.scope, rnd, CONFIG):
        cold = Selector(CONFIG, db, widen_budget=0)
        got = cold.select(pool, qtype, other, None, health)
        assert got.key == sel.key, (pool, client, source, sel.scope, other, got, sel)


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(client=clients(), overrides=healths, pool=st.sampled_from(["geo", "near", "near2", "w"]),
       qtype=st.sampled_from([1, 28]), seed=st.integers(0, 2**32))
def test_scope_is_sound_without_widening(real_db: GeoDB, client: tuple[str, int | None],
                                         overrides: dict[str, State], pool: str, qtype: int,
                                         seed: int) -> None:
    _check(real_db, pool, qtype, client[0], client[1], overrides, 0, seed)


@SETTINGS
@given(client=clients(), overrides=healths, pool=st.sampled_from(["geo", "near", "near2"]),
       qtype=st.sampled_from([1, 28]), seed=st.integers(0, 2**32))
def test_scope_is_sound_with_widening(real_db: GeoDB, client: tuple[str, int | None],
                                      overrides: dict[str, State], pool: str, qtype: int,
                                      seed: int) -> None:
    _check(real_db, pool, qtype, client[0], client[1], overrides, 24, seed)


@st.composite
def nets_tables(draw: st.DrawFn) -> dict[str, list[str]]:
    """Random CIDRs inside 81.2.64.0/20 (several GeoLite2 networks live there)."""
    out: dict[str, list[str]] = {}
    for _ in range(draw(st.integers(1, 8))):
        plen = draw(st.integers(18, 30))
        base = int(ipaddress.IPv4Address("81.2.64.0")) + draw(st.integers(0, 4095))
        net = ipaddress.ip_network(f"{ipaddress.IPv4Address(base)}/{plen}", strict=False)
        out[str(net)] = draw(st.lists(st.sampled_from(POP_NAMES[:5]), min_size=1, max_size=3,
                                      unique=True))
    return out


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nets=nets_tables(), offset=st.integers(0, 8191), overrides=healths,
       budget=st.sampled_from([0, 48]), seed=st.integers(0, 2**32))
def test_random_nets_never_leak_across_scope(real_db: GeoDB, nets: dict[str, list[str]],
                                             offset: int, overrides: dict[str, State],
                                             budget: int, seed: int) -> None:
    table = ", ".join(f'"{k}" = {v!r}'.replace("'", '"') for k, v in nets.items())
    cfg = make_config(f"""
        [pools.g]
        strategy = "geo"
        continent.EU = ["fra", "iad"]
        subdivision."GB-ENG" = ["sin", "fra"]
        nets = {{ {table} }}
        default = ["iad"]
    """)
    health = HealthSnapshot.build(overrides=_keys(overrides), generation=1)
    client = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("81.2.60.0")) + offset))
    sel = Selector(cfg, real_db, widen_budget=budget, lazy_widen=False).select(
        "g", 1, client, None, health)
    for other in _samples(client, sel.scope, random.Random(seed), cfg):
        got = Selector(cfg, real_db, widen_budget=0).select("g", 1, other, None, health)
        assert got.key == sel.key, (client, sel.scope, other, nets)


def test_scope_prefix_is_relative_to_the_family(real_db: GeoDB) -> None:
    """IPv4 scopes are IPv4 prefix lengths (<= 32), not offsets in the IPv6 tree."""
    s = Selector(CONFIG, real_db, widen_budget=0)
    up = HealthSnapshot.all_up()
    for c in ("81.2.69.0", "8.8.8.8", "1.1.1.1", "93.184.216.34"):
        assert 0 < s.select("near", 1, c, 24, up).scope <= 32
    assert s.select("near", 28, "2a02:2e0::1", 56, up).scope == 29  # 2a02:2e0::/29


def test_lazy_widening_keeps_blocks_sound(real_db: GeoDB) -> None:
    """The default (lazy) selector: first client narrow, a second client in the block
    widens it; every Selection returned along the way is sound."""
    up = HealthSnapshot.all_up()
    s = Selector(CONFIG, real_db)
    rnd = random.Random(11)
    for _ in range(60):
        base = rnd.getrandbits(24) << 8
        first = s.select("near", 1, str(ipaddress.IPv4Address(base)), 24, up)
        again = s.select("near", 1, str(ipaddress.IPv4Address(base + 256)), 24, up)
        assert again.key == first.key or first.scope == 24
        for sel, addr in ((first, base), (again, base + 256)):
            for other in _samples(str(ipaddress.IPv4Address(addr)), sel.scope, rnd, CONFIG):
                cold = Selector(CONFIG, real_db, widen_budget=0)
                assert cold.select("near", 1, other, None, up).key == sel.key
