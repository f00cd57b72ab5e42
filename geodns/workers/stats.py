"""Node-wide counters: every worker's, summed, each counted exactly once.

Workers count what they answer in their own :class:`~geodns.ops.metrics.Metrics`
and send the totals (:func:`export`) every second and when asked.  The supervisor
keeps the latest totals of each live worker process and, when a process exits,
folds its last totals into ``retired``, so node totals never go backwards when a
worker is restarted and no worker is left out or counted twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Final

from geodns.ops.metrics import Metrics

# Per-query counters (dicts of label tuple -> count) and plain totals of a worker.
TABLES: Final = ("queries", "answers", "fenced", "rrl", "cookies")
TOTALS: Final = ("querylog_written", "querylog_dropped", "dnstap_written", "dnstap_dropped",
                 "latency_sum")

Stats = dict[str, Any]


def export(m: Metrics) -> Stats:
    """One worker's totals since it started."""
    out: Stats = {name: dict(getattr(m, name)) for name in TABLES}
    for name in TOTALS:
        out[name] = getattr(m, name)
    out["latency_counts"] = list(m.latency_counts)
    out["cache"] = m.cache_counts()
    return out


def _add(into: Stats, more: Stats) -> None:
    for name in TABLES:
        table = into.setdefault(name, {})
        for key, n in more.get(name, {}).items():
            table[key] = table.get(key, 0) + n
    for name in TOTALS:
        into[name] = into.get(name, 0) + more.get(name, 0)
    counts = more.get("latency_counts", [])
    have = into.setdefault("latency_counts", [])
    have.extend([0] * (len(counts) - len(have)))
    for i, n in enumerate(counts):
        have[i] += n
    hits, misses = into.get("cache", (0, 0))
    more_hits, more_misses = more.get("cache", (0, 0))
    into["cache"] = (hits + more_hits, misses + more_misses)


class NodeTotals:
    """The supervisor's view: live workers' latest totals plus retired ones."""

    def __init__(self, metrics: Metrics,
                 local: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.metrics = metrics
        self.local = local  # the supervisor's own totals (its query log and dnstap writers)
        self.live: dict[int, Stats] = {}  # pid -> latest totals
        self.retired: Stats = {}
        metrics.cache_source = self.cache

    def update(self, pid: int, stats: Stats) -> None:
        self.live[pid] = stats
        self.publish()

    def retire(self, pid: int) -> None:
        """A worker process exited: its last totals stay in the node's."""
        last = self.live.pop(pid, None)
        if last is not None:
            _add(self.retired, last)
        self.publish()

    def total(self) -> Stats:
        out: Stats = {}
        _add(out, self.retired)
        for stats in list(self.live.values()):
            _add(out, stats)
        return out

    def publish(self) -> None:
        """Write the node totals into the supervisor's metrics (what /metrics shows)."""
        total = self.total()
        m = self.metrics
        for name in TABLES:
            table: defaultdict[Any, int] = defaultdict(int)
            table.update(total.get(name, {}))
            setattr(m, name, table)
        own = self.local() if self.local is not None else {}
        for name in TOTALS:
            setattr(m, name, total.get(name, 0) + own.get(name, 0))
        counts = total.get("latency_counts")
        if counts:
            m.latency_counts = counts
        self._cache = total.get("cache", (0, 0))

    _cache: tuple[int, int] = (0, 0)

    def cache(self) -> tuple[int, int]:
        return self._cache

    def queries_of(self, pid: int) -> int:
        return sum(self.live.get(pid, {}).get("queries", {}).values())
