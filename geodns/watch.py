"""File watching, in one place: "has this file (set of files) changed since I last
accepted it?" for zones, config, GeoIP, the admin file, latency maps and load feeds.

* :func:`file_key` / :func:`stat_key`: the one identity of a file's version (device,
  inode, size, mtime), so replacing a file (rename over it) and rewriting it in place
  both count, without hashing 50 MB.  :func:`file_keys`: the same for a set of files.
* :class:`WatchedFile`: one file's key as last accepted.  Owners with timing of their
  own keep their loop and ask it: the admin-state file (wakes at rule expiry), latency
  maps (polled with the spill tick), file load feeds (each at its own interval), an
  open GeoIP database (accepted at open time) and the zone loader's cache (a zone file
  and its $INCLUDEs, as parsed).
* :class:`FileWatcher`: the server's loop over zones, config, GeoIP and ASN databases:
  poll, let a change settle for one interval, then call back (reload) once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Final

import aiofiles.os

__all__ = ["WATCH_MAX_DELAY", "FileKey", "FileKeys", "FileWatcher", "WatchedFile",
           "file_key", "file_keys", "stat_key"]

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns
# A set of files: the key of each one that exists.  A missing file has no key (None),
# the same as a path not watched, so a file that appears or goes away is a change.
FileKeys = dict[str, FileKey]

WATCH_MAX_DELAY: Final = 10  # polls a change may keep changing before it is reloaded anyway


def file_key(path: str | Path) -> FileKey | None:
    """A cheap identity of the file's content version; None when it cannot be stat'ed.

    Replacing the file (rename over it: new inode) or rewriting it in place (size or
    mtime) changes the key, so a watcher can poll this instead of hashing 50 MB.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_key(st)


def stat_key(st: os.stat_result) -> FileKey:
    """The same identity from a stat result the caller already has (async stat)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def file_keys(paths: Iterable[str]) -> FileKeys:
    """The identity of a set of files: every one that exists, by path."""
    return {p: key for p in paths if (key := file_key(p)) is not None}


class WatchedFile:
    """One file and the key of the version its owner last accepted (None: none yet, or
    forgotten so the next look reads it whatever it is).

    The owner stats (:meth:`stat`, :meth:`astat` off the event loop) because it wants
    the stat or its error too (mtime, "cannot read"), then :meth:`take` says whether
    that version is new; :meth:`changed` is the question alone.
    """

    __slots__ = ("key", "path")

    def __init__(self, path: str | Path, key: FileKey | None = None) -> None:
        self.path = Path(path)
        self.key = key

    @property
    def seen(self) -> bool:
        """A version is accepted (the file existed when last looked at)."""
        return self.key is not None

    def stat(self) -> os.stat_result:
        """The file's stat now; OSError as os.stat raises it."""
        return os.stat(self.path)

    async def astat(self) -> os.stat_result:
        """:meth:`stat` without blocking the event loop."""
        return await aiofiles.os.stat(self.path)

    def changed(self) -> bool:
        """The file is no longer the accepted version (a missing file counts as None)."""
        return file_key(self.path) != self.key

    def accept(self, st: os.stat_result) -> None:
        """This version is the one in use now."""
        self.key = stat_key(st)

    def take(self, st: os.stat_result) -> bool:
        """Accept this version; True when it is not the one accepted before."""
        key = stat_key(st)
        if key == self.key:
            return False
        self.key = key
        return True

    def forget(self) -> None:
        """No version accepted: the next :meth:`take` is new whatever the file is."""
        self.key = None


class FileWatcher:
    """Polls a set of files every ``interval`` and calls ``on_change`` once a change has
    settled: the files looked the same at two polls in a row, or kept changing for
    ``max_delay`` polls (then a warning says so), so a burst of edits is one reload
    and a file that never stops changing cannot postpone it for ever.

    ``paths()`` is asked at every poll (zone files come and go; a reload may change the
    config's GeoIP path).  What counts as unchanged is the set as it was when the
    watcher was made, then as it was when ``on_change`` was called (so an edit made
    while it runs is seen at the next poll).
    """

    def __init__(self, paths: Callable[[], Iterable[str]],
                 on_change: Callable[[], Awaitable[object]], *, interval: float,
                 max_delay: int = WATCH_MAX_DELAY,
                 logger: logging.Logger | None = None) -> None:
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self.max_delay = max_delay
        self.log = logger or logging.getLogger("geodns")
        self.accepted: FileKeys = self.look()  # as loaded: edits from now on count
        self.pending: FileKeys | None = None  # the change seen, waiting to settle
        self.changing = 0  # polls since the first change not yet called back

    def look(self) -> FileKeys:
        """The files' keys now (stats every file: run it off the event loop)."""
        return self._look()[1]

    def _look(self) -> tuple[frozenset[str], FileKeys]:
        paths = frozenset(self.paths())
        return paths, file_keys(paths)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until ``stopping`` is set; an error in one poll is logged, never fatal."""
        while not stopping.is_set():
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # the watcher must outlive any one bad change
                self.log.exception("file watcher error; still watching")

    async def poll(self) -> bool:
        """One poll; True when ``on_change`` was called.  If it (or a look) raises,
        nothing is recorded and the next poll decides again."""
        loop = asyncio.get_running_loop()
        watched, now = await loop.run_in_executor(None, self._look)
        if now == self.accepted:
            self.pending, self.changing = None, 0
            return False
        if self.pending != now and self.changing < self.max_delay:  # let it settle
            self.pending, self.changing = now, self.changing + 1
            return False
        if self.pending != now:
            self.log.warning("files kept changing for %d polls; reloading anyway",
                             self.changing)
        await self.on_change()
        after_paths, after = await loop.run_in_executor(None, self._look)
        # The files as they were when the change was called back: one edited (or
        # removed) while the reload ran is a change at the next poll, never taken as
        # loaded.  Files first watched because of it (a new GeoIP path) count as now.
        self.accepted = {p: k for p, k in after.items() if p not in watched}
        self.accepted.update((p, k) for p, k in now.items() if p in after_paths)
        self.pending, self.changing = None, 0
        return True
