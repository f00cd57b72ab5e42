"""File identities: the one change test shared by zones, config, GeoIP, the admin file,
load feeds and latency maps."""

from __future__ import annotations

import os
from pathlib import Path

from geodns.watch import file_key, stat_key


def test_missing_file_has_no_key(tmp_path: Path) -> None:
    assert file_key(tmp_path / "absent") is None


def test_same_file_same_key_and_stat_key_agrees(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    assert file_key(p) == file_key(p) == stat_key(os.stat(p))


def test_in_place_rewrite_of_same_size_changes_the_key(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    st = os.stat(p)
    before = file_key(p)
    p.write_text("two\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_key(p) != before


def test_rename_over_with_same_size_and_mtime_changes_the_key(tmp_path: Path) -> None:
    """The atomic-write pattern: a new inode, even when size and mtime happen to match."""
    p, tmp = tmp_path / "a.txt", tmp_path / ".a.txt.tmp"
    p.write_text("one\n")
    st = os.stat(p)
    before = file_key(p)
    tmp.write_text("two\n")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    keep = p.open()  # hold the old inode so the new file cannot reuse its number
    try:
        os.replace(tmp, p)
        assert file_key(p) != before
    finally:
        keep.close()
