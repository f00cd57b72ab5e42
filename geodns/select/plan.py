"""A pool prepared for selection: its compiled maps, and health applied to rankings.

``Plan.decide`` is the per-query step: look the client up in the answer map of the
current health (built from the compiled ranking map once per health snapshot), or
hash it (``weighted``), or take the fixed order (``failover``/``all``).  Answers of a
spill pool whose first POP sheds blocks are :class:`SpillAnswer` values: the client's
/24 (/56) hash picks between the answer and its alternatives.

A ``latency`` pool compiles its fallback strategy (geo or nearest maps, or one
interval for failover and weighted) and paints the latency map over it
(:mod:`geodns.select.latency`); when the map is missing or older than ``max_age`` the
fallback's maps answer alone.

Fences (:mod:`geodns.select.fences`) are multiplied into the maps a plan serves: the
``open`` maps rank as the strategy does, the served ones carry each fenced region's
cut ranking and fence tag.  A pool with experiment arms answers through one *view*
per arm (:meth:`Plan.fork`): the same compiled maps, cut to the arm's POPs (or another
pool's plan), with answers labelled by the arm; the client's block picks the arm
(:mod:`geodns.select.arms`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Final, cast

from geodns.config import Config, Pool, Pop
from geodns.geoip.asn_tables import AsnTables
from geodns.geoip.tables import GeoTables
from geodns.health.snapshot import HealthSnapshot
from geodns.select.arms import ARM_UNIT, arm_cuts, arm_index, arm_point, arm_seed
from geodns.select.fences import PoolFences, cut_entry, fence_maps
from geodns.select.latency import (
    IPNetwork,
    LatencyBook,
    LatencyChoice,
    latency_choices,
    overlay_latency,
)
from geodns.select.maps import (
    Alias,
    AnswerMap,
    Entry,
    FenceTag,
    Hashed,
    Ranking,
    RankingMap,
)
from geodns.select.spill import SPILL_UNIT, SpillAnswer, SpillHolder, SpillState
from geodns.select.strategies import (
    V4_IN_V6,
    WEIGHTED_PREFIX,
    hashed_ranking,
    pool_weights,
    strategy_of,
)
from geodns.select.types import Kind, Selection

__all__ = ["FAM_CNAME", "V4_IN_V6", "WEIGHTED_PREFIX", "Answer", "Maps", "Plan"]

QTYPE_A: Final = 1
QTYPE_AAAA: Final = 28
FAM_CNAME: Final = 0  # family key of CNAME pools: the answer is the same for every qtype
_UNLIMITED: Final = 1 << 30
_CACHED_TOKENS: Final = 4  # health snapshots whose answers a plan keeps (live + what-ifs)



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
    arm: str | None = None  # the experiment arm that answered (query log, metrics, dnstap)
    fence: str | None = None  # the fences that cut the candidates ("us-only", "a+b")

    @property
    def key(self) -> Hashable:
        """Equal keys mean byte-identical answer records (what rendering caches on)."""
        return (self.kind, self.addresses, self.cname, self.ttl)

    def selection(self, scope: int) -> Selection:
        return Selection(self.kind, self.addresses, self.cname, self.ttl, scope, self.pops,
                         self.key, self.arm, self.fence)


class Maps(dict[int, RankingMap]):
    """Maps a plan serves (fences multiplied in), with the ``open`` ones they come
    from (as the strategy ranks; explain shows what a fence cut)."""

    def __init__(self, served: Mapping[int, RankingMap],
                 open_maps: Mapping[int, RankingMap]) -> None:
        super().__init__(served)
        self.open = dict(open_maps)


class Plan:
    """One pool: its options, compiled ranking maps and per-health caches."""

    def __init__(self, pool: Pool, config: Config, tables: GeoTables | None, *,
                 asn: AsnTables | None = None, latency: LatencyBook | None = None,
                 spill: SpillHolder | None = None, fences: PoolFences | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.name = pool.name
        self.strategy = pool.strategy
        self.how = strategy_of(pool)  # what ranks (a latency pool's fallback)
        self.kind = self.how.name
        self.ttl = pool.ttl
        self.ttl_fail = pool.ttl_on_failure
        self.want = pool.answers if pool.answers is not None else _UNLIMITED
        self.all_down = pool.all_down
        refs = pool.referenced_pops()
        self.pops: dict[str, Pop] = {p: config.pops[p] for p in refs}
        self.cname_mode = bool(refs) and all(self.pops[p].cname is not None for p in refs)
        self.addrs: dict[str, dict[int, tuple[str, ...]]] = {
            p: {4: pop.ipv4, 6: pop.ipv6} for p, pop in self.pops.items()}
        self.order = Ranking(self.how.order_rule, pool.pops)
        self.default = Ranking("default", pool.default or pool.pops)
        self.weighted = pool_weights(pool)
        self.spill = spill if pool.spill else None
        self.fences = fences
        self.label: str | None = None  # the arm this plan answers as (views of arm pools)
        self.allowed: frozenset[str] | None = None  # an arm's POPs (views)
        self.views: list[Plan] = []  # arm views that share these maps
        self.base_maps: dict[int, RankingMap] = self.how.compile(self, config, tables, asn)
        if not self.base_maps and (self.strategy == "latency" or fences is not None):
            # a strategy without maps under a latency map, or a fenced pool that would
            # answer everyone alike but for its fences: one interval
            entry: Entry = self.how.flat_entry(self)
            self.base_maps = {f: RankingMap.single(f, entry) for f in (4, 6)}
        self.base_served = self._fenced(self.base_maps)
        self.maps: dict[int, RankingMap] = self.base_served
        self.open_maps: dict[int, RankingMap] = self.base_maps  # the maps before fences
        self.latency = latency
        self.choices: dict[int, list[LatencyChoice]] = {}  # what the overlay painted
        self.latency_maps: dict[int, RankingMap] = {}
        self.latency_stale = True
        self.compiled_from: object = None  # the LatencyMap the latency maps come from
        self.unknown = self.how.unknown(self)  # a client that gave no address
        self._reset()
        if latency is not None and self.strategy == "latency":
            maps, choices, incumbents = self.compile_latency(latency)
            latency.incumbents = incumbents
            self.install_latency(maps, choices, latency.stale(pool.max_age, clock()),
                                 latency.map)

    def _reset(self) -> None:
        self._token: Hashable = None
        self._caches: OrderedDict[Hashable, tuple[dict[Hashable, Answer],
                                                  dict[tuple[int, int], AnswerMap[object]],
                                                  dict[int, object]]] = OrderedDict()
        self._answers: dict[Hashable, Answer] = {}
        self._amaps: dict[tuple[int, int], AnswerMap[object]] = {}
        self._fixed: dict[int, object] = {}
        self._resolved: dict[Hashable, object] = {}
        self._spill_state: SpillState | None = None
        self._spill_token: Hashable = ()

    def _fenced(self, open_maps: dict[int, RankingMap]) -> dict[int, RankingMap]:
        """``open_maps`` with this pool's fences multiplied in (pure)."""
        if self.fences is None or not open_maps:
            return open_maps
        return fence_maps(open_maps, self.fences, self.weighted)

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

    # ------------------------------------------------------------------ arms

    def fork(self, label: str, allowed: frozenset[str] | None) -> Plan:
        """A view of this plan for an experiment arm: the same compiled maps (kept in
        step when they change), rankings cut to ``allowed`` (None: as they are), its
        own caches, answers labelled ``label``."""
        view = Plan.__new__(Plan)
        view.__dict__.update(self.__dict__)
        view.__dict__.pop("decide", None)  # a view answers for itself
        view.label, view.allowed, view.views = label, allowed, []
        view._reset()  # (the copied caches are the source's)
        view._adopt(self)
        self.views.append(view)
        return view

    def _adopt(self, src: Plan) -> None:
        """Take ``src``'s current maps and rankings (cut to this view's arm)."""
        for name in ("base_maps", "base_served", "open_maps", "latency_maps", "choices",
                     "compiled_from", "latency_stale", "order", "default", "unknown",
                     "weighted", "maps"):
            setattr(self, name, getattr(src, name))
        allowed = self.allowed
        if allowed is not None:
            self.maps = {k: m.relabel(lambda e: cut_entry(e, allowed, None, src.weighted))
                         for k, m in src.maps.items()}
            self.order, self.default, self.unknown = (
                Ranking(r.rule, tuple(p for p in r.pops if p in allowed))
                for r in (src.order, src.default, src.unknown))
            self.weighted = tuple(w for w in src.weighted if w[0] in allowed)
        self.invalidate()

    def set_arms(self, views: list[Plan]) -> None:
        """Answer through ``views`` (one per arm of the pool, in config order): the
        client's /24 (/56) hashed with the pool's salt picks one."""
        self.arm_views = tuple(views)
        self.arm_cuts = arm_cuts(self.pool.arms)
        self.arm_seed = arm_seed(self.pool.salt if self.pool.salt is not None else self.name)
        self.decide = self._decide_armed  # type: ignore[method-assign]

    def arm_of(self, cfam: int, addr: int) -> tuple[int, float]:
        """(arm index, the client block's point in [0, 1)): explain."""
        point = arm_point(self.arm_seed, cfam, addr)
        return arm_index(self.arm_cuts, point), point

    def _decide_armed(self, fam: int, cfam: int, addr: int, source: int | None,
                      health: HealthSnapshot) -> tuple[Answer, int]:
        """:meth:`decide` of a pool with arms: one hash picks the arm's view; the scope
        is never wider than the hashed block."""
        view = self.arm_views[arm_index(self.arm_cuts, arm_point(self.arm_seed, cfam, addr))]
        ans, scope = view.decide(fam, cfam, addr, source, health)
        if source == 0:
            return ans, 0
        unit = ARM_UNIT[cfam]
        return ans, scope if scope > unit else unit

    # ------------------------------------------------------------------ latency maps

    def compile_latency(self, book: LatencyBook
                        ) -> tuple[Maps, dict[int, list[LatencyChoice]],
                                   dict[IPNetwork, str]]:
        """The fallback maps with ``book``'s map painted over (and the fences
        multiplied in), the choices per family and the new incumbents.  Pure: safe to
        run off the serving thread; nothing changes until :meth:`install_latency`."""
        if book.map is None:
            return Maps(self.base_served, self.base_maps), {}, dict(book.incumbents)
        choices = latency_choices(self.pool, book.map, book.incumbents)
        by_fam = {f: [c for c in choices if c.net.version == f] for f in (4, 6)}
        maps = dict(self.base_maps)
        order = self.pool.referenced_pops()
        for f in (4, 6):
            maps[f] = overlay_latency(self.base_maps[f], by_fam[f], order)
        if maps[4] is not self.base_maps[4]:  # IPv4 inside IPv6: rows are per family
            maps[V4_IN_V6] = self.base_maps.get(V4_IN_V6, self.base_maps[4])
        incumbents = {c.net: c.pops[0] for c in choices}
        return Maps(self._fenced(maps), maps), by_fam, incumbents

    def install_latency(self, maps: Mapping[int, RankingMap],
                        choices: dict[int, list[LatencyChoice]], stale: bool,
                        source: object = None) -> None:
        """Serve ``maps`` (from :meth:`compile_latency` of the map ``source``), or the
        fallback while stale."""
        self.latency_maps, self.choices, self.compiled_from = dict(maps), choices, source
        self._latency_open = maps.open if isinstance(maps, Maps) else dict(maps)
        self.set_stale(stale)

    def set_stale(self, stale: bool) -> None:
        """The map went stale (or fresh again): switch between it and the fallback."""
        self.latency_stale = stale
        if stale or not self.latency_maps:
            self.maps, self.open_maps = self.base_served, self.base_maps
        else:
            self.maps, self.open_maps = self.latency_maps, self._latency_open
        self.invalidate()
        for view in self.views:
            view._adopt(self)

    def invalidate(self) -> None:
        """Forget every answer resolved so far (the maps or the spill state changed)."""
        self._caches.clear()
        self._token = None
        self._answers, self._amaps, self._fixed, self._resolved = {}, {}, {}, {}
        for view in self.views:
            view.invalidate()

    # ------------------------------------------------------------------ per query

    def _sync(self, health: HealthSnapshot) -> None:
        """Switch the caches to ``health``'s (kept for a few snapshots, so what-if
        questions about other snapshots do not throw the live answers away)."""
        spill = self.spill
        if spill is not None and spill.state is not self._spill_state:
            self._spill_sync(spill.state)
        token = health.cache_token
        if token == self._token:
            return
        caches = self._caches
        found = caches.pop(token, None)
        if found is None:
            found = ({}, {}, {})
        caches[token] = found
        while len(caches) > _CACHED_TOKENS:
            caches.popitem(last=False)
        self._token = token
        self._answers, self._amaps, self._fixed = found
        self._resolved = {}

    def _spill_sync(self, state: SpillState) -> None:
        self._spill_state = state
        token = state.tokens.get(self.name, ())
        if token != self._spill_token:
            self._spill_token = token
            self.invalidate()

    def decide(self, fam: int, cfam: int, addr: int, source: int | None,
               health: HealthSnapshot) -> tuple[Answer, int]:
        """(answer, ECS scope) for client ``addr`` of family ``cfam``, already masked to
        ``source`` (None: the source address of the query, 0: the client opted out)."""
        if self._token != health.cache_token or (
                self.spill is not None and self.spill.state is not self._spill_state):
            self._sync(health)
        if source == 0:
            return self.answer(fam, self.unknown.pops, health), 0
        if self.maps:
            amap = self._amaps.get((cfam, fam))
            if amap is None:
                amap = self.answer_map(cfam, fam, health)
            ans, scope = amap.scoped(addr)
            if ans.__class__ is Answer:  # (no cast(): it is a call, on every query)
                return ans, scope
            if ans.__class__ is Alias:  # cfam 6 only
                alias = cast(Alias, ans)
                depth = alias.depth
                v4 = (addr >> (96 - depth)) & 0xFFFFFFFF
                if alias.via is not None:
                    return self._via(fam, alias, addr, v4, scope, health)
                a4, scope4 = self.decide(fam, V4_IN_V6 if V4_IN_V6 in self.maps else 4, v4,
                                         source, health)
                # never wider than the IPv4 block's part that rules of IPv6 left alone
                return a4, max(depth + scope4, scope)
            hfam = 4 if cfam == V4_IN_V6 else cfam
            unit = SPILL_UNIT[hfam]
            if ans.__class__ is SpillAnswer:
                return cast(SpillAnswer, ans).pick(hfam, addr), max(scope, unit)
            return self._hashed(fam, hfam, addr, health, cast(Hashed, ans)), max(scope, unit)
        if fam in self._fixed:
            fixed = self._fixed[fam]
        else:
            fixed = self._fixed[fam] = self.how.untailored(self, fam, health)
        if fixed is not None:
            if fixed.__class__ is SpillAnswer:
                return cast(SpillAnswer, fixed).pick(cfam, addr), SPILL_UNIT[cfam]
            return cast(Answer, fixed), 0
        return self._hashed(fam, cfam, addr, health), SPILL_UNIT[cfam]

    def _via(self, fam: int, alias: Alias, addr: int, v4: int, scope: int,
             health: HealthSnapshot) -> tuple[Answer, int]:
        """IPv4 space inside IPv6 answered from the IPv4 map ``alias.via`` (fenced
        pools): its fences are the IPv4 address's; hashes take the /24 of that address,
        or (``hash6``) the client's IPv6 /56."""
        key = cast(int, alias.via)
        amap = self._amaps.get((key, fam))
        if amap is None:
            amap = self.answer_map(key, fam, health)
        ans, scope4 = amap.scoped(v4)
        scope = max(alias.depth + scope4, scope)
        if ans.__class__ is Answer:
            return cast(Answer, ans), scope
        hfam, haddr = (6, addr) if alias.hash6 else (4, v4)
        unit = SPILL_UNIT[6] if alias.hash6 else alias.depth + SPILL_UNIT[4]
        if ans.__class__ is SpillAnswer:
            return cast(SpillAnswer, ans).pick(hfam, haddr), max(scope, unit)
        return self._hashed(fam, hfam, haddr, health, cast(Hashed, ans)), max(scope, unit)

    def _hashed(self, fam: int, cfam: int, addr: int, health: HealthSnapshot,
                entry: Hashed | None = None) -> Answer:
        """weighted: the client's /24 (/56) picks its ranking (among the candidates
        its fences or arm left, when ``entry`` says)."""
        weighted = self.weighted if entry is None or entry.weighted is None else entry.weighted
        ranking = hashed_ranking(cfam, addr, weighted)
        got = self.resolved(fam, ranking, health, entry.fence if entry is not None else None)
        if got.__class__ is SpillAnswer:
            return cast(SpillAnswer, got).pick(cfam, addr)
        return cast(Answer, got)

    def answer_map(self, cfam: int, fam: int, health: HealthSnapshot) -> AnswerMap[object]:
        """The compiled map of ``cfam`` resolved under ``health`` (cached per snapshot)."""
        self._sync(health)
        found = self._amaps.get((cfam, fam))
        if found is None:
            def resolve(entry: Entry) -> object:
                if isinstance(entry, Alias):
                    # IPv4 inside IPv6: when every IPv4 client gets the same answer, so
                    # does the whole block, which may then merge with its neighbours.
                    key = entry.via if entry.via is not None else \
                        V4_IN_V6 if V4_IN_V6 in self.maps else 4
                    v4 = self.answer_map(key, fam, health)
                    one = v4.answers[0]
                    return one if len(v4) == 1 and (entry.hash6 or isinstance(one, Answer)) \
                        else entry
                if isinstance(entry, Hashed):
                    return entry
                return self.resolved(fam, entry.pops, health, entry.fence)

            found = AnswerMap.build(self.maps[cfam], resolve,
                                    (health.cache_token, self._spill_token), _seen_as)
            self._amaps[(cfam, fam)] = found
        return found

    def answer(self, fam: int, ranked: tuple[str, ...], health: HealthSnapshot,
               fence: FenceTag | None = None) -> Answer:
        """Health applied to a ranking (cached per ranking while the snapshot stands)."""
        key = (fam, ranked, fence)
        hit = self._answers.get(key)
        if hit is None or self._token != health.cache_token:
            self._sync(health)
            hit = self._answers[key] = self._compute(fam, ranked, health, fence)
        return hit

    def resolved(self, fam: int, ranked: tuple[str, ...], health: HealthSnapshot,
                 fence: FenceTag | None = None) -> Answer | SpillAnswer:
        """:meth:`answer`, or a :class:`SpillAnswer` when its first POP sheds blocks."""
        base = self.answer(fam, ranked, health, fence)
        if self.spill is None or base.all_down or not base.pops:
            return base
        key = (fam, ranked, fence)
        hit = self._resolved.get(key)
        if hit is None:
            hit = self._resolved[key] = self._spilled(fam, ranked, base, health, fence)
        return cast("Answer | SpillAnswer", hit)

    def _spilled(self, fam: int, ranked: tuple[str, ...], base: Answer,
                 health: HealthSnapshot, fence: FenceTag | None) -> Answer | SpillAnswer:
        state = self._spill_state or SpillState()
        pop = base.pops[0]
        share = state.share(self.name, pop)
        if share <= 0:
            return base
        after = ranked[ranked.index(pop) + 1:]  # (a fenced ranking: inside the fence)
        cands = tuple(q for q in after if self.eligible(q, fam) and health.state(q) == "up")
        receivers = state.receivers(self.name, cands)
        if not receivers:
            return base
        total = sum(w for _, w in receivers)
        cuts: list[float] = []
        alts: list[Answer] = []
        acc = 0.0
        for q, w in receivers:
            acc += w
            cuts.append(acc / total)
            alts.append(self.answer(fam, (q, *(x for x in ranked if x not in (pop, q))),
                                    health, fence))
        cuts[-1] = 1.0
        return SpillAnswer(base, pop, min(1.0, share), tuple(cuts), tuple(alts), receivers)

    # ------------------------------------------------------------------ health

    def _compute(self, fam: int, ranked: tuple[str, ...], health: HealthSnapshot,
                 fence: FenceTag | None = None) -> Answer:
        """Walk the ranking, skipping down/drained POPs and addresses.

        A POP without an address of the family is no candidate at all (not a failure);
        no candidate at all -> NODATA, or the fence's ``on_empty`` when the fence left
        no POP.  Nothing up -> the pool's all_down policy (inside the fence).
        """
        label = fence.label if fence is not None else None
        arm = self.label
        if not ranked and fence is not None and fence.emptied:
            return Answer(cast(Kind, fence.on_empty), (), None, self.ttl, (), (), False, arm,
                          label)
        cands = tuple(p for p in ranked if self.eligible(p, fam))
        if not cands:
            return Answer("nodata", (), None, self.ttl, (), (), False, arm, label)
        picked = self._pick(fam, cands, health)
        if picked is not None:
            addrs, cname, pops, skipped = picked
            kind: Kind = "cname" if cname is not None else "addresses"
            return Answer(kind, addrs, cname, self.ttl_fail if skipped else self.ttl, pops,
                          skipped, False, arm, label)
        if self.all_down == "fail_open":
            picked = self._pick(fam, cands, None)
            assert picked is not None
            addrs, cname, pops, _ = picked
            kind = "cname" if cname is not None else "addresses"
            return Answer(kind, addrs, cname, self.ttl_fail, pops, cands, True, arm, label)
        policy = cast(Kind, self.all_down)  # "nodata" or "servfail" here
        return Answer(policy, (), None, self.ttl_fail, (), cands, True, arm, label)

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


def _seen_as(answer: object) -> Hashable:
    """What decides whether two intervals merge: the records, the POPs counted and the
    fences (a fenced region never merges with another; a spilled answer: that of each
    of its outcomes, and the cuts between them)."""
    if isinstance(answer, Answer):
        return (answer.key, answer.pops, answer.fence)
    if isinstance(answer, SpillAnswer):
        return (_seen_as(answer.base), answer.share, answer.cuts,
                tuple(_seen_as(a) for a in answer.alts))
    return answer
