"""File identities for change detection: one definition for zones, config, GeoIP and
the admin file."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FileKey", "file_key", "stat_key"]

FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


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
