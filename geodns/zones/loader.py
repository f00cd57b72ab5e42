"""Load a zones directory, re-reading only the files that changed since the last load.

A reload after a one-record edit of one zone parses that zone's file (and its
``$INCLUDE``\\ s) and reuses every other Zone as it is: zones are immutable, so the new
store can share them with the old one.  Run it off the event loop (it reads files).
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from geodns.watch import WatchedFile, file_key
from geodns.zones.load import ZoneFileError, check_zone_file
from geodns.zones.store import ZoneStore, read_zone, zone_paths
from geodns.zones.zone import Zone

__all__ = ["ZoneLoader"]


@dataclass(frozen=True, slots=True)
class _Loaded:
    files: tuple[WatchedFile, ...]  # the file and its includes, as read
    zone: Zone


class ZoneLoader:
    """Keeps the zones it loaded, keyed by the identity of the files they came from."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._cache: dict[str, _Loaded] = {}
        self.parsed: list[str] = []  # files parsed by the last load (tests, logs)

    def load(self) -> ZoneStore:
        """Every zone file of the directory as a store; ZoneFileError with every problem
        (the previous zones stay cached for the next attempt)."""
        try:
            paths = zone_paths(self.directory)
        except OSError as exc:
            raise ZoneFileError([f"{self.directory}:0: cannot read zones directory: "
                                 f"{exc}"]) from None
        problems: list[str] = []
        zones: dict[dns.name.Name, Zone] = {}
        cache: dict[str, _Loaded] = {}
        parsed: list[str] = []
        for path in paths:
            loaded = self._cache.get(path)
            if loaded is None or any(f.changed() for f in loaded.files):
                try:
                    loaded = self._read(path)
                except ZoneFileError as exc:
                    problems += exc.problems
                    continue
                parsed.append(path)
            cache[path] = loaded
            origin = loaded.zone.origin
            if origin in zones:
                problems.append(f"{path}:1: zone {origin} is already served from "
                                f"{zones[origin].file}")
                continue
            zones[origin] = loaded.zone
        self.parsed = parsed
        if problems:
            self._cache.update(cache)
            raise ZoneFileError(problems)
        self._cache = cache
        return ZoneStore(zones.values())

    @staticmethod
    def _read(path: str) -> _Loaded:
        key = file_key(path)
        try:
            check_zone_file(path)
            chunks = []
            with open(path, encoding="utf-8") as f:
                # A MB at a time: decoding a large file in one call would hold the
                # interpreter (and the answers of the serving thread) for tens of ms.
                while chunk := f.read(1 << 20):
                    chunks.append(chunk)
            text = "".join(chunks)
            del chunks
        except (OSError, UnicodeDecodeError) as exc:
            raise ZoneFileError([f"{path}:0: cannot read: {exc}"]) from None
        zone = read_zone(path, text)
        del text
        files = (WatchedFile(path, key),
                 *(WatchedFile(inc, file_key(inc)) for inc in sorted(zone.includes)))
        return _Loaded(files, zone)
