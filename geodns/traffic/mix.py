"""The recent answer mix: a bounded sample of who asked which pool, for predictions.

Guards, ``PUT /overrides?dry_run=1`` and ``geodns simulate --from`` re-run selection
for "the live traffic mix of the last minutes".  The answer path hands 1 in ``every``
steered answers to :meth:`MixSampler.take` (a countdown in the handler; nothing else
per query), which keeps at most ``size`` of them per minute by reservoir sampling
(each kept one stands for an equal part of the minute's queries) and picks the next
``every`` so that about ``size`` answers a minute reach it: at 10 qps every answer is
looked at, at 100k qps one in about 3000 (within a minute ``every`` doubles each time
another ``size`` answers arrive past twice ``size``, so a burst costs little from its
first second).  Memory: ``minutes`` x ``size`` entries.

A sample is (pool, qtype, client): the ECS address and source prefix when the query
carried ECS, else the source address, exactly what the selector was given.
"""

from __future__ import annotations

import ipaddress
import random
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from geodns.wire import decode as wd

__all__ = ["MixEntry", "MixSampler"]

SIZE: Final = 2048  # samples kept per minute
MINUTES: Final = 5  # "the last minutes"

Sample = tuple[str, int, "str | bytes", "int | None"]  # pool, qtype, client, ECS source


@dataclass(frozen=True, slots=True)
class MixEntry:
    """One client of the recent mix and its estimated queries per second."""

    pool: str
    qtype: int
    client: str  # an address, or with ``prefix`` an ECS subnet
    prefix: int | None
    qps: float

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "qtype": self.qtype, "client": self.client,
                "prefix": self.prefix, "qps": self.qps}


class _Minute:
    __slots__ = ("kept", "minute", "seen", "weight")

    def __init__(self, minute: int) -> None:
        self.minute = minute
        self.kept: list[Sample] = []
        self.seen = 0  # samples offered
        self.weight = 0  # queries they stand for


class MixSampler:
    """A per-minute reservoir of recent steered answers (see the module docstring)."""

    def __init__(self, size: int = SIZE, minutes: int = MINUTES,
                 clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self.size = size
        self.every = 1
        self.clock = clock
        self.started = clock()
        self._rand = random.Random(seed)
        self._minutes: deque[_Minute] = deque(maxlen=minutes + 1)
        self._double_at = 2 * size  # samples this minute at which ``every`` doubles

    def take(self, pool: str, data: bytes, client: str) -> int:
        """Hot path hook (1 in ``every`` steered answers): keep this one maybe.
        Returns how many answers to let pass before the next call."""
        now_min = int(self.clock() // 60)
        mins = self._minutes
        if not mins or mins[-1].minute != now_min:
            if mins:  # aim at ``size`` samples a minute from the last minute's rate
                self.every = max(1, mins[-1].weight // self.size)
            mins.append(_Minute(now_min))
            self._double_at = 2 * self.size
        m = mins[-1]
        m.seen += 1
        m.weight += self.every
        if m.seen >= self._double_at:  # busier than ``every`` assumed: look at fewer
            self.every *= 2
            self._double_at += self.size
        q = wd.decode(data)
        if q is None or q.error:
            return self.every
        sample: Sample = (pool, q.qtype, q.ecs_addr, q.ecs_source) if q.ecs is not None \
            else (pool, q.qtype, client, None)
        if len(m.kept) < self.size:
            m.kept.append(sample)
        else:
            j = self._rand.randrange(m.seen)
            if j < self.size:
                m.kept[j] = sample
        return self.every

    def add(self, pool: str, qtype: int, client: str | bytes, prefix: int | None,
            count: int = 1) -> None:
        """Record ``count`` answers directly (tests and tools; not sampled)."""
        now_min = int(self.clock() // 60)
        if not self._minutes or self._minutes[-1].minute != now_min:
            self._minutes.append(_Minute(now_min))
        m = self._minutes[-1]
        for _ in range(count):
            m.seen += 1
            m.weight += 1
            m.kept.append((pool, qtype, client, prefix))

    def entries(self, minutes: int = MINUTES) -> tuple[list[MixEntry], float]:
        """The mix of the last ``minutes`` (the current one included) aggregated per
        client, with qps, and the seconds it covers."""
        now = self.clock()
        first = int(now // 60) - minutes + 1
        counts: dict[tuple[str, int, str, int | None], float] = defaultdict(float)
        start = now
        for m in self._minutes:
            if m.minute < first or not m.kept:
                continue
            start = min(start, m.minute * 60)
            each = m.weight / len(m.kept)
            for pool, qtype, client, prefix in m.kept:
                counts[(pool, qtype, _client_text(client), prefix)] += each
        covered = max(1.0, now - max(start, self.started))
        out = [MixEntry(pool, qtype, client, prefix, n / covered)
               for (pool, qtype, client, prefix), n in sorted(counts.items(),
                                                               key=lambda kv: -kv[1])]
        return out, covered


def _client_text(client: str | bytes) -> str:
    """An ECS address (packed, masked by the sender) or a source address, as text."""
    return str(ipaddress.ip_address(client)) if isinstance(client, bytes) else client
