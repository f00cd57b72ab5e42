"""The zones directory loader: only changed files are parsed again; problems are kept
apart per file; oversized RRsets are refused before they are served."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from geodns.zones.load import ZoneFileError
from geodns.zones.loader import ZoneLoader

HEAD = "$ORIGIN {o}\n$TTL 60\n@ IN SOA ns1 hm {serial} 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"


def zone(path: Path, origin: str, serial: int = 1, extra: str = "") -> None:
    path.write_text(HEAD.format(o=origin, serial=serial) + extra)
    t = time.time() + serial  # a new mtime even within one clock tick
    os.utime(path, (t, t))


def test_only_changed_files_are_parsed_again(tmp_path: Path) -> None:
    zone(tmp_path / "a.test.zone", "a.test.")
    zone(tmp_path / "b.test.zone", "b.test.")
    loader = ZoneLoader(str(tmp_path))
    first = loader.load()
    assert len(loader.parsed) == 2
    zone(tmp_path / "b.test.zone", "b.test.", serial=2)
    second = loader.load()
    assert loader.parsed == [str(tmp_path / "b.test.zone")]
    a = next(z for z in first.zones.values() if str(z.origin) == "a.test.")
    assert a in second.zones.values()  # the same Zone object, shared by both stores
    assert loader.load() and loader.parsed == []


def test_a_bad_file_keeps_the_others_cached(tmp_path: Path) -> None:
    zone(tmp_path / "a.test.zone", "a.test.")
    loader = ZoneLoader(str(tmp_path))
    loader.load()
    (tmp_path / "b.test.zone").write_text("garbage\n")
    with pytest.raises(ZoneFileError):
        loader.load()
    (tmp_path / "b.test.zone").unlink()
    loader.load()
    assert loader.parsed == []  # a.test. was not read again


def test_oversized_rrsets_are_refused_with_their_line(tmp_path: Path) -> None:
    """Issue 9: 300 TXT records of 250 bytes cannot be answered even over TCP."""
    big = "".join(f'txt IN TXT "{i:03d}{"x" * 247}"\n' for i in range(300))
    zone(tmp_path / "big.test.zone", "big.test.", extra=big)
    with pytest.raises(ZoneFileError) as info:
        ZoneLoader(str(tmp_path)).load()
    [problem] = info.value.problems
    assert "the TXT RRset of txt.big.test. grows to" in problem
    assert "cannot fit in a DNS message (65535 bytes)" in problem
    line = int(problem.split(":")[1])
    assert 6 < line < 306  # the record that made it too big
