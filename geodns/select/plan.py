"""A pool prepared for selection: its compiled maps, and health applied to rankings.

``Plan.decide`` is the per-query step: look the client up in the answer map of the
current health (built from the compiled ranking map once per health snapshot), or
hash it (``weighted``), or take the fixed order (``failover``/``all``).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, cast

from geodns.config import Config, Pool, Pop
from geodns.geoip.tables import GeoTables
from geodns.health.snapshot import HealthSnapshot
from geodns.select.compile import NO_LOCATION_RULE, compile_geo, compile_nearest
from geodns.select.hrw import hrw_rank, pop_seed
from geodns.select.maps import Alias, AnswerMap, Entry, Ranking, RankingMap, widest_block
from geodns.select.types import Kind, Selection

__all__ = ["COMPILED", "FAM_CNAME", "WEIGHTED_PREFIX", "Answer", "Plan"]

QTYPE_A: Final = 1
QTYPE_AAAA: Final = 28
FAM_CNAME: Final = 0  # family key of CNAME pools: the answer is the same for every qtype
WEIGHTED_PREFIX: Final = {4: 24, 6: 56}  # stickiness unit of weighted pools
COMPILED: Final = frozenset({"geo", "nearest"})
_UNLIMITED: Final = 1 << 30
V4_IN_V6: Final = -4  # map key: IPv4 space reached from IPv6 clients (without IPv4 nets)


@dataclass(frozen=True, slots=True)
class Answer:
    """A ranking with health applied: everything of a Selection except the scope.

    Equal answers are equal values, so adjacent intervals that resolve alike merge.
    """

    kind: Kind
    addresses: tuple[str, ...]
    cname: str | None
    ttl: int
    pops: tuple[str, ...]
    skipped: tuple[str, ...]  # POPs ("pop") or addresses ("pop/addr") passed over
    all_down: bool  # the all_down policy decided

    @property
    def key(self) -> Hashable:
        """Equal keys mean byte-identical answer records (what rendering caches on)."""
        return (self.kind, self.addresses, self.cname, self.ttl)

    def selection(self, scope: int) -> Selection:
        return Selection(self.kind, self.addresses, self.cname, self.ttl, scope, self.pops,
                         self.key)


class Plan:
    """One pool: its options, compiled ranking maps and per-health caches."""

    def __init__(self, pool: Pool, config: Config, tables: GeoTables | None) -> None:
        self.pool = pool
        self.name = pool.name
        self.strategy = pool.strategy
        self.ttl = pool.ttl
        self.ttl_fail = pool.ttl_on_failure
        self.want = pool.answers if pool.answers is not None else _UNLIMITED
        self.all_down = pool.all_down
        refs = pool.referenced_pops()
        self.pops: dict[str, Pop] = {p: config.pops[p] for p in refs}
        self.cname_mode = bool(refs) and all(self.pops[p].cname is not None for p in refs)
        self.addrs: dict[str, dict[int, tuple[str, ...]]] = {
            p: {4: pop.ipv4, 6: pop.ipv6} for p, pop in self.pops.items()}
        self.order = Ranking("fixed order" if pool.strategy != "all" else "all POPs",
                             pool.pops)
        self.default = Ranking("default", pool.default or pool.pops)
        self.weighted = [(p, pool.weights.get(p, 0.0), pop_seed(p)) for p in pool.pops]
        self.maps: dict[int, RankingMap] = {}
        if pool.strategy == "geo":
            self.maps[4], base4 = compile_geo(pool, tables, 4)
            self.maps[6], _ = compile_geo(pool, tables, 6)
            if base4 is not self.maps[4]:
                self.maps[V4_IN_V6] = base4  # IPv4 inside IPv6: no IPv4 nets rules
        elif pool.strategy == "nearest":
            self.maps = {f: compile_nearest(pool, config, tables, f) for f in (4, 6)}
        self.unknown = self._unknown_ranking()
        self._token: Hashable = None
        self._answers: dict[tuple[int, tuple[str, ...]], Answer] = {}
        self._amaps: dict[tuple[int, int], AnswerMap[Answer]] = {}
        self._fixed: dict[int, Answer | None] = {}

    def _unknown_ranking(self) -> Ranking:
        """The ranking of a client that gave no usable address (ECS source /0)."""
        if self.strategy == "geo":
            return self.default
        if self.strategy == "nearest":
            return Ranking(NO_LOCATION_RULE, self.default.pops)
        if self.strategy == "weighted":
            return Ranking("weighted hash of 0/0", hrw_rank(0, self.weighted))
        return self.order

    def family(self, qtype: int) -> int | None:
        """Family key for ``qtype``: 4, 6, FAM_CNAME, or None (no data of that type)."""
        if self.cname_mode:
            return FAM_CNAME
        if qtype == QTYPE_A:
            return 4
        if qtype == QTYPE_AAAA:
            return 6
        return None

    def eligible(self, pop: str, fam: int) -> bool:
        return fam == FAM_CNAME or bool(self.addrs[pop][fam])

    # ------------------------------------------------------------------ per query

    def _sync(self, health: HealthSnapshot) -> None:
        token = health.cache_token
        if token != self._token:
            self._token = token
            self._answers.clear()
            self._amaps.clear()
            self._fixed.clear()

    def decide(self, fam: int, cfam: int, addr: int, source: int | None,
               health: HealthSnapshot) -> tuple[Answer, int]:
        """(answer, ECS scope) for client ``addr`` of family ``cfam``, already masked to
        ``source`` (None: the source address of the query, 0: the client opted out)."""
        if self._token != health.cache_token:
            self._sync(health)
        if source == 0:
            return self.answer(fam, self.unknown.pops, health), 0
        if self.maps:
            amap = self._amaps.get((cfam, fam))
            if amap is None:
                amap = self.answer_map(cfam, fam, health)
            ans, start, end = amap.lookup(addr)
            if ans.__class__ is Alias:  # cfam 6 only
                depth = cast(Alias, ans).depth
                v4 = (addr >> (96 - depth)) & 0xFFFFFFFF
                a4, scope4 = self.decide(fam, V4_IN_V6 if V4_IN_V6 in self.maps else 4, v4,
                                         source, health)
                return a4, depth + scope4
            return cast(Answer, ans), widest_block(addr, start, end, amap.bits) \
                if len(amap) > 1 else 0
        if fam in self._fixed:
            fixed = self._fixed[fam]
        else:
            fixed = self._fixed[fam] = self._untailored(fam, health)
        if fixed is not None:
            return fixed, 0
        # weighted: the client's /24 (/56) picks its ranking
        unit = WEIGHTED_PREFIX[cfam]
        prefix = addr >> ((32 if cfam == 4 else 128) - unit)
        ranking = hrw_rank((prefix << 1) | (cfam == 6), self.weighted)
        return self.answer(fam, ranking, health), unit

    def answer_map(self, cfam: int, fam: int, health: HealthSnapshot) -> AnswerMap[Answer]:
        """The compiled map of ``cfam`` resolved under ``health`` (cached per snapshot)."""
        self._sync(health)
        found = self._amaps.get((cfam, fam))
        if found is None:
            def resolve(entry: Entry) -> Answer | Alias:
                if isinstance(entry, Alias):
                    # IPv4 inside IPv6: when every IPv4 client gets the same answer, so
                    # does the whole block, which may then merge with its neighbours.
                    v4 = self.answer_map(V4_IN_V6 if V4_IN_V6 in self.maps else 4, fam,
                                         health)
                    return cast(Answer, v4.answers[0]) if len(v4) == 1 else entry
                return self.answer(fam, entry.pops, health)

            found = AnswerMap.build(self.maps[cfam], resolve, health.cache_token, _seen_as)
            self._amaps[(cfam, fam)] = found
        return found

    def answer(self, fam: int, ranked: tuple[str, ...], health: HealthSnapshot) -> Answer:
        """Health applied to a ranking (cached per ranking while the snapshot stands)."""
        key = (fam, ranked)
        hit = self._answers.get(key)
        if hit is None or self._token != health.cache_token:
            self._sync(health)
            hit = self._answers[key] = self._compute(fam, ranked, health)
        return hit

    def _untailored(self, fam: int, health: HealthSnapshot) -> Answer | None:
        """The answer when no client can get another one, else None (weighted pools:
        at most one candidate, or nothing up and a policy that ignores the ranking)."""
        full = self.answer(fam, self.order.pops, health)
        if self.strategy != "weighted":
            return full
        cands = [p for p in self.pool.pops if self.eligible(p, fam)]
        if len(cands) <= 1 or (full.all_down and self.all_down != "fail_open"):
            return full
        return None

    # ------------------------------------------------------------------ health

    def _compute(self, fam: int, ranked: tuple[str, ...], health: HealthSnapshot) -> Answer:
        """Walk the ranking, skipping down/drained POPs and addresses.

        A POP without an address of the family is no candidate at all (not a failure);
        no candidate at all -> NODATA.  Nothing up -> the pool's all_down policy.
        """
        cands = tuple(p for p in ranked if self.eligible(p, fam))
        if not cands:
            return Answer("nodata", (), None, self.ttl, (), (), False)
        picked = self._pick(fam, cands, health)
        if picked is not None:
            addrs, cname, pops, skipped = picked
            kind: Kind = "cname" if cname is not None else "addresses"
            return Answer(kind, addrs, cname, self.ttl_fail if skipped else self.ttl, pops,
                          skipped, False)
        if self.all_down == "fail_open":
            picked = self._pick(fam, cands, None)
            assert picked is not None
            addrs, cname, pops, _ = picked
            kind = "cname" if cname is not None else "addresses"
            return Answer(kind, addrs, cname, self.ttl_fail, pops, cands, True)
        policy = cast(Kind, self.all_down)  # "nodata" or "servfail" here
        return Answer(policy, (), None, self.ttl_fail, (), cands, True)

    def _pick(self, fam: int, cands: tuple[str, ...], health: HealthSnapshot | None
              ) -> tuple[tuple[str, ...], str | None, tuple[str, ...], tuple[str, ...]] | None:
        """First ``want`` usable addresses (or the first usable CNAME) in ranking order;
        None when nothing is usable.  ``health=None``: treat everything as up."""
        addrs: list[str] = []
        pops: list[str] = []
        skipped: list[str] = []
        want = self.want
        for pop in cands:
            if health is not None and health.state(pop) != "up":
                skipped.append(pop)
                continue
            if fam == FAM_CNAME:
                return (), self.pops[pop].cname, (pop,), tuple(skipped)
            took = False
            for a in self.addrs[pop][fam]:
                if health is not None and health.address_state(pop, a) != "up":
                    skipped.append(f"{pop}/{a}")
                    continue
                addrs.append(a)
                took = True
                if len(addrs) >= want:
                    break
            if took:
                pops.append(pop)
            if len(addrs) >= want:
                break
        if not addrs:
            return None
        return tuple(addrs), None, tuple(pops), tuple(skipped)


def _seen_as(answer: Answer | Alias) -> Hashable:
    """What decides whether two intervals merge: the records and the POPs counted."""
    if isinstance(answer, Alias):
        return answer
    return (answer.key, answer.pops)
