"""Query log: parseable lines, sampling, never blocking (drops counted), rotation."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from geodns.ops.metrics import Metrics
from geodns.ops.querylog import QueryLog, reopen_logs, rotated_paths, wire_name


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_written_and_parseable(tmp_path: Path) -> None:
    path = tmp_path / "q.log"
    m = Metrics()

    async def go() -> None:
        log = QueryLog(path, metrics=m)
        await log.start()
        assert log.query("192.0.2.7", b"\xc6\x33\x64\x00", 24,
                         b"\x03www\x07example\x03com\x00", 1, 0, "www", ("fra",), 24, 60,
                         0.000084)
        assert log.query("2001:db8::7", None, None, "static.example.com.", 28, 3, None,
                         None, None, None, 0.00002)
        assert log.query("192.0.2.8", b"\x20\x01\x0d\xb8" + bytes(12), 48, "api.example.",
                         28, 0, "api", ("iad", "fra"), 48, 10, None)
        assert log.submit({"client": "192.0.2.9", "qname": "x.", "note": "custom"})
        await log.stop()

    asyncio.run(go())
    lines = read_lines(path)
    assert len(lines) == 4
    first = lines[0]
    assert first["client"] == "192.0.2.7"
    assert first["ecs"] == "198.51.100.0/24"
    assert first["qname"] == "www.example.com."
    assert (first["qtype"], first["rcode"]) == ("A", "NOERROR")
    assert (first["pool"], first["pop"], first["scope"], first["ttl"]) == ("www", "fra", 24, 60)
    assert first["latency_ms"] == pytest.approx(0.084)
    assert first["time"].endswith("Z") and "T" in first["time"]
    second = lines[1]
    assert second["ecs"] is None and second["pool"] is None and second["pop"] is None
    assert (second["qtype"], second["rcode"]) == ("AAAA", "NXDOMAIN")
    assert lines[2]["ecs"] == "2001:db8::/48" and lines[2]["pop"] == "iad,fra"
    assert lines[3]["note"] == "custom" and "time" in lines[3]
    assert m.querylog_written == 4 and m.querylog_dropped == 0


def test_wire_name_escapes() -> None:
    assert wire_name(b"\x00") == "."
    assert wire_name(b"\x03a.b\x02\x00\x01\x00") == "a\\.b.\\000\\001."


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_sampling_ratio(tmp_path: Path, rate: float) -> None:
    rng = random.Random(42)
    log = QueryLog(tmp_path / "q.log", sample=rate, rand=rng.random, queue_size=100_000)
    n = 20_000
    kept = sum(log.submit({"i": i}) for i in range(n))
    assert kept == log.pending
    if rate in (0.0, 1.0):
        assert kept == n * rate
    else:
        assert abs(kept / n - rate) < 0.02, kept / n


def test_sample_rate_validated(tmp_path: Path) -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            QueryLog(tmp_path / "q.log", sample=bad)


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    """No writer running at all: submit still returns at once, and drops are counted."""
    m = Metrics()
    log = QueryLog(tmp_path / "q.log", queue_size=10, metrics=m)
    start = time.perf_counter()
    results = [log.query("192.0.2.1", None, None, "a.", 1, 0, None, None, None, None, None)
               for _ in range(1000)]
    elapsed = time.perf_counter() - start
    assert results.count(True) == 10 and results.count(False) == 990
    assert log.dropped == 990 and m.querylog_dropped == 990
    assert b"geodns_querylog_dropped_total 990.0" in m.render()
    assert elapsed < 0.5, f"1000 submits took {elapsed:.3f}s"


def test_slow_disk_drops_instead_of_stalling(tmp_path: Path) -> None:
    """While the writer is stuck in a slow write, the loop keeps running and submits drop."""
    path = tmp_path / "q.log"
    m = Metrics()

    async def go() -> tuple[int, float]:
        log = QueryLog(path, queue_size=50, metrics=m)
        gate = threading.Event()
        await log.start()
        assert log.handler is not None
        real_emit = log.handler.emit

        def slow_emit(record: logging.LogRecord) -> None:
            gate.wait(30)  # the "disk" hangs until we let it go
            real_emit(record)

        log.handler.emit = slow_emit  # type: ignore[method-assign]
        log.submit({"n": -1})
        log.hand_off()
        await asyncio.sleep(0.05)  # the writer takes it and hangs
        worst = 0.0
        accepted = 1
        for i in range(500):
            t0 = time.perf_counter()
            accepted += log.submit({"n": i})
            worst = max(worst, time.perf_counter() - t0)
        gate.set()
        await log.stop()
        return accepted, worst

    accepted, worst = asyncio.run(go())
    assert accepted == 50  # at most queue_size lines wait, the hanging one included
    assert m.querylog_dropped == 451
    assert worst < 0.05
    assert len(read_lines(path)) == 50 == m.querylog_written


def test_rotation_by_size(tmp_path: Path) -> None:
    path = tmp_path / "q.log"

    async def go() -> None:
        log = QueryLog(path, max_bytes=2000, keep=2)
        await log.start()
        for i in range(300):
            log.submit({"i": i, "pad": "x" * 60})
            if i % 25 == 0:
                await asyncio.sleep(0)  # let the writer run: several batches
        await log.stop()

    asyncio.run(go())
    files = rotated_paths(path, 5)
    assert [p.name for p in files] == ["q.log", "q.log.1", "q.log.2"]
    assert not (tmp_path / "q.log.3").exists()
    for p in files:
        assert p.stat().st_size <= 2000
    numbers = [[r["i"] for r in read_lines(p)] for p in reversed(files)]
    flat = [n for chunk in numbers for n in chunk]
    assert flat == list(range(flat[0], 300))  # contiguous, newest in q.log, none split
    assert flat[0] > 0  # the oldest lines were rotated away (keep=2)


def test_append_to_existing_and_rotate_at_start(tmp_path: Path) -> None:
    path = tmp_path / "q.log"
    path.write_text('{"old": 1}\n' * 30)  # 330 bytes

    async def go() -> None:
        log = QueryLog(path, max_bytes=400, keep=1)
        await log.start()
        log.submit({"new": 1, "pad": "y" * 100})
        await log.stop()

    asyncio.run(go())
    assert read_lines(path)[0]["new"] == 1
    assert len(read_lines(Path(f"{path}.1"))) == 30


def test_stop_flushes_and_later_submits_drop(tmp_path: Path) -> None:
    path = tmp_path / "q.log"

    async def go() -> QueryLog:
        log = QueryLog(path)
        await log.start()
        for i in range(2000):
            log.submit({"i": i})
        await log.stop()
        assert not log.submit({"late": True})
        return log

    log = asyncio.run(go())
    assert len(read_lines(path)) == 2000
    assert log.dropped == 1


def test_reopen_after_logrotate_moved_the_file(tmp_path: Path) -> None:
    """logrotate renames the file, then signals us: later lines go to a new file at the
    path, none are lost or split, and nothing is written to the moved file any more."""
    path = tmp_path / "q.log"
    moved = tmp_path / "q.log.1"

    async def wait_written(log: QueryLog, n: int) -> None:
        for _ in range(500):
            if log.written >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{log.written} lines written, waited for {n}")

    async def go() -> QueryLog:
        log = QueryLog(path)
        await log.start()
        for i in range(10):
            log.submit({"i": i})
        await wait_written(log, 10)
        path.rename(moved)  # what logrotate does first ...
        assert reopen_logs() >= 1  # ... then postrotate: kill -USR1 (or -HUP)
        for i in range(10, 25):
            log.submit({"i": i})
        await log.stop()
        return log

    log = asyncio.run(go())
    assert [r["i"] for r in read_lines(moved)] == list(range(10))
    assert [r["i"] for r in read_lines(path)] == list(range(10, 25))
    assert log.written == 25 and log.dropped == 0


def test_a_line_longer_than_max_bytes_does_not_rotate_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "q.log"

    async def go() -> None:
        log = QueryLog(path, max_bytes=100, keep=2)
        await log.start()
        log.submit({"big": "z" * 300})
        log.submit({"big": "y" * 300})
        await log.stop()

    asyncio.run(go())
    assert [r["big"][0] for r in read_lines(path)] == ["y"]
    assert [r["big"][0] for r in read_lines(Path(f"{path}.1"))] == ["z"]
    assert not Path(f"{path}.2").exists()  # the empty file was never rotated


def test_arm_and_fence_logged_only_when_set(tmp_path: Path) -> None:
    """An experiment's arm and the fences a client is inside go into its line (analysts
    compare arms from the log); other lines keep their fields."""
    path = tmp_path / "q.log"

    async def go() -> None:
        log = QueryLog(path)
        await log.start()
        assert log.log("192.0.2.7", None, None, "www.example.", 1, 0, "www", ("sjc",), 24,
                       60, 0.0001, "new-edge", "us-only")
        assert log.log("192.0.2.8", None, None, "www.example.", 1, 2, "www", (), 24, 60,
                       None, None, "us-only")
        assert log.log("192.0.2.9", None, None, "www.example.", 1, 0, "www", ("fra",), 0,
                       60, None)
        await log.stop()

    asyncio.run(go())
    first, second, third = read_lines(path)
    assert (first["arm"], first["fence"], first["pop"]) == ("new-edge", "us-only", "sjc")
    assert second["fence"] == "us-only" and "arm" not in second
    assert second["rcode"] == "SERVFAIL" and second["pop"] is None
    assert "arm" not in third and "fence" not in third
