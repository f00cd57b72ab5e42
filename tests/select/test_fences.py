"""The fence property, proven on random configs against the reference selection.

Hypothesis draws whole configs (pools of every strategy with geo rules, ``nets``,
``asn`` rules, latency maps, spillover and experiment arms; one to three fences by
country, continent, subdivision, nets and AS, for every pool or some), random health
(forced states of POPs and addresses), random spill shares and loads, and random
clients from the real GeoLite2 database (every network of it is a candidate, IPv4,
IPv6 and the IPv4 space inside IPv6) plus the edges of the fences' networks.  For
every client it asserts:

* no fenced client ever gets a POP (or an address of a POP) that one of its fences
  does not allow, whatever health, overrides, spill or all_down say;
* the answer, its fence label and its arm are the reference's (tests/select/reference.py);
* every address inside the returned ECS scope is fenced alike, in the same arm, and
  answered alike; the scope of a pool with arms is never wider than the /24 (/56);
* and the scope is maximal where no hash decides (the sibling block differs).

``GEODNS_FENCE_EXAMPLES`` raises the number of configs (default 20) for long runs.
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import Config, parse_config
from geodns.geoip.asn_tables import asn_tables
from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthKey, HealthSnapshot, State
from geodns.select.inputs import Inputs
from geodns.select.latency import LatencyBook
from geodns.select.selector import Selector
from geodns.select.spill import PopLoad, SpillHolder, SpillState
from geodns.traffic.latency_map import parse_latency_map
from tests.select.conftest import POPS_TOML
from tests.select.mmdb_writer import MAXMIND_ALIASES, write_asn_mmdb
from tests.select.reference import Latency, Reference, Spill
from tests.select.test_scope import POP_NAMES, _masked
from tests.select.test_steering_scope import ASN_ROWS, MAP1

EXAMPLES = int(os.environ.get("GEODNS_FENCE_EXAMPLES", "20"))
COUNTRIES = ["US", "GB", "DE", "FR", "JP", "BR", "CN", "AU", "CA", "IN", "NL", "SG"]
CONTINENTS = ["NA", "EU", "AS", "SA", "OC", "AF"]
SUBDIVISIONS = ["US-CA", "US-NY", "US-TX", "GB-ENG", "GB-SCT", "DE-BE", "DE-HE", "AU-NSW",
                "CA-ON", "FR-IDF"]
ASNS = sorted({n for _, n, _ in ASN_ROWS})
STRATEGIES = ["geo", "nearest", "failover", "weighted", "all", "latency"]
ADDRESSES: dict[str, list[str]] = {}
for block in POPS_TOML.split("[pops.")[1:]:
    name = block.split("]", 1)[0]
    ADDRESSES[name] = [a for line in block.splitlines() if line.startswith("ipv")
                       for a in line.split("[", 1)[1].rstrip("]").replace('"', "").split(", ")]


# ------------------------------------------------------------------------------ TOML


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"


def _section(head: str, body: dict[str, Any]) -> str:
    return f"[{head}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in body.items()) + "\n"


# ------------------------------------------------------------------------------ strategies

pop_lists = st.lists(st.sampled_from(POP_NAMES), min_size=1, max_size=4, unique=True)


@st.composite
def v4_nets(draw: st.DrawFn, tables: Any) -> str:
    """A CIDR around a network of the real database (so it cuts real networks)."""
    t = tables.v4
    i = draw(st.integers(0, len(t) - 1))
    plen = draw(st.integers(8, 30))
    base = int(t.hi[i]) + draw(st.integers(0, 255))
    return str(ipaddress.ip_network(f"{ipaddress.IPv4Address(base % 2**32)}/{plen}",
                                    strict=False))


@st.composite
def v6_nets(draw: st.DrawFn, tables: Any) -> str:
    """A CIDR in IPv6 space of the database, or in 6to4 (IPv4 space inside IPv6)."""
    if draw(st.booleans()):
        v4 = ipaddress.ip_network(draw(v4_nets(tables)))
        plen = draw(st.integers(16 + max(4, v4.prefixlen - 8), 16 + v4.prefixlen))
        addr = (0x2002 << 112) | (int(v4.network_address) << 80)
        return str(ipaddress.ip_network(f"{ipaddress.IPv6Address(addr)}/{plen}",
                                        strict=False))
    t = tables.v6
    i = draw(st.integers(0, len(t) - 1))
    plen = draw(st.integers(20, 64))
    addr = (int(t.hi[i]) << 64) | int(t.lo[i])
    return str(ipaddress.ip_network(f"{ipaddress.IPv6Address(addr)}/{plen}", strict=False))


@st.composite
def pools(draw: st.DrawFn, tables: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for n in range(draw(st.integers(1, 3))):
        strategy = draw(st.sampled_from(STRATEGIES))
        body: dict[str, Any] = {"strategy": strategy}
        kind = strategy
        if strategy == "latency":
            kind = draw(st.sampled_from(["nearest", "geo", "weighted", "failover"]))
            body.update(map="MAP", fallback=kind, margin=draw(st.sampled_from(["10%", 5])))
        if kind in ("failover", "weighted", "all") or (kind == "nearest" and draw(
                st.booleans())):
            body["pops"] = draw(pop_lists)
        if kind == "weighted":
            body["weights"] = {p: draw(st.sampled_from([0, 1, 3, 10])) for p in body["pops"]}
            if not any(body["weights"].values()):
                body["weights"][body["pops"][0]] = 5
        if kind == "nearest" and draw(st.booleans()):
            cands = body.get("pops", POP_NAMES)
            body["default"] = draw(st.lists(st.sampled_from(cands), min_size=1, max_size=2,
                                            unique=True))
        if kind == "geo":
            for key, codes in (("continent", CONTINENTS), ("country", COUNTRIES),
                               ("subdivision", SUBDIVISIONS)):
                for code in draw(st.lists(st.sampled_from(codes), max_size=3, unique=True)):
                    body[f'{key}."{code}"'] = draw(pop_lists)
            nets = {}
            for _ in range(draw(st.integers(0, 3))):
                nets[draw(st.one_of(v4_nets(tables), v6_nets(tables)))] = draw(pop_lists)
            if nets:
                body["nets"] = nets
            for number in draw(st.lists(st.sampled_from(ASNS), max_size=2, unique=True)):
                body[f"asn.{number}"] = draw(pop_lists)
            body["default"] = draw(pop_lists)
        if draw(st.booleans()):
            body["answers"] = draw(st.integers(1, 3))
        body["all_down"] = draw(st.sampled_from(["fail_open", "nodata", "servfail"]))
        if strategy != "all" and draw(st.booleans()):
            body["spill"] = True
        out[f"p{n}"] = body
    return out


@st.composite
def fences(draw: st.DrawFn, tables: Any, pool_names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for n in range(draw(st.integers(1, 3))):
        body: dict[str, Any] = {}
        for key, codes in (("countries", COUNTRIES), ("continents", CONTINENTS),
                           ("subdivisions", SUBDIVISIONS)):
            picked = draw(st.lists(st.sampled_from(codes), max_size=2, unique=True))
            if picked:
                body[key] = picked
        nets = draw(st.lists(st.one_of(v4_nets(tables), v6_nets(tables)), max_size=3,
                             unique=True))
        if nets:
            body["nets"] = nets
        numbers = draw(st.lists(st.sampled_from(ASNS), max_size=2, unique=True))
        if numbers or not body:
            body["asn"] = numbers or [ASNS[0]]
        body["pops"] = draw(pop_lists)
        body["on_empty"] = draw(st.sampled_from(["servfail", "nodata"]))
        if draw(st.booleans()):
            body["pools"] = draw(st.lists(st.sampled_from(pool_names), min_size=1,
                                          unique=True))
        out[f"f{n}"] = body
    return out


def _candidates(body: dict[str, Any]) -> list[str]:
    """The POPs a generated pool can answer with (its referenced POPs)."""
    seen: dict[str, None] = {}
    for key, value in body.items():
        if key in ("pops", "default") or key.startswith(("continent.", "country.",
                                                         "subdivision.", "asn.")):
            for p in value:
                seen.setdefault(p)
        if key == "nets":
            for lst in value.values():
                for p in lst:
                    seen.setdefault(p)
    if body["strategy"] in ("nearest", "latency") and "pops" not in body and (
            body.get("fallback", "nearest") == "nearest"):
        for p in POP_NAMES:
            seen.setdefault(p)
    return list(seen)


@st.composite
def configs(draw: st.DrawFn, tables: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pool_bodies = draw(pools(tables))
    fence_bodies = draw(fences(tables, list(pool_bodies)))

    def covers(fence: dict[str, Any], pool: str) -> bool:
        return "pools" not in fence or pool in fence["pools"]

    armed = [n for n in pool_bodies if draw(st.booleans())]
    for name in armed:
        body = pool_bodies[name]
        # an arm may hand clients to a pool without arms that every fence of this one covers
        targets = [p for p in pool_bodies if p not in armed and all(
            covers(f, p) for f in fence_bodies.values() if covers(f, name))]
        arms: dict[str, Any] = {}
        for i in range(draw(st.integers(1, 3))):
            weight = draw(st.sampled_from([0, 1, 5, 10, 50]))
            how = draw(st.sampled_from(["plain", "pops", "pool"]))
            if how == "pops":
                arms[f"a{i}"] = {"weight": weight, "pops": draw(st.lists(
                    st.sampled_from(_candidates(body)), min_size=1, max_size=3, unique=True))}
            elif how == "pool" and targets:
                arms[f"a{i}"] = {"weight": weight, "pool": draw(st.sampled_from(targets))}
            else:
                arms[f"a{i}"] = weight
        if not any((a if isinstance(a, int) else a["weight"]) > 0 for a in arms.values()):
            first = next(iter(arms))
            arms[first] = 1 if isinstance(arms[first], int) else {**arms[first], "weight": 1}
        body["arms"] = arms
        if draw(st.booleans()):
            body["salt"] = draw(st.sampled_from(["exp1", "exp2", "2024-06"]))
    return pool_bodies, fence_bodies


states = st.sampled_from(["up", "up", "up", "down", "drain"])


@st.composite
def healths(draw: st.DrawFn) -> dict[HealthKey, State]:
    out: dict[HealthKey, State] = {}
    for pop in draw(st.lists(st.sampled_from(POP_NAMES), max_size=4, unique=True)):
        out[pop] = draw(states)
    for pop in draw(st.lists(st.sampled_from(POP_NAMES), max_size=2, unique=True)):
        out[(pop, draw(st.sampled_from(ADDRESSES[pop])))] = draw(states)
    return out


@st.composite
def clients(draw: st.DrawFn, tables: Any, fence_bodies: dict[str, Any]
            ) -> tuple[str, int | None]:
    """An address of a random network of the real database, or at a fence net's edge."""
    edges = [x for f in fence_bodies.values() for net in f.get("nets", ())
             for x in (ipaddress.ip_network(net)[0], ipaddress.ip_network(net)[-1])]
    how = draw(st.sampled_from(["v4", "v4", "v6", "edge"] if edges else ["v4", "v4", "v6"]))
    if how == "edge":
        ip = draw(st.sampled_from(edges))
        bits = ip.max_prefixlen
        value = (int(ip) + draw(st.sampled_from([-1, 0, 0, 1]))) % (1 << bits)
        addr: Any = ipaddress.ip_address(value) if bits == 32 else ipaddress.IPv6Address(value)
    else:
        t = tables.v4 if how == "v4" else tables.v6
        i = draw(st.integers(0, len(t) - 1))
        bits = t.bits
        start = int(t.hi[i]) if bits == 32 else (int(t.hi[i]) << 64) | int(t.lo[i])
        size = 1 << (bits - int(t.depth[i]))
        value = start + draw(st.integers(0, size - 1))
        addr = ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value)
    bits = addr.max_prefixlen
    source = draw(st.one_of(st.none(), st.sampled_from([24, 56, 48, 32, 20]).filter(
        lambda s: s <= bits), st.integers(1, bits)))
    return str(addr), source


# ------------------------------------------------------------------------------ fixtures


@dataclass
class World:
    reader: Any
    asn_reader: Any
    asn_db: Path
    map_path: Path
    tables: Any
    geo: GeoDB


@pytest.fixture(scope="module")
def world(real_db: GeoDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("fences")
    asn_db = write_asn_mmdb(base / "asn.mmdb", ASN_ROWS, aliases=MAXMIND_ALIASES)
    map_path = base / "rtt.csv"
    map_path.write_text(MAP1)
    with maxminddb.open_database(str(real_db.path)) as reader, \
            maxminddb.open_database(str(asn_db)) as asn_reader:
        yield World(reader, asn_reader, asn_db, map_path, real_db.tables(), real_db)


def _spill_pops() -> str:
    out = ['[loads.edge]\ntype = "file"\npath = "/dev/null"\n']
    for block in POPS_TOML.strip().split("\n\n"):
        out.append(block + '\ncapacity = 1000\nload = "edge"')
    return "\n\n".join(out) + "\n\n"


def build(world: World, pool_bodies: dict[str, Any], fence_bodies: dict[str, Any]) -> Config:
    text = f'[geoip]\nasn_database = "{world.asn_db}"\n\n' + _spill_pops()
    for name, body in pool_bodies.items():
        text += _section(f"pools.{name}", body).replace('"MAP"', f'"{world.map_path}"')
    for name, body in fence_bodies.items():
        text += _section(f"fences.{name}", body)
    return parse_config(text, "/test/geodns.toml")


# ------------------------------------------------------------------------------ the check


def _samples(addr: Any, scope: int, rnd: random.Random, config: Config) -> list[str]:
    """Addresses of addr/scope: its ends, random ones, and the ends of every fence or
    pool network inside it (where a scope that spans a fence boundary would show)."""
    block = ipaddress.ip_network(f"{addr}/{scope}", strict=False)
    picks = {block[0], block[-1]}
    for _ in range(10):
        picks.add(block[rnd.randrange(block.num_addresses)])
    nets = [n for f in config.fences.values() for n in f.nets]
    nets += [n for p in config.pools.values() for n, _ in p.nets]
    for net in nets:
        if net.version == block.version and net.overlaps(block):
            inner = net if net.subnet_of(block) else block  # type: ignore[arg-type]
            picks.update({inner[0], inner[-1]})
    return [str(p) for p in picks]


def _allowed_everywhere(config: Config, ref: Reference, pool: str, ip: Any
                        ) -> tuple[list[str], set[str]]:
    """The fences of ``pool`` holding ``ip`` and the POPs all of them allow."""
    names = ref.fences_of(ip)
    mine = [f for n, f in config.fences.items() if n in names and f.applies_to(pool)]
    allowed = set(config.pops)
    for f in mine:
        allowed &= set(f.pops)
    return [f.name for f in mine], allowed


def check(sel: Selector, ref: Reference, config: Config, pool: str, qtype: int, client: str,
          source: int | None, health: HealthSnapshot, rnd: random.Random) -> None:
    addr = _masked(client, source)
    if str(addr) != client and ipaddress.ip_address(client).version != addr.version:
        client, source = str(addr), None if source is None else max(0, source - 96)
    got = sel.select(pool, qtype, client, source, health)
    if source == 0:
        assert got.scope == 0
        return
    bits = addr.max_prefixlen
    assert 0 <= got.scope <= bits
    # 1. the fence holds: no POP, and no address of a POP, outside any of its fences
    fenced, allowed = _allowed_everywhere(config, ref, pool, addr)
    if fenced:
        assert set(got.pops) <= allowed, ("fence broken", pool, client, fenced, got)
        owners = {a: p for p, pop in config.pops.items() for a in (*pop.ipv4, *pop.ipv6)}
        assert {owners[a] for a in got.addresses} <= allowed, ("fence broken", got)
        if got.kind == "cname":
            assert got.pops and got.pops[0] in allowed
    # 2. the reference agrees: answer, fence label and arm
    want = ref.labelled(pool, qtype, str(addr), health)
    assert (got.key, got.fence, got.arm) == want[:3], (pool, client, source, got, want)
    p = config.pools[pool]
    arm = ref.arm(p, addr)
    if arm is None or arm.pool is None:  # (another pool's answer: its fences' label)
        assert got.fence == ("+".join(fenced) if fenced else None), (got.fence, fenced)
    # 3. everyone inside the scope is fenced alike, in the same arm, answered alike
    for other in _samples(addr, got.scope, rnd, config):
        there = ref.labelled(pool, qtype, other, health)
        assert there[:3] == want[:3], ("scope too wide", pool, client, source, got.scope,
                                       other, there, want)
    if p.arms:
        assert got.scope >= (24 if bits == 32 else 56), ("arm scope", got.scope)
    # 4. maximal where no hash decides: the sibling half holds a different answer (a
    # pool that sheds blocks anywhere may split a sibling by the spill hash: not checked)
    shedding = p.spill and ref.spill is not None and any(
        v > 0 for v in ref.spill.shares.values())
    if shedding or got.scope == 0 or p.arms:
        return
    if ref.kind(p) == "weighted" and ref.latency_ranking(p, addr) is None:
        return
    if ref.alias_depth(addr) is not None:
        return  # IPv4 inside IPv6: the scope follows the IPv4 map (test_scope covers it)
    wider = ipaddress.ip_network(f"{addr}/{got.scope - 1}", strict=False)
    own = ipaddress.ip_network(f"{addr}/{got.scope}", strict=False)
    sib_start = int(wider.network_address) if int(own.network_address) != int(
        wider.network_address) else int(own.broadcast_address) + 1
    cls = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
    seen = 0
    for x in ref.segments(p, sib_start, sib_start + own.num_addresses, addr.version, 400):
        seen += 1
        if ref.labelled(pool, qtype, str(cls(x)), health)[:2] != want[:2]:
            return
    if seen >= 400:
        return
    raise AssertionError(f"scope not maximal: {pool} {client}/{source} scope {got.scope}")


def _spill(config: Config, shares: dict[str, float], loads: dict[str, float]
           ) -> tuple[SpillState, Spill]:
    spill_pools = [n for n, p in config.pools.items() if p.spill]
    state = SpillState(1, {p: dict(shares) for p in spill_pools},
                       {pop: PopLoad(v, 1000.0) for pop, v in loads.items()},
                       {n: config.pools[n].spill_at for n in spill_pools})
    return state, Spill({(p, pop): s for p in spill_pools for pop, s in shares.items()},
                        {pop: (v, 1000.0) for pop, v in loads.items()})


@st.composite
def scenarios(draw: st.DrawFn, tables: Any) -> tuple[Any, ...]:
    pool_bodies, fence_bodies = draw(configs(tables))
    cases = draw(st.lists(st.tuples(clients(tables, fence_bodies), healths(),
                                    st.sampled_from(list(pool_bodies)),
                                    st.sampled_from([1, 28])), min_size=20, max_size=30))
    shares = draw(st.dictionaries(st.sampled_from(POP_NAMES), st.floats(0.0, 1.0),
                                  min_size=1, max_size=5))
    loads = draw(st.dictionaries(st.sampled_from(POP_NAMES), st.floats(0.0, 1200.0),
                                 min_size=4, max_size=6))
    return pool_bodies, fence_bodies, cases, shares, loads, draw(st.integers(0, 2**32))


@pytest.fixture(scope="module")
def tables(world: World) -> Any:
    return world.tables


@pytest.mark.timeout(60 + 15 * EXAMPLES)
def test_random_configs_never_break_a_fence(world: World) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenario=scenarios(world.tables))
    def run(scenario: tuple[Any, ...]) -> None:
        pool_bodies, fence_bodies, cases, shares, loads, seed = scenario
        config = build(world, pool_bodies, fence_bodies)
        lmap = parse_latency_map(MAP1, str(world.map_path), frozenset(POP_NAMES))
        books = {n: LatencyBook(str(world.map_path), lmap) for n, p in config.pools.items()
                 if p.strategy == "latency"}
        state, spill = _spill(config, shares, loads)
        sel = Selector(config, world.geo, inputs=Inputs(asn_tables(world.asn_db), books,
                                                        SpillHolder(state)))
        ref = Reference(config, world.reader, world.asn_reader,
                        latency={n: Latency(lmap) for n in books}, spill=spill)
        rnd = random.Random(seed)
        for (client, source), overrides, pool, qtype in cases:
            health = HealthSnapshot.build(overrides=overrides, generation=7)
            check(sel, ref, config, pool, qtype, client, source, health, rnd)

    run()
