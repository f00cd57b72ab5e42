"""POP selection: (pool, qtype, client, health) -> answer and ECS scope.

Every client-dependent pool is compiled when the config or the GeoIP database is
loaded (:mod:`geodns.select.compile`): a prefix map from merged networks to a
health-independent ranking.  Per query (:meth:`Selector.decide`) that is one bisect
in the map resolved for the current health snapshot, whose merged intervals also give
the ECS scope: the widest block around the client that gets the same answer.
``weighted`` pools hash the client's /24 (/56); ``failover`` and ``all`` answer
everyone alike (scope 0).

Build a new Selector when the config or the GeoIP database changes: compiling is the
expensive part, and it happens before the new generation answers anything.
"""

from __future__ import annotations

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
from geodns.select.hrw import hrw_rank
from geodns.select.maps import Alias, Ranking
from geodns.select.plan import COMPILED, FAM_CNAME, V4_IN_V6, WEIGHTED_PREFIX, Answer, Plan
from geodns.select.types import Selection

__all__ = ["Selector"]

_SERVFAIL: Final = Answer("servfail", (), None, 0, (), (), False)


class Selector:
    """Chooses POPs for pools; one instance per (config, GeoIP database)."""

    def __init__(self, config: Config, geo: GeoDB | None,
                 tables: GeoTables | None = None) -> None:
        self.config = config
        self.geo = geo
        if tables is None and geo is not None and any(
                p.strategy in COMPILED for p in config.pools.values()):
            tables = geo.tables()
        self.tables = tables
        self.plans = {name: Plan(pool, config, tables) for name, pool in config.pools.items()}

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
            plan._token = None
            plan._sync(HealthSnapshot.all_up(-1))
            plan._token = None

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
        notes: list[str] = []
        ranking, region = self._ranking(plan, cfam, addr, source_prefix)
        ans = plan.answer(fam, ranking.pops, health)
        if source_prefix == 0:
            notes.append("ECS source prefix 0: the client opted out, decided without "
                         "location, scope 0")
        elif region is not None:
            notes.append(f"compiled region {region}: {ranking.rule}")
            if plan.maps and source_prefix is not None:
                notes.append(self._scope_note(plan, cfam, fam, addr, health, sel.scope))
        elif plan.strategy == "weighted" and sel.scope:
            notes.append(f"scope /{sel.scope}: weighted pools hash the client's /{sel.scope}")
        if sel.scope == 0 and source_prefix != 0 and self._untailored(plan, cfam, fam, health):
            notes.append("every client gets this answer (untailored): scope 0")
        if ans.all_down:
            notes.append(f"no candidate is up: all_down = {plan.all_down}")
        if ans.skipped:
            notes.append(f"ttl_on_failure: passed over {', '.join(ans.skipped)}")
        cands = self._candidates(plan, fam, ranking, ans, loc, health)
        return Explanation(pool, plan.strategy, qtype, client, source_prefix, loc, geo_net,
                           ranking.rule, cands, sel, scope_net, tuple(notes))

    def _ranking(self, plan: Plan, cfam: int, addr: int, source: int | None
                 ) -> tuple[Ranking, str | None]:
        """The ranking that decided, and (compiled pools) its region as text."""
        if source == 0:
            return plan.unknown, None
        if plan.maps:
            rmap = plan.maps[cfam]
            i, start, end = rmap.find(addr)
            entry = rmap.entries[int(rmap.rids[i])]
            if isinstance(entry, Alias):
                v4 = (addr >> (96 - entry.depth)) & 0xFFFFFFFF
                ranking, region = self._ranking(
                    plan, V4_IN_V6 if V4_IN_V6 in plan.maps else 4, v4, source)
                return ranking, f"{region} (IPv4 inside {format_net(cfam, addr, entry.depth)})"
            return entry, _range_text(rmap.family, start, end)
        if plan.strategy == "weighted":
            unit = WEIGHTED_PREFIX[cfam]
            prefix = addr >> (bits_of(cfam) - unit)
            return Ranking(f"weighted hash of {format_net(cfam, addr, unit)}",
                           hrw_rank((prefix << 1) | (cfam == 6), plan.weighted)), None
        return plan.order, None

    def _untailored(self, plan: Plan, cfam: int, fam: int, health: HealthSnapshot) -> bool:
        if plan.maps:
            return len(plan.answer_map(cfam, fam, health)) == 1
        return plan._untailored(fam, health) is not None

    def _scope_note(self, plan: Plan, cfam: int, fam: int, addr: int,
                    health: HealthSnapshot, scope: int) -> str:
        amap = plan.answer_map(cfam, fam, health)
        ans, start, end = amap.lookup(addr)
        if isinstance(ans, Alias):
            return f"scope /{scope}: IPv4 space inside IPv6 (scope of the IPv4 address)"
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
                distance_km=d, weight=weights.get(pop) if plan.strategy == "weighted" else None,
                addresses=tuple(addr_infos),
                cname=plan.pops[pop].cname if fam == FAM_CNAME else None,
            ))
        return tuple(out)


def _range_text(cfam: int, start: int, end: int) -> str:
    """An interval as CIDR when it is one block, else ``first-last``."""
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return format_net(cfam, start, bits_of(cfam) - size.bit_length() + 1)
    return f"{format_addr(cfam, start)}-{format_addr(cfam, end - 1)}"
