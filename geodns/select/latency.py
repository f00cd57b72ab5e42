"""The ``latency`` strategy: a latency map compiled into rankings painted over the
fallback strategy's compiled map, like ``nets`` rules.

Each prefix of the map ranks the POPs it measured by rtt, with one exception that
keeps noise from moving clients: the POP the prefix had before (its *incumbent*, kept
across map reloads in a :class:`LatencyBook`) stays first unless the fastest POP beats
it by more than the pool's ``margin``.  The fallback's ranking of the client follows
(without the measured POPs), so a prefix whose measured POPs are all down, or full
(spill), goes where the fallback would send it.  Prefixes nest: the longest one
holding a client decides.  Outside the map, and for every client once the map is older
than ``max_age``, the fallback decides alone.

Rows of one family apply to that family only (IPv4 clients inside IPv6, such as 6to4,
are steered by the fallback's IPv4 map), as ``nets`` rules do.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from geodns.config import Pool
from geodns.select.maps import Entry, Ranking, RankingMap, flatten_nets
from geodns.traffic.latency_map import LatencyMap, Measurement

__all__ = ["LatencyBook", "LatencyChoice", "latency_choices", "overlay_latency"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
RULE_PREFIX = "latency map"


@dataclass(eq=False)
class LatencyBook:
    """One latency pool's map: the last good version and the POP each prefix got.

    Lives as long as the server (across map and config reloads); ``incumbents`` is
    replaced (never edited in place) each time a map is compiled, so a compile off
    the serving thread never disturbs the rankings in use.
    """

    path: str
    map: LatencyMap | None = None
    incumbents: dict[IPNetwork, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the newest file's, when rejected

    def stale(self, max_age: float, now: float) -> bool:
        """No map, or older than ``max_age``: the fallback answers everyone."""
        if self.map is None:
            return True
        age = self.map.age(now)
        return age is not None and age > max_age


@dataclass(frozen=True, slots=True)
class LatencyChoice:
    """How one prefix ranks the POPs it measured, and why the first one is first."""

    net: IPNetwork
    pops: tuple[str, ...]  # measured POPs of the pool, the chosen one first
    measured: tuple[Measurement, ...]  # the same, fastest first, with their rtts
    kept: bool  # the incumbent stayed first although another measured faster

    @property
    def rule(self) -> str:
        return f"{RULE_PREFIX} {self.net}"


def latency_choices(pool: Pool, lmap: LatencyMap, incumbents: dict[IPNetwork, str]
                    ) -> list[LatencyChoice]:
    """Every prefix of ``lmap`` that measured a POP of ``pool``, ranked with the margin
    against ``incumbents`` (the previous choices)."""
    members = pool.referenced_pops()
    out: list[LatencyChoice] = []
    for net, ms in lmap:
        mine = tuple(m for m in ms if m.pop in members)
        if not mine:
            continue
        best = mine[0]
        prev = incumbents.get(net)
        held = next((m for m in mine if m.pop == prev), None)
        kept = False
        if held is not None and held is not best and not pool.margin.beats(best.rtt_ms,
                                                                             held.rtt_ms):
            best, kept = held, held.rtt_ms > mine[0].rtt_ms
        order = (best.pop, *(m.pop for m in mine if m is not best))
        out.append(LatencyChoice(net, order, mine, kept))
    return out


def overlay_latency(base: RankingMap, choices: Sequence[LatencyChoice],
                    pool_order: tuple[str, ...]) -> RankingMap:
    """``base`` with the choices of its family painted over (longest prefix wins).

    Where a prefix covers several intervals of ``base``, each part gets the prefix's
    POPs followed by that interval's ranking (``pool_order`` where the base ranks by
    a hash or by the IPv4 map)."""
    mine = [c for c in choices if c.net.version == base.family]
    if not mine:
        return base
    segments = flatten_nets([(int(c.net.network_address), c.net.prefixlen, i)
                             for i, c in enumerate(mine)], base.bits)
    entries: dict[Entry, int] = {e: i for i, e in enumerate(base.entries)}
    ordered = list(base.entries)
    starts = base.starts()
    rids = base.rids.tolist()
    full = 1 << base.bits
    painted: list[tuple[int, int, int]] = []
    for s, e, ci in segments:
        c = mine[ci]
        i = bisect_right(starts, s) - 1
        pos = s
        while pos < e:
            end = min(e, starts[i + 1] if i + 1 < len(starts) else full)
            below = ordered[rids[i]]
            rest = below.pops if isinstance(below, Ranking) else pool_order
            entry = Ranking(c.rule, (*c.pops, *(p for p in rest if p not in c.pops)))
            rid = entries.get(entry)
            if rid is None:
                rid = entries[entry] = len(ordered)
                ordered.append(entry)
            if painted and painted[-1][1] == pos and painted[-1][2] == rid:
                painted[-1] = (painted[-1][0], end, rid)
            else:
                painted.append((pos, end, rid))
            pos = end
            i += 1
    widened = RankingMap(base.family, base.hi, base.lo, base.rids, ordered)
    return widened.overlay(painted)
