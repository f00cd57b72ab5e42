"""Writing the admin-state file for the control API: one pattern's line replaced, the
rest of the operator's file (comments, order, other rules) kept as it is.

The new text is written to a unique temporary file in the same directory and renamed
over the old one, so a reader never sees half a file and a failed write changes
nothing.  Serialising edits (and checking the text before it is written) is the
caller's job: :class:`geodns.health.overrides.Overrides`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import aiofiles
import aiofiles.os

from geodns.health.override_rules import parse_pattern, split_line

__all__ = ["edit_text", "read_text", "write_atomically"]


def edit_text(text: str, pattern: str, line: str | None) -> tuple[str, bool]:
    """``text`` without the lines for ``pattern`` (normalized), plus ``line`` at the end
    when given; and whether a line was dropped."""
    kept = []
    dropped = False
    for old in text.splitlines():
        tokens = split_line(old)
        if tokens:
            with contextlib.suppress(ValueError):
                if parse_pattern(tokens[0]) == pattern:
                    dropped = True
                    continue
        kept.append(old)
    if line is not None:
        kept.append(line)
    return "".join(x + "\n" for x in kept), dropped


async def read_text(path: Path) -> str:
    """The file's text ("" when it does not exist yet)."""
    try:
        async with aiofiles.open(path, encoding="utf-8") as f:
            return await f.read()
    except FileNotFoundError:
        return ""


async def write_atomically(path: Path, text: str) -> None:
    """A unique temporary file in the same directory, renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
        os.fchmod(fd, mode)  # keep the operator's permissions, not mkstemp's 0600
    finally:
        os.close(fd)
    try:
        async with aiofiles.open(tmp, "w", encoding="utf-8") as f:
            await f.write(text)
        await aiofiles.os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
