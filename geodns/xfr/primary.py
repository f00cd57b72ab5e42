"""The primary's bookkeeping: journal every new version of each served zone, then
NOTIFY the configured secondaries.

The server calls :meth:`Primary.loaded` with every store it starts serving.  The
journal work (diffing a changed zone against the previous version, writing files)
runs in a thread, one store at a time; the newest pending store wins, so a burst of
reloads costs one pass.  NOTIFY goes out only after the journal holds the change, so
a secondary's IXFR that follows it finds the differences.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rrset

from geodns.xfr.journal import Journal
from geodns.zones.store import ZoneStore

log = logging.getLogger("geodns.xfr")

NotifyFn = Callable[[dns.rrset.RRset], None]


class Primary:
    """Journals per zone (in ``directory``) and the journaling task."""

    def __init__(self, directory: Path, max_bytes: int, on_change: NotifyFn) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.on_change = on_change
        self.journals: dict[dns.name.Name, Journal] = {}
        self._pending: ZoneStore | None = None
        self._task: asyncio.Task[None] | None = None

    def loaded(self, store: ZoneStore) -> None:
        """A store is now served: journal what changed, then NOTIFY (in the background)."""
        self._pending = store
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending is not None:
            store, self._pending = self._pending, None
            try:
                changed = await loop.run_in_executor(None, self.record, store)
            except Exception:  # a journal problem must not stop the next pass
                log.exception("journal update failed")
                continue
            for soa in changed:
                self.on_change(soa)

    def record(self, store: ZoneStore) -> list[dns.rrset.RRset]:
        """Journal every zone of ``store``; the SOAs of those whose serial changed."""
        changed = []
        journals = dict(self.journals)
        for origin, zone in store.zones.items():
            if getattr(zone, "expired", False):
                continue
            journal = journals.get(origin)
            if journal is None:
                journal = journals[origin] = Journal(self.directory, origin, self.max_bytes)
                journal.load()
            if journal.record(zone):
                changed.append(zone.soa)
        for origin in set(journals) - set(store.zones):
            del journals[origin]  # no longer served; its files stay for a comeback
        self.journals = journals
        return changed

    async def wait_idle(self) -> None:
        """Until the journal has caught up with the last store (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
