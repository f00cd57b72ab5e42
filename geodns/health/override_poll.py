"""Reading the admin-state file: only when it changed, never blocking the loop.

The file is stat'ed on every poll and read with aiofiles only when its identity (device,
inode, size, mtime) moved: a :class:`geodns.watch.WatchedFile`; its text is parsed by
:mod:`geodns.health.override_rules`.  What to do with the result (judge it, apply it,
keep the old rules) is the caller's business: :class:`geodns.health.overrides.Overrides`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import aiofiles

from geodns.health.override_rules import OverrideError, OverrideRule, parse_overrides
from geodns.watch import WatchedFile

__all__ = ["AdminFile", "FileRead", "read_rules"]

log = logging.getLogger("geodns.health")



@dataclass(frozen=True, slots=True)
class FileRead:
    """What one poll found: the file gone (``removed``), rejected (``problems``), or
    parsed (``rules`` with the relative-time ``anchors`` to keep once accepted)."""

    removed: bool = False
    was_seen: bool = False  # removed: the file existed at the previous poll
    problems: list[str] = field(default_factory=list)
    rules: list[OverrideRule] = field(default_factory=list)
    anchors: dict[str, float] = field(default_factory=dict)
    text: str = ""


class AdminFile:
    """One admin-state file and what was last seen of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.anchors: dict[str, float] = {}  # of the rules in force (see parse_overrides)
        self.watched = WatchedFile(path)  # the version last read

    def forget(self) -> None:
        """Read it again at the next poll, whatever its fingerprint."""
        self.watched.forget()

    async def read_if_changed(self) -> FileRead | None:
        """The file's new content, or None when nothing changed (or it cannot be
        stat'ed right now: logged, tried again next poll)."""
        try:
            st = await self.watched.astat()
        except FileNotFoundError:
            was_seen = self.watched.seen
            self.watched.forget()
            return FileRead(removed=True, was_seen=was_seen)
        except OSError as exc:
            log.error("%s:0: cannot stat: %s", self.path, exc.strerror or exc)
            return None
        if not self.watched.take(st):
            return None
        try:
            async with aiofiles.open(self.path, "rb") as f:
                raw = await f.read()
        except FileNotFoundError:
            return None  # raced with a delete: the next poll sees it
        except OSError as exc:
            return FileRead(problems=[f"{self.path}:0: cannot read: {exc.strerror or exc}"])
        return self.parse(raw, st.st_mtime)

    def parse(self, raw: bytes, mtime: float) -> FileRead:
        """Decode and parse the file's bytes (relative times anchored as before)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            return FileRead(problems=[f"{self.path}:{line}: not valid UTF-8"])
        try:
            rules, anchors = parse_overrides(text, str(self.path), base_time=mtime,
                                             anchors=self.anchors)
        except OverrideError as exc:
            return FileRead(problems=exc.problems)
        return FileRead(rules=rules, anchors=anchors, text=text)


def read_rules(path: Path | None) -> list[OverrideRule]:
    """The rules of an admin-state file, read once (``explain``: no server to ask);
    [] when there is none; OverrideError when it is bad."""
    if path is None or not path.exists():
        return []
    rules, _ = parse_overrides(path.read_text(), str(path), base_time=path.stat().st_mtime)
    return rules
