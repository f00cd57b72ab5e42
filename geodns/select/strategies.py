"""One strategy, one place: how each pool strategy ranks clients and says why.

A pool's strategy decides, once per config, which ranking maps are compiled
(:meth:`Strategy.compile`), what a client that gave no address gets
(:meth:`Strategy.unknown`), what a pool without maps answers everyone
(:meth:`Strategy.flat`, :meth:`Strategy.untailored`), and the strategy's part of
``explain``.  The per-query step (:meth:`geodns.select.plan.Plan.decide`) only looks
up what these built.  Its options are read with the rest of the config
(:data:`geodns.config.pools.STRATEGY_OPTIONS`, the config being the one module every
other imports); :data:`STRATEGIES` and that table name the same strategies (a test
holds them together).

``latency`` is not a ranking of its own: it paints a measured map over its fallback
strategy (:mod:`geodns.select.latency`); :class:`Latency` holds its explain text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, Final

from geodns.config import Config, Pool
from geodns.geoip.asn_tables import AsnTables
from geodns.geoip.tables import GeoTables
from geodns.health.snapshot import HealthSnapshot
from geodns.select.addr import bits_of, format_net
from geodns.select.compile import NO_LOCATION_RULE, compile_geo, compile_nearest
from geodns.select.hrw import hrw_rank, pop_seed
from geodns.select.latency import RULE_PREFIX
from geodns.select.maps import Entry, Hashed, Ranking, RankingMap
from geodns.select.spill import SPILL_UNIT

if TYPE_CHECKING:
    from geodns.select.plan import Answer, Plan
    from geodns.select.spill import SpillAnswer

__all__ = ["STRATEGIES", "V4_IN_V6", "WEIGHTED_PREFIX", "Latency", "Strategy",
           "hashed_ranking", "kind_of", "pool_weights", "strategy_of"]

V4_IN_V6: Final = -4  # map key: IPv4 space reached from IPv6 clients (without IPv4 nets)
WEIGHTED_PREFIX: Final = SPILL_UNIT  # stickiness unit of weighted pools: /24, /56


def pool_weights(pool: Pool) -> tuple[tuple[str, float, int], ...]:
    """(POP, weight, seed) of each of the pool's POPs: what weighted hashing ranks."""
    return tuple((p, pool.weights.get(p, 0.0), pop_seed(p)) for p in pool.pops)


def hashed_ranking(cfam: int, addr: int,
                   weighted: tuple[tuple[str, float, int], ...]) -> tuple[str, ...]:
    """The weighted order of the client's /24 (/56): rendezvous hashing of the block,
    so a client keeps its POP while the weights stand."""
    prefix = addr >> (bits_of(cfam) - WEIGHTED_PREFIX[cfam])
    return hrw_rank((prefix << 1) | (cfam == 6), weighted)


class Strategy:
    """What every strategy answers unless it says otherwise: every client ranked alike,
    in the pool's order, without maps."""

    name: ClassVar[str]
    uses_geoip: ClassVar[bool] = False  # compiled from the GeoIP database's networks
    hashed: ClassVar[bool] = False  # each client block ranked by its own hash
    order_rule: ClassVar[str] = "fixed order"

    def compile(self, plan: Plan, config: Config, tables: GeoTables | None,
                asn: AsnTables | None) -> dict[int, RankingMap]:
        """The ranking maps by family ({}: no map, every client is ranked alike)."""
        return {}

    def flat_entry(self, plan: Plan) -> Entry:
        """What one interval covering everyone holds, when a map is needed anyway
        (a latency map or fences are painted over it)."""
        return plan.order

    def unknown(self, plan: Plan) -> Ranking:
        """The ranking of a client that gave no usable address (ECS source /0)."""
        return plan.order

    def flat(self, plan: Plan, cfam: int, addr: int, entry: Hashed | None = None,
             full: bool = False) -> Ranking:
        """The ranking of a client of a pool without maps (explain)."""
        return plan.order

    def open_ranking(self, plan: Plan, cfam: int, addr: int, ranking: Ranking) -> Ranking:
        """A map-less pool's ranking before an arm cut it (explain)."""
        return ranking

    def untailored(self, plan: Plan, fam: int,
                   health: HealthSnapshot) -> Answer | SpillAnswer | None:
        """The answer of a pool without maps when no client can get another one, else
        None (the client's hash decides)."""
        return plan.resolved(fam, plan.order.pops, health)

    def flat_note(self, scope: int) -> str | None:
        """explain: why a map-less pool answers with this ECS scope."""
        return None


class Failover(Strategy):
    """``failover``: the pool's POPs in order; the first one up answers."""

    name = "failover"


class All(Strategy):
    """``all``: every POP, in the pool's order (answers = all of them by default)."""

    name = "all"
    order_rule = "all POPs"


class Geo(Strategy):
    """``geo``: continent/country/subdivision rules, ``asn.N`` and ``nets`` overrides,
    compiled into a map over the GeoIP networks."""

    name = "geo"
    uses_geoip = True

    def compile(self, plan: Plan, config: Config, tables: GeoTables | None,
                asn: AsnTables | None) -> dict[int, RankingMap]:
        maps: dict[int, RankingMap] = {}
        maps[4], base4 = compile_geo(plan.pool, tables, 4, asn)
        maps[6], _ = compile_geo(plan.pool, tables, 6, asn)
        if base4 is not maps[4]:
            maps[V4_IN_V6] = base4  # IPv4 inside IPv6: no IPv4 nets rules
        return maps

    def unknown(self, plan: Plan) -> Ranking:
        return plan.default


class Nearest(Strategy):
    """``nearest``: the pool's POPs by great-circle distance from the client's
    located network."""

    name = "nearest"
    uses_geoip = True

    def compile(self, plan: Plan, config: Config, tables: GeoTables | None,
                asn: AsnTables | None) -> dict[int, RankingMap]:
        return {f: compile_nearest(plan.pool, config, tables, f) for f in (4, 6)}

    def unknown(self, plan: Plan) -> Ranking:
        return Ranking(NO_LOCATION_RULE, plan.default.pops)


class Weighted(Strategy):
    """``weighted``: rendezvous hashing of the client's /24 (/56) over the POPs'
    weights: sticky per block, shares as weighted."""

    name = "weighted"
    hashed = True

    def flat_entry(self, plan: Plan) -> Entry:
        return Hashed()

    def unknown(self, plan: Plan) -> Ranking:
        return Ranking("weighted hash of 0/0", hrw_rank(0, plan.weighted))

    def flat(self, plan: Plan, cfam: int, addr: int, entry: Hashed | None = None,
             full: bool = False) -> Ranking:
        """The client's /24 (/56) ranking: among the candidates ``entry`` left (fences,
        arms), or (``full``) all of the pool's."""
        cands = pool_weights(plan.pool) if full else entry.weighted \
            if entry is not None and entry.weighted is not None else plan.weighted
        return Ranking(f"weighted hash of {format_net(cfam, addr, WEIGHTED_PREFIX[cfam])}",
                       hashed_ranking(cfam, addr, cands),
                       entry.fence if entry is not None else None)

    def open_ranking(self, plan: Plan, cfam: int, addr: int, ranking: Ranking) -> Ranking:
        return self.flat(plan, cfam, addr, full=True)

    def untailored(self, plan: Plan, fam: int,
                   health: HealthSnapshot) -> Answer | SpillAnswer | None:
        """At most one candidate, or nothing up and a policy that ignores the ranking."""
        full = plan.answer(fam, plan.order.pops, health)
        cands = [p for p in plan.order.pops if plan.eligible(p, fam)]
        if len(cands) <= 1 or (full.all_down and plan.all_down != "fail_open"):
            return full
        return None

    def flat_note(self, scope: int) -> str | None:
        return f"scope /{scope}: weighted pools hash the client's /{scope}" if scope else None


STRATEGIES: Final[dict[str, Strategy]] = {
    s.name: s for s in (Geo(), Nearest(), Failover(), Weighted(), All())}


def kind_of(pool: Pool) -> str:
    """The strategy whose rules rank a pool's clients (a latency pool's fallback)."""
    if pool.strategy == "latency":
        return pool.fallback or "nearest"
    return pool.strategy


def strategy_of(pool: Pool) -> Strategy:
    return STRATEGIES[kind_of(pool)]


class Latency:
    """``latency``'s explain text: which measured row decided, or why the fallback did."""

    @staticmethod
    def notes(plan: Plan, ranking: Ranking) -> list[str]:
        if plan.strategy != "latency":
            return []
        book = plan.latency
        fallback = f"the fallback ({plan.kind}) decides"
        if book is None or book.map is None:
            return [f"no latency map loaded: {fallback}"]
        if plan.latency_stale:
            age = book.map.age(time.time())
            return [f"latency map {book.path} is {age or 0:.0f}s old, older than max_age "
                    f"{plan.pool.max_age:g}s: {fallback}"]
        if not ranking.rule.startswith(RULE_PREFIX):
            return [f"the latency map has no row for this client: {fallback}"]
        net = ranking.rule[len(RULE_PREFIX):].strip()
        choice = next((c for f in plan.choices.values() for c in f if str(c.net) == net),
                      None)
        if choice is None:
            return []
        rtts = ", ".join(f"{m.pop} {m.rtt_ms:g}ms ({m.samples} samples)"
                         for m in choice.measured)
        notes = [f"latency map {net}: {rtts}"]
        if choice.kept:
            fastest = choice.measured[0]
            held = next(m for m in choice.measured if m.pop == choice.pops[0])
            notes.append(f"margin {plan.pool.margin}: {fastest.pop} ({fastest.rtt_ms:g}ms) "
                         f"does not beat {held.pop} ({held.rtt_ms:g}ms) by more than the "
                         f"margin, so {held.pop} stays first")
        return notes
