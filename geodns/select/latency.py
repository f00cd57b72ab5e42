"""The ``latency`` strategy: a latency map compiled into rankings painted over the
fallback strategy's compiled map, like ``nets`` rules.

Each prefix of the map ranks the pool's POPs by measured rtt, with one exception that
keeps noise from moving clients: the POP the prefix had before (its *incumbent*, kept
across map reloads in a :class:`LatencyBook`) stays first unless the fastest POP beats
it by more than the pool's ``margin``.  POPs the map did not measure for the prefix
follow in the pool's order, so a prefix whose measured POPs are all down is still
answered.  Prefixes nest: the longest one holding a client decides.  Outside the map,
and for every client once the map is older than ``max_age``, the fallback decides.

Rows of one family apply to that family only (IPv4 clients inside IPv6, such as 6to4,
are steered by the fallback's IPv4 map), as ``nets`` rules do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
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
    """How one prefix ranks its POPs, and why the first one is first."""

    net: IPNetwork
    pops: tuple[str, ...]
    measured: tuple[Measurement, ...]  # the pool's POPs the map measured, fastest first
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
        measured = {m.pop for m in mine}
        order = (best.pop, *(m.pop for m in mine if m is not best),
                 *(p for p in members if p not in measured))
        out.append(LatencyChoice(net, order, mine, kept))
    return out


def overlay_latency(base: RankingMap, choices: Iterable[LatencyChoice]) -> RankingMap:
    """``base`` with the choices of its family painted over (longest prefix wins)."""
    entries: dict[Entry, int] = {e: i for i, e in enumerate(base.entries)}
    ordered = list(base.entries)
    nets: list[tuple[int, int, int]] = []
    for c in choices:
        if c.net.version != base.family:
            continue
        entry = Ranking(c.rule, c.pops)
        rid = entries.get(entry)
        if rid is None:
            rid = entries[entry] = len(ordered)
            ordered.append(entry)
        nets.append((int(c.net.network_address), c.net.prefixlen, rid))
    if not nets:
        return base
    widened = RankingMap(base.family, base.hi, base.lo, base.rids, ordered)
    return widened.overlay(flatten_nets(nets, base.bits))
