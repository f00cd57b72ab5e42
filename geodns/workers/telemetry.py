"""Query log and dnstap with workers: one writer per node, in the supervisor.

N processes appending to one query log would interleave rotations (each rotates the
file under the others), and N dnstap file writers would interleave Frame Streams.  So a
worker queues what it would log exactly as a single server does (same sampling, same
bound, nothing on the query path but an append) and ships the raw items to the
supervisor every :data:`SHIP_EVERY` seconds; the supervisor's own :class:`QueryLog` and
:class:`Dnstap` format and write them.  A worker's drops (queue full) are counted by the
worker, the supervisor's (its queue full, write errors) by the supervisor; written lines
only by the supervisor, so the node's totals count each line once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from geodns.ops.dnstap import Dnstap
from geodns.ops.querylog import QueryLog
from geodns.tasks import cancel

__all__ = ["SHIP_EVERY", "ShippedDnstap", "ShippedQueryLog", "Shipper", "receive"]

log = logging.getLogger("geodns.workers")

SHIP_EVERY: Final = 0.05  # seconds between shipments (lines reach the file this much later)
Send = Callable[[list[Any], list[Any]], None]


class ShippedQueryLog(QueryLog):
    """A worker's query log: the query path is the normal one; nothing is written here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items: list[Any] = []

    def _put(self, item: Any) -> bool:
        if len(self.items) >= self.queue_size:
            self._drop(1)
            return False
        self.items.append(item)
        return True

    def take(self) -> list[Any]:
        items, self.items = self.items, []
        return items

    @property
    def pending(self) -> int:
        return len(self.items)

    async def start(self) -> None:
        """Nothing to open: the supervisor writes."""

    async def stop(self, timeout: float = 5.0) -> None:
        """Nothing to close: :class:`Shipper` ships what is left."""


class ShippedDnstap(Dnstap):
    """A worker's dnstap: :meth:`Dnstap.wrap` queues as usual; the supervisor encodes."""

    def take(self) -> list[Any]:
        items = list(self._queue)
        self._queue.clear()
        return items

    async def start(self) -> None:
        """No writer here: the supervisor writes."""

    async def stop(self, timeout: float = 5.0) -> None:
        """Nothing to close: :class:`Shipper` ships what is left."""


class Shipper:
    """Moves a worker's queued telemetry to the supervisor, in batches."""

    def __init__(self, qlog: QueryLog | None, tap: Dnstap | None, send: Send) -> None:
        self.qlog = qlog if isinstance(qlog, ShippedQueryLog) else None
        self.tap = tap if isinstance(tap, ShippedDnstap) else None
        self.send = send
        self._task: asyncio.Task[None] | None = None

    @property
    def needed(self) -> bool:
        return self.qlog is not None or self.tap is not None

    def start(self) -> None:
        if self.needed and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="geodns-telemetry")

    async def stop(self) -> None:
        """Stop and ship what is queued (the last answers of a draining worker)."""
        task, self._task = self._task, None
        await cancel(task)
        self.ship()

    def ship(self) -> None:
        lines = self.qlog.take() if self.qlog is not None else []
        taps = self.tap.take() if self.tap is not None else []
        if not lines and not taps:
            return
        try:
            self.send(lines, taps)
        except ConnectionError:  # the supervisor is gone: so is the file's writer
            if self.qlog is not None:
                self.qlog._drop(len(lines))
            if self.tap is not None:
                self.tap._drop(len(taps))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SHIP_EVERY)
            self.ship()


def receive(qlog: QueryLog | None, tap: Dnstap | None, lines: list[Any],
            taps: list[Any]) -> None:
    """The supervisor's side: queue a worker's items for its own writers."""
    if qlog is not None:
        qlog.enqueue(lines)
    if tap is not None and taps:
        tap.enqueue(taps)


def totals(qlog: QueryLog | None, tap: Dnstap | None) -> Mapping[str, int]:
    """The supervisor's own written/dropped counts (added to the workers' by NodeTotals)."""
    return {
        "querylog_written": qlog.written if qlog is not None else 0,
        "querylog_dropped": qlog.dropped if qlog is not None else 0,
        "dnstap_written": tap.written if tap is not None else 0,
        "dnstap_dropped": tap.dropped if tap is not None else 0,
    }
