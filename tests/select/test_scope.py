"""Compiled maps against a straightforward reference selection (tests/select/reference.py):

* the compiled answer is the reference answer, for random IPv4 and IPv6 clients (IPv4
  inside IPv6 too), random health, ``nets`` that cut GeoIP networks in awkward places;
* the ECS scope is sound: every address inside client/scope gets the same answer;
* and maximal: the block one bit wider holds an address that gets another answer.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator

import maxminddb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import Config
from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthKey, HealthSnapshot, State
from geodns.select.selector import Selector
from tests.select.conftest import make_config
from tests.select.reference import Reference

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
INTERESTING_V6 = ["2a02:2e0::/32", "2001:4860::/32", "2000::/3", "2002:5102:4500::/40"]

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


@pytest.fixture(scope="module")
def shared(real_db: GeoDB) -> Iterator[tuple[Selector, Reference]]:
    with maxminddb.open_database(str(real_db.path)) as reader:
        yield Selector(CONFIG, real_db), Reference(CONFIG, reader)


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


def _masked(client: str, source: int | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(client)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # a text client ::ffff:a.b.c.d is IPv4 (a dual-stack socket's source address)
        ip = ip.ipv4_mapped
        source = None if source is None else max(0, source - 96)
    if source is None:
        return ip
    return ipaddress.ip_network(f"{ip}/{source}", strict=False).network_address


def check(sel_: Selector, ref: Reference, config: Config, pool: str, qtype: int, client: str,
          source: int | None, health: HealthSnapshot, seed: int, maximal: bool = True) -> None:
    addr = _masked(client, source)
    if str(addr) != client and ipaddress.ip_address(client).version != addr.version:
        client, source = str(addr), None if source is None else max(0, source - 96)
    sel = sel_.select(pool, qtype, client, source, health)
    if source == 0:  # the client opted out of ECS: undecided by location, scope 0
        assert sel.scope == 0
        return
    bits = 32 if addr.version == 4 else 128
    assert 0 <= sel.scope <= bits
    assert sel.key == ref.key(pool, qtype, str(addr), health), (pool, client, source)
    rnd = random.Random(seed)
    for other in _samples(str(addr), sel.scope, rnd, config):
        assert ref.key(pool, qtype, other, health) == sel.key, (
            "scope too wide", pool, client, source, sel.scope, other)
    if ref.spilling(pool, qtype, str(addr), health):
        # a spilled interval: the answer hangs on the hash of the client's /24 (/56)
        assert sel.scope >= ref.hash_unit(config.pools[pool], addr), (pool, client, sel.scope)
        return  # and neighbours that hash alike may answer alike: no maximality
    p = config.pools[pool]
    if not maximal or sel.scope == 0 or (ref.kind(p) == "weighted"
                                         and ref.latency_ranking(p, addr) is None):
        return  # weighted pools: the scope is the hash unit, by definition
    # One bit wider: the sibling half must hold some client with another answer.
    wider = ipaddress.ip_network(f"{addr}/{sel.scope - 1}", strict=False)
    own = ipaddress.ip_network(f"{addr}/{sel.scope}", strict=False)
    sib_start = int(wider.network_address) if int(own.network_address) != int(
        wider.network_address) else int(own.broadcast_address) + 1
    sib_end = sib_start + own.num_addresses
    fam = addr.version
    cls = ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
    seen = 0
    for x in ref.segments(config.pools[pool], sib_start, sib_end, fam, limit=400):
        seen += 1
        if ref.key(pool, qtype, str(cls(x)), health) != sel.key:
            return
    if seen >= 400:
        return  # too many networks to walk: inconclusive, not a failure
    raise AssertionError(f"scope not maximal: {pool} {client}/{source} scope {sel.scope}: "
                         f"the sibling {cls(sib_start)}/{sel.scope} answers alike")


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(client=clients(), overrides=healths, pool=st.sampled_from(["geo", "near", "near2", "w"]),
       qtype=st.sampled_from([1, 28]), seed=st.integers(0, 2**32))
def test_compiled_agrees_with_reference_and_scope_is_exact(
        shared: tuple[Selector, Reference], client: tuple[str, int | None],
        overrides: dict[str, State], pool: str, qtype: int, seed: int) -> None:
    health = HealthSnapshot.build(overrides=_keys(overrides), generation=3)
    check(shared[0], shared[1], CONFIG, pool, qtype, client[0], client[1], health, seed)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(v4=st.booleans(), raw=st.integers(0, 2**128 - 1), source=st.sampled_from([None, 24, 56]),
       pool=st.sampled_from(["geo", "near", "w"]), seed=st.integers(0, 2**32))
def test_uniform_random_clients(shared: tuple[Selector, Reference], v4: bool, raw: int,
                                source: int | None, pool: str, seed: int) -> None:
    """Clients drawn uniformly over the whole address space of each family."""
    if v4:
        client = str(ipaddress.IPv4Address(raw >> 96))
        src = 24 if source is not None else None
    else:
        client = str(ipaddress.IPv6Address(raw))
        src = source if source != 24 else 48
    check(shared[0], shared[1], CONFIG, pool, 1, client, src, HealthSnapshot.all_up(), seed)


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


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nets=nets_tables(), offset=st.integers(0, 8191), overrides=healths,
       seed=st.integers(0, 2**32))
def test_random_nets_never_leak_across_scope(real_db: GeoDB, nets: dict[str, list[str]],
                                             offset: int, overrides: dict[str, State],
                                             seed: int) -> None:
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
    with maxminddb.open_database(str(real_db.path)) as reader:
        check(Selector(cfg, real_db), Reference(cfg, reader), cfg, "g", 1, client, None, health,
              seed)


def test_scope_prefix_is_relative_to_the_family(real_db: GeoDB) -> None:
    """IPv4 scopes are IPv4 prefix lengths (<= 32), not offsets in the IPv6 tree."""
    s = Selector(CONFIG, real_db)
    up = HealthSnapshot.all_up()
    for c in ("81.2.69.0", "8.8.8.8", "1.1.1.1", "93.184.216.34"):
        assert 0 < s.select("near", 1, c, 24, up).scope <= 32
    assert s.select("near", 28, "2a02:2e0::1", 56, up).scope <= 29  # 2a02:2e0::/29 or wider


def test_ipv4_inside_ipv6_is_answered_like_ipv4(real_db: GeoDB) -> None:
    """::ffff:a.b.c.d and 6to4 2002:AABB:CCDD:: clients get the IPv4 client's answer, with
    the IPv4 scope shifted into the IPv6 address."""
    s = Selector(CONFIG, real_db)
    up = HealthSnapshot.all_up()
    v4 = s.select("near", 1, "81.2.69.0", 24, up)
    mapped = s.select("near", 1, ipaddress.IPv6Address("::ffff:5102:4500").packed, 120, up)
    assert mapped.key == v4.key and mapped.scope == 96 + v4.scope
    sixtofour = s.select("near", 1, ipaddress.IPv6Address("2002:5102:4500::").packed, 40, up)
    assert sixtofour.key == v4.key and sixtofour.scope == 16 + v4.scope
