"""File watching (geodns.watch): the one change test shared by zones, config, GeoIP, the
admin file, load feeds and latency maps; one watched file; the settling poll loop."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from geodns.watch import FileWatcher, WatchedFile, file_key, file_keys, stat_key


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


# --------------------------------------------------------------------------- WatchedFile


def test_watched_file_takes_each_new_version_once(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    w = WatchedFile(p)
    assert not w.seen and w.changed()
    assert w.take(w.stat()) and w.seen and w.key == file_key(p)
    assert not w.take(w.stat()) and not w.changed()  # same version: not new
    st = os.stat(p)
    p.write_text("two\n")  # in place, same size: the mtime tells
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert w.changed() and w.take(w.stat()) and not w.changed()
    tmp = tmp_path / ".a.txt.tmp"
    tmp.write_text("three\n")
    keep = p.open()  # the old inode stays allocated: the new file has another
    try:
        os.replace(tmp, p)  # rename over
        assert w.changed() and w.take(w.stat()) and not w.take(w.stat())
    finally:
        keep.close()


def test_watched_file_deleted_and_recreated(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    w = WatchedFile(p, file_key(p))  # accepted when opened (GeoDB)
    assert w.seen and not w.changed()
    p.unlink()
    assert w.changed()  # missing counts as a key of None
    with pytest.raises(FileNotFoundError):
        w.stat()
    w.forget()
    assert not w.seen and not w.changed()  # gone, and nothing accepted: the same
    p.write_text("one\n")
    assert w.changed() and w.take(w.stat())


def test_watched_file_forget_makes_the_same_version_new(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    w = WatchedFile(str(p))
    w.accept(os.stat(p))
    assert not w.take(os.stat(p))
    w.forget()  # a failed read: try it again at the next poll
    assert w.take(os.stat(p))


def test_watched_file_async_stat(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    w = WatchedFile(p)
    assert asyncio.run(w.astat()).st_ino == os.stat(p).st_ino
    p.unlink()
    with pytest.raises(FileNotFoundError):
        asyncio.run(w.astat())


def test_file_keys_leave_out_missing_files(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("one\n")
    assert file_keys([str(p), str(tmp_path / "absent")]) == {str(p): file_key(p)}


# --------------------------------------------------------------------------- FileWatcher


class Calls:
    """An on_change callback that counts, and may fail."""

    def __init__(self) -> None:
        self.n = 0
        self.fail = False

    async def __call__(self) -> None:
        self.n += 1
        if self.fail:
            raise RuntimeError("reload blew up")


def watcher_on(tmp_path: Path, calls: Calls, max_delay: int = 3) -> FileWatcher:
    """Watch every file in tmp_path (files come and go) and one fixed path."""
    def paths() -> list[str]:
        return sorted({str(p) for p in tmp_path.iterdir()} | {str(tmp_path / "fixed")})
    return FileWatcher(paths, calls, interval=0.01, max_delay=max_delay)


def polls(w: FileWatcher, n: int) -> list[bool]:
    async def main() -> list[bool]:
        return [await w.poll() for _ in range(n)]
    return asyncio.run(main())


def test_watcher_calls_back_once_a_change_settled(tmp_path: Path) -> None:
    a = tmp_path / "a.zone"
    a.write_text("one\n")
    calls = Calls()
    w = watcher_on(tmp_path, calls)
    assert polls(w, 2) == [False, False] and calls.n == 0  # nothing moved
    a.write_text("one more\n")  # in place
    assert polls(w, 3) == [False, True, False]  # seen, settled: one call, then quiet
    assert calls.n == 1 and w.accepted == file_keys([str(a)])
    tmp = tmp_path / ".a.zone.tmp"
    tmp.write_text("two\n")
    keep = a.open()
    try:
        os.replace(tmp, a)  # rename over
        assert polls(w, 2) == [False, True] and calls.n == 2
    finally:
        keep.close()


def test_watcher_sees_files_deleted_created_and_missing_ones_appear(tmp_path: Path) -> None:
    a = tmp_path / "a.zone"
    a.write_text("one\n")
    calls = Calls()
    w = watcher_on(tmp_path, calls)
    a.unlink()
    assert polls(w, 2) == [False, True] and calls.n == 1 and w.accepted == {}
    a.write_text("one\n")
    assert polls(w, 2) == [False, True] and calls.n == 2
    (tmp_path / "fixed").write_text("now here\n")  # watched before it existed
    assert polls(w, 2) == [False, True] and calls.n == 3


@pytest.mark.parametrize(
    ("edits", "settle_poll", "expected", "warnings"),
    [
        # another size at every poll: never settles, so it is forced after max_delay
        (5, False, [False, False, False, True, False],
         ["files kept changing for 3 polls; reloading anyway"]),
        # edits that stop within max_delay polls reload when they settle, silently
        (3, True, [False, False, False, True], []),
    ],
)
def test_watcher_settles_edits_and_forces_a_file_that_never_stops(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, edits: int, settle_poll: bool,
        expected: list[bool], warnings: list[str]) -> None:
    a = tmp_path / "a.zone"
    a.write_text("0\n")
    calls = Calls()
    w = watcher_on(tmp_path, calls, max_delay=3)

    async def run() -> list[bool]:
        out = []
        for i in range(1, edits + 1):
            a.write_text("x" * i + "\n")
            out.append(await w.poll())
        if settle_poll:
            out.append(await w.poll())
        return out

    with caplog.at_level(logging.WARNING, logger="geodns"):
        assert asyncio.run(run()) == expected
    assert calls.n == 1
    assert [r.getMessage() for r in caplog.records] == warnings


def test_watcher_retries_a_failed_callback_and_its_loop_survives(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = tmp_path / "a.zone"
    a.write_text("0\n")
    calls = Calls()
    w = watcher_on(tmp_path, calls)
    a.write_text("changed\n")
    calls.fail = True

    async def main() -> None:
        stopping = asyncio.Event()
        task = asyncio.get_running_loop().create_task(w.run(stopping))
        while calls.n < 3:  # every poll after the settle calls again: nothing recorded
            await asyncio.sleep(0.01)
        calls.fail = False
        while w.pending is not None or w.accepted != file_keys([str(a)]):
            await asyncio.sleep(0.01)
        stopping.set()
        await asyncio.wait_for(task, 1.0)

    with caplog.at_level(logging.ERROR, logger="geodns"):
        asyncio.run(main())
    assert "file watcher error; still watching" in [r.getMessage() for r in caplog.records]
    assert calls.n >= 4


def test_watcher_sees_an_edit_made_while_the_reload_ran(tmp_path: Path) -> None:
    """An operator saves again while the reload reads the files: that edit must cause
    another reload, not be taken as loaded."""
    a = tmp_path / "a.zone"
    a.write_text("one\n")
    b = tmp_path / "b.zone"
    b.write_text("bee\n")

    class EditingReload(Calls):
        async def __call__(self) -> None:
            await super().__call__()
            if self.n == 1:
                a.write_text("edited during the reload\n")
                b.unlink()

    calls = EditingReload()
    w = watcher_on(tmp_path, calls)
    a.write_text("two\n")
    assert polls(w, 2) == [False, True] and calls.n == 1
    assert polls(w, 2) == [False, True] and calls.n == 2  # the edit and the removal
    assert polls(w, 2) == [False, False] and calls.n == 2
    assert w.accepted == file_keys([str(a)])
