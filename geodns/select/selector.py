"""POP selection: (pool, qtype, client, health) -> Selection, fast and with a sound ECS scope.

Layers, cheapest first:

1. exact cache: (pool, qtype, client, source_prefix) -> Selection, valid while the
   health snapshot's ``cache_token`` is unchanged.  A hit is one dict lookup.
2. untailored answers: when no client can get a different answer (failover, all,
   a single candidate, a geo pool whose rules all resolve alike), scope 0, no lookup.
3. block cache: every computed Selection is valid for the whole ``client/scope``
   block; a new client inside a known block is served without a GeoIP lookup (and,
   with ``lazy_widen``, that second client is what triggers widening the block).
4. miss: GeoIP lookup (a Python walk of the mmdb tree, records decoded once per
   data pointer), ranking (cached per location, health-independent), health
   applied to the ranking (cached per ranking and health), scope computed, widened.

The scope of an answer (the ECS SCOPE PREFIX-LENGTH) is proven, not guessed:

* the client's "cell" is the largest block on which every input of the decision is
  constant: the mmdb network (same record everywhere inside it) cut by the ``nets``
  trie (``NetTrie.walk``: never overlap an entry that does not contain the client;
  when a ``nets`` entry decides, the GeoIP network no longer matters), or the /24
  (/56) hashed by ``weighted``;
* then, like gdnsd, the block is widened one bit at a time while the sibling half
  provably gets the same answer key: every mmdb network under the sibling node is
  enumerated from the search tree (or, when ``nets`` cut the space, every cell is
  computed the same way as the client's); a work budget keeps a miss cheap;
* answers that do not depend on the client at all get scope 0.

Build a new Selector when the config or the GeoIP database changes: caches hold
decisions that depend on both.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, cast

from geodns.config import Config, Pool, Pop
from geodns.explain import AddressInfo, CandidateInfo, Explanation
from geodns.geo import GeoDB, Location, haversine_km
from geodns.health.snapshot import HealthSnapshot
from geodns.select.addr import bits_of, format_addr, format_net, mask, parse_client
from geodns.select.hrw import hrw_rank, pop_seed
from geodns.select.nets import NetTrie
from geodns.select.types import Kind, Selection

__all__ = ["Selector"]

QTYPE_A: Final = 1
QTYPE_AAAA: Final = 28
FAM_CNAME: Final = 0  # family key of CNAME pools: the answer is the same for every qtype
WEIGHTED_PREFIX: Final = {4: 24, 6: 56}  # stickiness unit of weighted pools
_UNLIMITED: Final = 1 << 30
LOOKUP_COST: Final = 8  # widening budget units per full GeoIP lookup (1 per tree network)


@dataclass(frozen=True, slots=True)
class _Ranking:
    """A health-independent ordering of candidate POPs for some class of clients."""

    rule: str
    pops: tuple[str, ...]
    distances: tuple[float, ...] | None = None  # parallel to pops (nearest)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A ranking with health applied: everything of a Selection except the scope."""

    kind: Kind
    addresses: tuple[str, ...]
    cname: str | None
    ttl: int
    pops: tuple[str, ...]
    key: Hashable
    skipped: tuple[str, ...]  # POPs ("pop") or addresses ("pop/addr") passed over
    all_down: bool  # the all_down policy decided

    def selection(self, scope: int) -> Selection:
        return Selection(self.kind, self.addresses, self.cname, self.ttl, scope, self.pops,
                         self.key)


@dataclass(slots=True)
class _Cell:
    """The decision for one client and the block (addr/scope) it provably holds on."""

    ranking: _Ranking
    answer: _Answer
    scope: int
    location: Location | None
    geo_prefix: int | None  # mmdb network length (None: not looked up)


_Entry = tuple[tuple[int, int], Selection]  # (health cache_token, selection)
_Block = tuple[tuple[int, int], Selection, bool]  # ... and "not widened yet"


class _Plan:
    """A pool compiled for fast selection."""

    def __init__(self, pool: Pool, config: Config) -> None:
        self.pool = pool
        self.name = pool.name
        self.strategy = pool.strategy
        self.ttl = pool.ttl
        self.ttl_fail = pool.ttl_on_failure
        self.answers = pool.answers if pool.answers is not None else _UNLIMITED
        self.all_down = pool.all_down
        refs = pool.referenced_pops()
        pops: dict[str, Pop] = {p: config.pops[p] for p in refs}
        self.pops = pops
        self.cname_mode = bool(refs) and all(pops[p].cname is not None for p in refs)
        self.addrs: dict[str, dict[int, tuple[str, ...]]] = {
            p: {4: pop.ipv4, 6: pop.ipv6} for p, pop in pops.items()
        }
        self.order = _Ranking("fixed order" if pool.strategy != "all" else "all POPs",
                              pool.pops)
        self.default = _Ranking("default", pool.default or pool.pops)
        self.tries: dict[int, NetTrie[_Ranking]] = {4: NetTrie(32), 6: NetTrie(128)}
        for net, lst in pool.nets:
            label = f'nets."{net}"'
            self.tries[net.version].insert(int(net.network_address), net.prefixlen,
                                           _Ranking(label, lst))
        self.has_nets = bool(pool.nets)
        self.coords = [(p, config.pops[p].lat, config.pops[p].lon) for p in pool.pops]
        self.weighted = [(p, pool.weights.get(p, 0.0), pop_seed(p)) for p in pool.pops]
        self.widen = pool.strategy in ("geo", "nearest")

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


class Selector:
    """Chooses POPs for pools; one instance per (config, GeoIP database)."""

    def __init__(self, config: Config, geo: GeoDB | None, *, cache_size: int = 100_000,
                 widen_budget: int = 32, lazy_widen: bool = True) -> None:
        """``widen_budget``: work allowed for widening one block's scope, in mmdb networks
        examined (a full lookup, needed when ``nets`` cut the space, costs LOOKUP_COST);
        0: the scope is the client's cell.  ``lazy_widen``: widen a block only when a
        second client lands in it, so one-off clients (random-subnet floods) pay only
        the basic miss; False widens on the first miss."""
        self.config = config
        self.geo = geo
        self.cache_size = cache_size
        self.widen_budget = widen_budget
        self.lazy_widen = lazy_widen
        self._plans = {name: _Plan(pool, config) for name, pool in config.pools.items()}
        self._exact: dict[tuple[object, ...], _Entry] = {}
        # (pool, qtype, family) -> [(shift, {addr >> shift: (token, Selection, pending)})]
        self._blocks: dict[tuple[str, int, int], list[tuple[int, dict[int, _Block]]]] = {}
        self._block_count = 0
        self._rankings: dict[tuple[object, ...], _Ranking] = {}
        self._answers: dict[tuple[object, ...], _Answer] = {}
        self._untailored: dict[tuple[object, ...], Selection | None] = {}

    # ------------------------------------------------------------------ public API

    def select(self, pool: str, qtype: int, client: str | bytes, source_prefix: int | None,
               health: HealthSnapshot) -> Selection:
        """The answer for one query (hot path; see the module docstring for the layers).

        ``client``: the ECS address (``bytes`` zero-padded to 4/16, or text; it is a cache
        key so not bytearray/memoryview) with its
        ``source_prefix``, else the source address with ``source_prefix=None``.
        ``source_prefix == 0`` means the client opted out: no location, scope 0.
        An unknown pool gives SERVFAIL; an unparsable client raises ValueError.
        """
        ck = (pool, qtype, client, source_prefix)
        hit = self._exact.get(ck)
        if hit is not None and hit[0] == health.cache_token:
            return hit[1]
        sel = self._select_miss(pool, qtype, client, source_prefix, health)
        if len(self._exact) >= self.cache_size:
            self._exact.clear()
        self._exact[ck] = (health.cache_token, sel)
        return sel

    def explain(self, pool: str, qtype: int, client: str | bytes, source_prefix: int | None,
                health: HealthSnapshot) -> Explanation:
        """Everything behind ``select`` for this client (not cached; not for the hot path)."""
        if not isinstance(client, str):
            client = format_addr(*parse_client(client))
        plan = self._plans.get(pool)
        if plan is None:
            sel = Selection.make("servfail", (), None, 0, 0, ())
            return Explanation(pool, "-", qtype, client, source_prefix, None, None,
                               "unknown pool", (), sel, "-", ("no such pool in the config",))
        cfam, addr = parse_client(client)
        if source_prefix is not None:
            addr = mask(cfam, addr, source_prefix)
        notes: list[str] = []
        loc: Location | None = None
        geo_net: str | None = None
        if self.geo is not None:
            loc, gplen = self.geo.lookup_int(cfam, addr)
            geo_net = format_net(cfam, addr, gplen)
        fam = plan.family(qtype)
        if fam is None:
            sel = self.select(pool, qtype, client, source_prefix, health)
            return Explanation(pool, plan.strategy, qtype, client, source_prefix, loc,
                               geo_net, "no data of this type in an address pool", (), sel,
                               format_net(cfam, addr, 0), ("NODATA: only A/AAAA exist here",))
        if source_prefix == 0:
            cell = self._unknown_cell(plan, fam, cfam, addr, health)
            notes.append("ECS source prefix 0: the client opted out, decided without "
                         "location, scope 0")
            scope = 0
        else:
            cell = self._cell(plan, fam, cfam, addr, health)
            scope = cell.scope
            untailored = self._untailored_selection(plan, fam, health)
            if untailored is not None:
                notes.append("every client gets this answer (untailored): scope 0")
                scope = 0
            else:
                notes.append(self._scope_reason(plan, cfam, addr, cell))
                if plan.widen and self.widen_budget > 0:
                    wide, used = self._widen(plan, fam, cfam, addr, cell.scope,
                                             cell.answer.key, health)
                    if wide < cell.scope:
                        lazy = " (select widens once a 2nd client hits the block)" \
                            if self.lazy_widen else ""
                        notes.append(f"widened /{cell.scope} -> /{wide}: sibling blocks get "
                                     f"the same answer (budget used {used}){lazy}")
                    scope = wide
        ans = cell.answer
        if ans.all_down:
            notes.append(f"no candidate is up: all_down = {plan.all_down}")
        if ans.skipped:
            notes.append(f"ttl_on_failure: passed over {', '.join(ans.skipped)}")
        sel = ans.selection(scope)
        cands = self._candidate_infos(plan, fam, cell, health)
        return Explanation(pool, plan.strategy, qtype, client, source_prefix, loc, geo_net,
                           cell.ranking.rule, cands, sel, format_net(cfam, addr, scope),
                           tuple(notes))

    def clear_caches(self) -> None:
        """Drop every cached decision (tests, benchmarks)."""
        for c in (self._exact, self._blocks, self._rankings, self._answers, self._untailored):
            c.clear()
        self._block_count = 0

    # ------------------------------------------------------------------ miss path

    def _select_miss(self, pool: str, qtype: int, client: str | bytes,
                     source_prefix: int | None, health: HealthSnapshot) -> Selection:
        plan = self._plans.get(pool)
        if plan is None:
            return Selection.make("servfail", (), None, 0, 0, ())
        fam = plan.family(qtype)
        if fam is None:
            return Selection.make("nodata", (), None, plan.ttl, 0, ())
        cfam, addr = parse_client(client)
        if source_prefix is not None:
            addr = mask(cfam, addr, source_prefix)
        untailored = self._untailored_selection(plan, fam, health)
        if untailored is not None:
            return untailored
        if source_prefix == 0:
            return self._unknown_cell(plan, fam, cfam, addr, health).answer.selection(0)
        token = health.cache_token
        tables = self._blocks.get((pool, qtype, cfam))
        if tables is None:
            tables = self._blocks[(pool, qtype, cfam)] = []
        widen = plan.widen and self.widen_budget > 0
        for shift, table in tables:
            hit = table.get(addr >> shift)
            if hit is not None and hit[0] == token:
                sel = hit[1]
                if hit[2] and widen:
                    # A second client in this block: it is popular, widening pays off.
                    scope, _ = self._widen(plan, fam, cfam, addr, sel.scope, sel.key, health,
                                           tables)
                    if scope < sel.scope:
                        sel = sel.with_scope(scope)
                        self._store_block(tables, cfam, addr, sel, token, False)
                    # the narrow block lies inside the wide one: it may answer with it
                    table[addr >> shift] = (token, sel, False)
                return sel
        cell = self._cell(plan, fam, cfam, addr, health)
        scope = cell.scope
        if widen and not self.lazy_widen:
            scope, _ = self._widen(plan, fam, cfam, addr, scope, cell.answer.key, health,
                                   tables)
        sel = cell.answer.selection(scope)
        self._store_block(tables, cfam, addr, sel, token, widen and self.lazy_widen)
        return sel

    def _store_block(self, tables: list[tuple[int, dict[int, _Block]]], cfam: int, addr: int,
                     sel: Selection, token: tuple[int, int], pending: bool) -> None:
        """Remember ``sel`` for every address of ``addr/sel.scope``; ``pending``: not
        widened yet (the next client landing in this block triggers it)."""
        if self._block_count >= self.cache_size:
            for other in self._blocks.values():
                for _, table in other:
                    table.clear()
            self._block_count = 0
        shift = bits_of(cfam) - sel.scope
        found: dict[int, _Block] | None = next(
            (t for tshift, t in tables if tshift == shift), None)
        if found is not None:
            table = found
        else:
            table = {}
            tables.append((shift, table))
            tables.sort(key=lambda t: t[0])  # longest scopes (most tables) first
        table[addr >> shift] = (token, sel, pending)
        self._block_count += 1

    def _lookup(self, cfam: int, addr: int) -> tuple[Location | None, int]:
        if self.geo is None:
            return None, 0  # no database: one unknown location over the whole space
        return self.geo.lookup_int(cfam, addr)

    def _cell(self, plan: _Plan, fam: int, cfam: int, addr: int,
              health: HealthSnapshot) -> _Cell:
        """Decision for ``addr`` plus the longest-prefix block it provably holds on."""
        strategy = plan.strategy
        loc: Location | None = None
        gplen: int | None = None
        if strategy == "geo":
            ranking: _Ranking | None = None
            bound = 0
            if plan.has_nets:
                ranking, mlen, bound = plan.tries[cfam].walk(addr)
                scope = max(mlen, bound)
            if ranking is None:
                loc, gplen = self._lookup(cfam, addr)
                ranking = self._geo_ranking(plan, loc)
                scope = max(gplen, bound)
        elif strategy == "nearest":
            loc, gplen = self._lookup(cfam, addr)
            ranking = self._nearest_ranking(plan, loc)
            scope = gplen
        elif strategy == "weighted":
            scope = WEIGHTED_PREFIX[cfam]
            prefix = addr >> (bits_of(cfam) - scope)
            ranking = _Ranking(f"weighted hash of {format_net(cfam, addr, scope)}",
                               hrw_rank((prefix << 1) | (cfam == 6), plan.weighted))
        else:
            ranking, scope = plan.order, 0
        return _Cell(ranking, self._answer(plan, fam, ranking, health), scope, loc, gplen)

    def _unknown_cell(self, plan: _Plan, fam: int, cfam: int, addr: int,
                      health: HealthSnapshot) -> _Cell:
        """Decision for a client that gave no usable address (ECS /0)."""
        if plan.strategy == "geo":
            ranking = plan.default
        elif plan.strategy == "nearest":
            ranking = self._nearest_ranking(plan, None)
        elif plan.strategy == "weighted":
            ranking = _Ranking("weighted hash of 0/0", hrw_rank(0, plan.weighted))
        else:
            ranking = plan.order
        return _Cell(ranking, self._answer(plan, fam, ranking, health), 0, None, None)

    def _geo_ranking(self, plan: _Plan, loc: Location | None) -> _Ranking:
        """Most specific rule: subdivision (smallest first) > country > continent > default."""
        if loc is None:
            return plan.default
        key = (plan.name, loc.continent, loc.country, loc.subdivisions)
        hit = self._rankings.get(key)
        if hit is not None:
            return hit
        pool = plan.pool
        ranking = plan.default
        for sub in reversed(loc.subdivisions):
            if sub in pool.subdivision:
                ranking = _Ranking(f'subdivision."{sub}"', pool.subdivision[sub])
                break
        else:
            if loc.country is not None and loc.country in pool.country:
                ranking = _Ranking(f"country.{loc.country}", pool.country[loc.country])
            elif loc.continent is not None and loc.continent in pool.continent:
                ranking = _Ranking(f"continent.{loc.continent}",
                                   pool.continent[loc.continent])
        self._remember_ranking(key, ranking)
        return ranking

    def _nearest_ranking(self, plan: _Plan, loc: Location | None) -> _Ranking:
        """POPs by great-circle distance (ties: config order); default without location."""
        if loc is None or loc.lat is None or loc.lon is None:
            return _Ranking("no location: default list", plan.default.pops)
        key = (plan.name, loc.lat, loc.lon)
        hit = self._rankings.get(key)
        if hit is not None:
            return hit
        dist = sorted((haversine_km(loc.lat, loc.lon, plat, plon), i, name)
                      for i, (name, plat, plon) in enumerate(plan.coords))
        ranking = _Ranking("nearest by great-circle distance", tuple(n for _, _, n in dist),
                           tuple(d for d, _, _ in dist))
        self._remember_ranking(key, ranking)
        return ranking

    def _remember_ranking(self, key: tuple[object, ...], ranking: _Ranking) -> None:
        if len(self._rankings) >= self.cache_size:
            self._rankings.clear()
        self._rankings[key] = ranking

    # ------------------------------------------------------------------ health

    def _answer(self, plan: _Plan, fam: int, ranking: _Ranking,
                health: HealthSnapshot) -> _Answer:
        key = (plan.name, fam, ranking.pops, health.cache_token)
        hit = self._answers.get(key)
        if hit is None:
            hit = self._compute_answer(plan, fam, ranking.pops, health)
            if len(self._answers) >= self.cache_size:
                self._answers.clear()
            self._answers[key] = hit
        return hit

    def _compute_answer(self, plan: _Plan, fam: int, ranked: tuple[str, ...],
                        health: HealthSnapshot) -> _Answer:
        """Walk the ranking, skipping down/drained POPs and addresses.

        A POP without an address of the family is no candidate at all (not a failure);
        no candidate at all -> NODATA.  Nothing up -> the pool's all_down policy.
        """
        cands = tuple(p for p in ranked if plan.eligible(p, fam))
        if not cands:
            return _answer_of("nodata", (), None, plan.ttl, (), (), False)
        picked = self._pick(plan, fam, cands, health)
        if picked is not None:
            addrs, cname, pops, skipped = picked
            ttl = plan.ttl_fail if skipped else plan.ttl
            kind: Kind = "cname" if cname is not None else "addresses"
            return _answer_of(kind, addrs, cname, ttl, pops, skipped, False)
        skipped_all = tuple(cands)
        if plan.all_down == "fail_open":
            picked = self._pick(plan, fam, cands, None)
            assert picked is not None
            addrs, cname, pops, _ = picked
            kind = "cname" if cname is not None else "addresses"
            return _answer_of(kind, addrs, cname, plan.ttl_fail, pops, skipped_all, True)
        policy = cast(Kind, plan.all_down)  # "nodata" or "servfail" here
        return _answer_of(policy, (), None, plan.ttl_fail, (), skipped_all, True)

    def _pick(self, plan: _Plan, fam: int, cands: tuple[str, ...],
              health: HealthSnapshot | None
              ) -> tuple[tuple[str, ...], str | None, tuple[str, ...], tuple[str, ...]] | None:
        """First ``answers`` usable addresses (or the first usable CNAME) in ranking order;
        None when nothing is usable.  ``health=None``: treat everything as up."""
        addrs: list[str] = []
        pops: list[str] = []
        skipped: list[str] = []
        want = plan.answers
        for pop in cands:
            if health is not None and health.state(pop) != "up":
                skipped.append(pop)
                continue
            if fam == FAM_CNAME:
                return (), plan.pops[pop].cname, (pop,), tuple(skipped)
            took = False
            for a in plan.addrs[pop][fam]:
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

    def _untailored_selection(self, plan: _Plan, fam: int,
                              health: HealthSnapshot) -> Selection | None:
        """The scope-0 Selection when no client can get a different answer, else None."""
        key = (plan.name, fam, health.cache_token)
        if key in self._untailored:
            return self._untailored[key]
        result = self._compute_untailored(plan, fam, health)
        if len(self._untailored) >= self.cache_size:
            self._untailored.clear()
        self._untailored[key] = result
        return result

    def _compute_untailored(self, plan: _Plan, fam: int,
                            health: HealthSnapshot) -> Selection | None:
        strategy = plan.strategy
        if strategy in ("failover", "all"):
            return self._answer(plan, fam, plan.order, health).selection(0)
        if strategy == "geo":
            # Every client gets one of these lists; compare what each resolves to.
            pool = plan.pool
            lists = [plan.default.pops]
            for table in (pool.continent, pool.country, pool.subdivision):
                lists.extend(table.values())
            lists.extend(lst for _, lst in pool.nets)
            answers = {self._answer(plan, fam, _Ranking("", lst), health).key
                       for lst in set(lists)}
            if len(answers) == 1:
                return self._answer(plan, fam, plan.default, health).selection(0)
            return None
        # nearest / weighted: rankings are permutations of the pool's POPs.  The answer
        # is client-independent when at most one candidate exists, or when none is up
        # and the policy ignores the ranking (nodata / servfail).
        full = self._answer(plan, fam, plan.order, health)
        cands = [p for p in plan.pool.pops if plan.eligible(p, fam)]
        same = len(cands) <= 1 or (full.all_down and plan.all_down != "fail_open")
        if not same:
            return None
        if strategy == "nearest":
            other = self._answer(plan, fam, _Ranking("", plan.default.pops), health)
            if other.key != full.key:
                return None
        return full.selection(0)

    # ------------------------------------------------------------------ scope

    def _widen(self, plan: _Plan, fam: int, cfam: int, addr: int, scope: int,
               key: Hashable, health: HealthSnapshot,
               tables: list[tuple[int, dict[int, _Block]]] | None = None) -> tuple[int, int]:
        """Shorten ``scope`` while the sibling half of ``addr/scope`` provably gets ``key``.

        Without ``nets`` of this family a cell is exactly an mmdb network, so the sibling
        block is checked by enumerating its networks straight from the search tree (one
        budget unit each).  Otherwise it is enumerated cell by cell with full lookups
        (LOOKUP_COST units each; those cells go into the block cache ``tables``).  Any
        different answer, or running out of budget, stops.  Returns (scope, units used).
        """
        bits = bits_of(cfam)
        budget = self.widen_budget
        used = 0
        geo = self.geo
        path = geo.tree_path(cfam, addr) if geo is not None and plan.tries[cfam].size == 0 \
            else None
        while scope > 0:
            shift = bits - scope
            start = ((addr >> shift) ^ 1) << shift
            if path is not None:
                assert geo is not None
                nets = geo.sibling_networks(cfam, addr, path, scope, budget - used)
                if nets is None:
                    break
                used += len(nets)
                ranking_of = (self._geo_ranking if plan.strategy == "geo"
                              else self._nearest_ranking)
                if any(self._answer(plan, fam, ranking_of(plan, loc), health).key != key
                       for _, _, loc in nets):
                    break
                scope -= 1
                continue
            end = start + (1 << shift)
            x = start
            ok = True
            while x < end:
                if used + LOOKUP_COST > budget:
                    ok = False
                    break
                used += LOOKUP_COST
                cell = self._cell(plan, fam, cfam, x, health)
                if tables is not None:
                    self._store_block(tables, cfam, x, cell.answer.selection(cell.scope),
                                      health.cache_token, False)
                if cell.answer.key != key:
                    ok = False
                    break
                if cell.scope <= scope:
                    break  # this cell covers the whole sibling block
                cshift = bits - cell.scope
                x = ((x >> cshift) + 1) << cshift
            if not ok:
                break
            scope -= 1
        return scope, used

    def _scope_reason(self, plan: _Plan, cfam: int, addr: int, cell: _Cell) -> str:
        if plan.strategy == "weighted":
            return f"scope /{cell.scope}: weighted pools hash the client's /{cell.scope}"
        if cell.geo_prefix is None and plan.strategy == "geo":
            return f"scope /{cell.scope}: decided by {cell.ranking.rule} (and the other nets " \
                   "entries it must not overlap)"
        if cell.geo_prefix is not None and cell.scope > cell.geo_prefix:
            return (f"scope /{cell.scope}: GeoIP network /{cell.geo_prefix} narrowed so it "
                    "does not overlap a nets entry")
        return f"scope /{cell.scope}: the GeoIP network of the client"

    # ------------------------------------------------------------------ explain

    def _candidate_infos(self, plan: _Plan, fam: int, cell: _Cell,
                         health: HealthSnapshot) -> tuple[CandidateInfo, ...]:
        ans = cell.answer
        ranking = cell.ranking
        out = []
        weights = dict((n, w) for n, w, _ in plan.weighted)
        for i, pop in enumerate(ranking.pops):
            eligible = plan.eligible(pop, fam)
            addr_infos: list[AddressInfo] = []
            if fam != FAM_CNAME:
                for a in plan.addrs[pop][fam]:
                    k = (pop, a)
                    addr_infos.append(AddressInfo(
                        a, health.address_state(pop, a), health.real_state(k),
                        health.forced(k), pop in ans.pops and a in ans.addresses))
            out.append(CandidateInfo(
                rank=i + 1, pop=pop, state=health.state(pop), real=health.real_state(pop),
                forced=health.forced(pop), eligible=eligible, chosen=pop in ans.pops,
                skipped=pop in ans.skipped or any(s.startswith(pop + "/") for s in ans.skipped),
                distance_km=ranking.distances[i] if ranking.distances is not None else None,
                weight=weights.get(pop) if plan.strategy == "weighted" else None,
                addresses=tuple(addr_infos),
                cname=plan.pops[pop].cname if fam == FAM_CNAME else None,
            ))
        return tuple(out)


def _answer_of(kind: Kind, addrs: tuple[str, ...], cname: str | None, ttl: int,
               pops: tuple[str, ...], skipped: tuple[str, ...], all_down: bool) -> _Answer:
    return _Answer(kind, addrs, cname, ttl, pops, (kind, addrs, cname, ttl), skipped, all_down)

