"""POP selection: (pool, qtype, client, health) -> answer and ECS scope.

Every client-dependent pool is compiled when the config or the GeoIP database is
loaded (:mod:`geodns.select.compile`): a prefix map from merged networks to a
health-independent ranking.  Per query (:meth:`Selector.decide`) that is one bisect
in the map resolved for the current health snapshot, whose merged intervals also give
the ECS scope: the widest block around the client that gets the same answer.
``weighted`` pools hash the client's /24 (/56); ``failover`` and ``all`` answer
everyone alike (scope 0).  ``asn.NNNN`` rules and ``latency`` maps are painted over
the compiled maps; ``spill`` pools hash the client's /24 (/56) only where an answer's
first POP sheds blocks (:mod:`geodns.select.spill`).

``[fences.NAME]`` are compiled into the maps of the pools they cover
(:mod:`geodns.select.fences`); pools with experiment ``arms`` answer through one view
of their plan per arm, picked by a salted hash of the client's /24 (/56).

Build a new Selector when the config or the GeoIP database changes: compiling is the
expensive part, and it happens before the new generation answers anything.  The
steering data it reads (ASN networks, latency maps, the spill state) comes in as
:class:`~geodns.select.inputs.Inputs`, or is read from the files the config names.
"""

from __future__ import annotations

import logging
import math
from typing import Final

from geodns.config import Config
from geodns.geoip.db import GeoDB
from geodns.geoip.location import Location
from geodns.geoip.tables import GeoTables
from geodns.health.snapshot import HealthSnapshot
from geodns.select.addr import bits_of, format_addr, format_net, mask, parse_client
from geodns.select.compile import NEAREST_RULE, distances_km
from geodns.select.explain import AddressInfo, CandidateInfo, Explanation
from geodns.select.fence_check import empty_cuts
from geodns.select.fences import FenceIndex
from geodns.select.inputs import Inputs, load_inputs
from geodns.select.maps import Alias, Entry, Hashed, Ranking, RankingMap
from geodns.select.plan import FAM_CNAME, V4_IN_V6, Answer, Plan
from geodns.select.spill import SPILL_UNIT, SpillAnswer, spill_point
from geodns.select.strategies import Latency, strategy_of
from geodns.select.types import Selection

__all__ = ["Selector"]

log = logging.getLogger("geodns.select")

_SERVFAIL: Final = Answer("servfail", (), None, 0, (), (), False)


class Selector:
    """Chooses POPs for pools; one instance per (config, GeoIP database)."""

    def __init__(self, config: Config, geo: GeoDB | None,
                 tables: GeoTables | None = None, *, inputs: Inputs | None = None,
                 warn: bool = True) -> None:
        self.config = config
        self.geo = geo
        if tables is None and geo is not None and (config.fences or any(
                strategy_of(p).uses_geoip for p in config.pools.values())):
            tables = geo.tables()
        self.tables = tables
        self.inputs = inputs if inputs is not None else load_inputs(config)
        i = self.inputs
        # fences: which of them covers each address, compiled once for every pool
        self.fence_index = FenceIndex(config.fences, tables, i.asn) if config.fences else None
        fx = self.fence_index
        self.plans = {name: Plan(pool, config, tables, asn=i.asn, latency=i.latency.get(name),
                                 spill=i.spill,
                                 fences=fx.for_pool(name) if fx is not None else None)
                      for name, pool in config.pools.items()}
        for plan in self.plans.values():  # experiments: a view of a plan per arm
            arms = plan.pool.arms
            if arms:
                plan.set_arms([self.plans[a.pool].fork(a.name, None) if a.pool is not None
                               else plan.fork(a.name, frozenset(a.pops)
                                              if a.pops is not None else None)
                               for a in arms])
        if warn:  # (geodns check reports them with file:line instead)
            for cut in empty_cuts(self):
                log.warning("%s", cut.message(None))

    # ------------------------------------------------------------------ hot path

    def decide(self, pool: str, qtype: int, cfam: int, addr: int, source: int | None,
               health: HealthSnapshot) -> tuple[Answer, int]:
        """(answer, scope) for a client already masked to its ECS ``source`` prefix
        (None: the query's source address; 0: the client opted out of ECS)."""
        plan = self.plans.get(pool)
        if plan is None:
            return _SERVFAIL, 0
        fam = plan.family(qtype)
        if fam is None:
            return Answer("nodata", (), None, plan.ttl, (), (), False), 0
        return plan.decide(fam, cfam, addr, source, health)

    def select(self, pool: str, qtype: int, client: str | bytes, source_prefix: int | None,
               health: HealthSnapshot) -> Selection:
        """The same decision for a client given as text or packed bytes.

        ``client``: the ECS address (bytes zero-padded to 4/16, or text) with its
        ``source_prefix``, else the source address with ``source_prefix=None``.  An
        unknown pool gives SERVFAIL; an unparsable client raises ValueError.
        """
        cfam, addr = parse_client(client)
        if source_prefix is not None:
            addr = mask(cfam, addr, source_prefix)
        ans, scope = self.decide(pool, qtype, cfam, addr, source_prefix, health)
        return ans.selection(scope)

    def clear_caches(self) -> None:
        """Forget every answer resolved under a health snapshot (tests, benchmarks)."""
        for plan in self.plans.values():
            plan.invalidate()

    # ------------------------------------------------------------------ explain

    def explain(self, pool: str, qtype: int, client: str | bytes, source_prefix: int | None,
                health: HealthSnapshot) -> Explanation:
        """Everything behind ``select`` for this client (not for the hot path)."""
        if not isinstance(client, str):
            client = format_addr(*parse_client(client))
        plan = self.plans.get(pool)
        if plan is None:
            sel = _SERVFAIL.selection(0)
            return Explanation(pool, "-", qtype, client, source_prefix, None, None,
                               "unknown pool", (), sel, "-", ("no such pool in the config",))
        cfam, addr = parse_client(client)
        if source_prefix is not None:
            addr = mask(cfam, addr, source_prefix)
        head: list[str] = []
        if plan.pool.arms:  # the arm decides which view of the plan answers
            index, point = plan.arm_of(cfam, addr)
            head = _arm_notes(plan, index, point, cfam, addr)
            plan = plan.arm_views[index]
        loc: Location | None = None
        geo_net: str | None = None
        if self.geo is not None:
            loc, gplen = self.geo.lookup_int(cfam, addr)
            geo_net = format_net(cfam, addr, gplen)
        sel = self.select(pool, qtype, client, source_prefix, health)
        scope_net = format_net(cfam, addr, sel.scope)
        fam = plan.family(qtype)
        if fam is None:
            return Explanation(pool, plan.strategy, qtype, client, source_prefix, loc,
                               geo_net, "no data of this type in an address pool", (), sel,
                               format_net(cfam, addr, 0), ("NODATA: only A/AAAA exist here",))
        notes: list[str] = list(head)
        ranking, region, hfam, haddr = self._ranking(plan, cfam, addr, source_prefix)
        ans = plan.answer(fam, ranking.pops, health, ranking.fence)
        if source_prefix == 0:
            notes.append("ECS source prefix 0: the client opted out, decided without "
                         "location, scope 0")
        elif region is not None:
            notes.append(f"compiled region {region}: {ranking.rule}")
            if plan.maps and source_prefix is not None:
                notes.append(self._scope_note(plan, cfam, fam, addr, health, sel.scope))
        elif (note := plan.how.flat_note(sel.scope)) is not None:
            notes.append(note)
        notes += Latency.notes(plan, ranking)
        if source_prefix != 0:
            notes += self._cut_notes(plan, cfam, addr, source_prefix, ranking)
        if plan.spill is not None and source_prefix != 0:
            spilled, spill_notes = _spill_notes(plan, fam, ranking, ans, hfam, haddr, health)
            notes += spill_notes
            ans = spilled
        if sel.scope == 0 and source_prefix != 0 and self._untailored(plan, cfam, fam, health):
            notes.append("every client gets this answer (untailored): scope 0")
        if ans.all_down:
            notes.append(f"no candidate is up: all_down = {plan.all_down}")
        if ans.skipped:
            notes.append(f"ttl_on_failure: passed over {', '.join(ans.skipped)}")
        cands = self._candidates(plan, fam, ranking, ans, loc, health)
        return Explanation(pool, plan.strategy, qtype, client, source_prefix, loc, geo_net,
                           ranking.rule, cands, sel, scope_net, tuple(notes))

    def _ranking(self, plan: Plan, cfam: int, addr: int, source: int | None,
                 maps: dict[int, RankingMap] | None = None,
                 hashed: tuple[int, int] | None = None
                 ) -> tuple[Ranking, str | None, int, int]:
        """The ranking that decided, (compiled pools) its region as text, and the
        family and address the client's hash unit is taken from.  ``maps``: another
        set of the plan's maps (the open ones: before fences)."""
        if source == 0:
            return plan.unknown, None, cfam, addr
        maps = plan.maps if maps is None else maps
        if maps:
            rmap = maps[cfam]
            i, start, end = rmap.find(addr)
            entry: Entry = rmap.entries[int(rmap.rids[i])]
            if isinstance(entry, Alias):
                v4 = (addr >> (96 - entry.depth)) & 0xFFFFFFFF
                key = entry.via if entry.via is not None else \
                    V4_IN_V6 if V4_IN_V6 in maps else 4
                ranking, region, hfam, haddr = self._ranking(
                    plan, key, v4, source, maps, (cfam, addr) if entry.hash6 else None)
                return (ranking, f"{region} (IPv4 inside {format_net(cfam, addr, entry.depth)})",
                        hfam, haddr)
            hfam, haddr = hashed if hashed is not None else (
                4 if cfam < 0 else cfam, addr)
            region = _range_text(rmap.family, start, end)
            if isinstance(entry, Hashed):
                return plan.how.flat(plan, hfam, haddr, entry), region, hfam, haddr
            return entry, region, hfam, haddr
        return plan.how.flat(plan, cfam, addr), None, cfam, addr

    def _cut_notes(self, plan: Plan, cfam: int, addr: int, source: int | None,
                   ranking: Ranking) -> list[str]:
        """Which fence (and which arm) cut the client's candidates, from what to what."""
        tag = ranking.fence
        if tag is None and plan.allowed is None:
            return []
        open_ranking = ranking
        if plan.open_maps:
            open_ranking = self._ranking(plan, cfam, addr, source, plan.open_maps)[0]
        else:
            open_ranking = plan.how.open_ranking(plan, cfam, addr, ranking)
        before = ", ".join(open_ranking.pops) or "none"
        after = ", ".join(ranking.pops) or "none"
        notes = []
        fences = self.config.fences
        if tag is not None:
            who = "; ".join(f"fence {n} ({fences[n].describe()}) allows "
                            f"{', '.join(fences[n].pops)}" for n in tag.names)
            notes.append(f"{who}: the candidates {before} are cut to "
                         f"{', '.join(tag.cut(open_ranking.pops)) or 'none'} before "
                         "health, overrides, spill or all_down act")
            if tag.emptied:
                notes.append(f"the fence{'s leave' if len(tag.names) > 1 else ' leaves'} "
                             f"this client no POP: answered {tag.on_empty.upper()} "
                             "(on_empty)")
        if plan.allowed is not None:
            notes.append(f"arm {plan.label} restricts the candidates to "
                         f"{', '.join(sorted(plan.allowed))}: {after}")
        return notes

    def _untailored(self, plan: Plan, cfam: int, fam: int, health: HealthSnapshot) -> bool:
        if plan.maps:
            return len(plan.answer_map(cfam, fam, health)) == 1
        return plan.how.untailored(plan, fam, health) is not None

    def _scope_note(self, plan: Plan, cfam: int, fam: int, addr: int,
                    health: HealthSnapshot, scope: int) -> str:
        amap = plan.answer_map(cfam, fam, health)
        ans, start, end = amap.lookup(addr)
        if isinstance(ans, Alias):
            return f"scope /{scope}: IPv4 space inside IPv6 (scope of the IPv4 address)"
        if isinstance(ans, SpillAnswer | Hashed):
            why = "spills by" if isinstance(ans, SpillAnswer) else "is ranked by"
            return (f"scope /{scope}: the answer {why} the hash of the client's "
                    f"/{SPILL_UNIT[cfam]}, inside {_range_text(cfam, start, end)}")
        return (f"scope /{scope}: widest block around the client inside "
                f"{_range_text(cfam, start, end)}, where every client gets this answer "
                "under the current health")

    def _candidates(self, plan: Plan, fam: int, ranking: Ranking, ans: Answer,
                    loc: Location | None, health: HealthSnapshot
                    ) -> tuple[CandidateInfo, ...]:
        dist: list[float] = []
        if ranking.rule == NEAREST_RULE and loc is not None and loc.has_coords:
            assert loc.lat is not None and loc.lon is not None
            coords = [(self.config.pops[p].lat, self.config.pops[p].lon) for p in ranking.pops]
            dist = distances_km(loc.lat, loc.lon, coords)
        weights = {n: w for n, w, _ in plan.weighted}
        out = []
        for i, pop in enumerate(ranking.pops):
            addr_infos: list[AddressInfo] = []
            if fam != FAM_CNAME:
                for a in plan.addrs[pop][fam]:
                    k = (pop, a)
                    addr_infos.append(AddressInfo(
                        a, health.address_state(pop, a), health.real_state(k),
                        health.forced(k), pop in ans.pops and a in ans.addresses))
            d = dist[i] if i < len(dist) and not math.isnan(dist[i]) else None
            out.append(CandidateInfo(
                rank=i + 1, pop=pop, state=health.state(pop), real=health.real_state(pop),
                forced=health.forced(pop), eligible=plan.eligible(pop, fam),
                chosen=pop in ans.pops,
                skipped=pop in ans.skipped or any(s.startswith(pop + "/") for s in ans.skipped),
                distance_km=d, weight=weights.get(pop) if plan.strategy == plan.how.name
                and plan.how.hashed else None,
                addresses=tuple(addr_infos),
                cname=plan.pops[pop].cname if fam == FAM_CNAME else None,
            ))
        return tuple(out)


def _arm_notes(plan: Plan, index: int, point: float, cfam: int, addr: int) -> list[str]:
    """Which arm the client's block hashed into, and what that arm answers with."""
    arms = plan.pool.arms
    total = sum(a.weight for a in arms)
    lo = plan.arm_cuts[index - 1] if index else 0.0
    arm = arms[index]
    unit = format_net(cfam, addr, SPILL_UNIT[cfam])
    salt = plan.pool.salt if plan.pool.salt is not None else plan.name
    split = ", ".join(f"{a.name} {a.weight / total:.1%}" for a in arms)
    return [f"experiment ({split}; salt {salt!r}): this client's {unit} hashes to "
            f"{point:.3f}, in [{lo:.3f}, {plan.arm_cuts[index]:.3f}): arm {arm.name} "
            f"({arm.describe()})",
            f"scope never wider than /{SPILL_UNIT[cfam]}: the arm is per client block"]


def _spill_notes(plan: Plan, fam: int, ranking: Ranking, base: Answer, hfam: int, haddr: int,
                 health: HealthSnapshot) -> tuple[Answer, list[str]]:
    """The load, capacity and share behind a spill pool's answer, and the answer after
    the client's hash."""
    state = plan._spill_state
    if state is None or not base.pops or base.all_down:
        return base, []
    pop = base.pops[0]
    pl = state.loads.get(pop)
    if pl is None:
        return base, [f"spill: no fresh load for {pop}: it sheds nothing"]
    share = state.share(plan.name, pop)
    head = (f"spill: {pop} load {pl.load:g} of capacity {pl.capacity:g} "
            f"({pl.utilisation:.0%}, spill_at {plan.pool.spill_at:.0%})")
    if share <= 0:
        return base, [f"{head}: sheds nothing"]
    got = plan.resolved(fam, ranking.pops, health, ranking.fence)
    if not isinstance(got, SpillAnswer):
        return base, [f"{head}: sheds {share:.1%} of its client blocks, but no later POP "
                      "of this ranking has headroom: nothing moves"]
    unit = format_net(hfam, haddr, SPILL_UNIT[hfam])
    u, v = spill_point(hfam, haddr)
    rec = ", ".join(f"{q} {w:g}" for q, w in got.receivers)
    notes = [f"{head}: sheds {share:.1%} of its client blocks to {rec} (headroom)"]
    final = got.pick(hfam, haddr)
    if final is got.base:
        notes.append(f"this client's {unit} hashes to {u:.3f} >= {share:.3f}: stays on {pop}")
    else:
        notes.append(f"this client's {unit} hashes to {u:.3f} < {share:.3f}: moved to "
                     f"{final.pops[0] if final.pops else '-'} (second hash {v:.3f})")
    return final, notes


def _range_text(cfam: int, start: int, end: int) -> str:

    """An interval as CIDR when it is one block, else ``first-last``."""
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return format_net(cfam, start, bits_of(cfam) - size.bit_length() + 1)
    return f"{format_addr(cfam, start)}-{format_addr(cfam, end - 1)}"
