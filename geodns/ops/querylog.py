"""Optional JSON-lines query log that can never slow down or block answering.

The query path calls :meth:`QueryLog.query` (or :meth:`QueryLog.submit`): a sampling
draw and an append of raw values to a bounded deque, O(1), synchronous, no await,
no formatting.  When the deque is full the line is dropped and counted
(``geodns_querylog_dropped_total``): under overload we lose log lines, not answers.
A writer task formats batches as JSON and appends them with aiofiles (the blocking
write happens in a worker thread), rotating by size: ``name`` -> ``name.1`` ->
``name.2`` ... keeping ``keep`` old files.

One line per logged query::

    {"time": "2026-11-21T10:00:00.123Z", "client": "192.0.2.7", "ecs": "198.51.100.0/24",
     "qname": "www.example.com.", "qtype": "A", "rcode": "NOERROR", "pool": "www",
     "pop": "fra", "scope": 24, "ttl": 60, "latency_ms": 0.084}

``ecs``, ``pool``, ``pop``, ``scope``, ``ttl`` are null when not applicable; ``pop``
holds several POPs comma-separated when one answer spans POPs.  Answers of a pool with
experiment arms add ``"arm": "control"``; answers to clients inside fences add
``"fence": "us-only"`` (``"a+b"`` inside both).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiofiles
import aiofiles.os
from aiofiles.threadpool.text import AsyncTextIOWrapper

from geodns.ops.metrics import Metrics, qtype_label, rcode_label
from geodns.wire import decode

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_QUEUE", "QueryLog", "format_time", "wire_name"]

log = logging.getLogger("geodns.querylog")

DEFAULT_QUEUE: Final = 10_000
DEFAULT_MAX_BYTES: Final = 100 * 1024 * 1024
_BATCH: Final = 512  # lines per write call
_ERROR_LOG_INTERVAL: Final = 60.0  # seconds between repeated write-error log lines

# A queued query: the raw values handed over by the query path (formatted by the writer).
_Raw = tuple[float, str, Any, int | None, Any, Any, Any, str | None, Any, int | None,
             int | None, float | None] | tuple[float, str, Any, int | None, Any, Any, Any,
                                                str | None, Any, int | None, int | None,
                                                float | None, str | None, str | None]


def format_time(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-11-21T10:00:00.123Z``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wire_name(wire: bytes) -> str:
    """Text of an uncompressed wire-format name (as the decoder hands it over)."""
    return decode.wire_name(wire).to_text()


def _ecs_text(addr: Any, prefix: int | None) -> str | None:
    if addr is None:
        return None
    if isinstance(addr, bytes | bytearray):
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = (
            ipaddress.IPv4Address(bytes(addr[:4]).ljust(4, b"\0")) if len(addr) <= 4
            else ipaddress.IPv6Address(bytes(addr[:16]).ljust(16, b"\0")))
        text = str(ip)
    else:
        text = str(addr)
    if prefix is None or "/" in text:
        return text
    return f"{text}/{prefix}"


def _format(raw: _Raw) -> dict[str, Any]:
    (ts, client, ecs_addr, ecs_source, qname, qtype, rcode, pool, pops, scope, ttl,
     latency) = raw[:12]
    if isinstance(pops, tuple | list):
        pops = ",".join(pops) if pops else None
    out = {
        "time": format_time(ts),
        "client": client,
        "ecs": _ecs_text(ecs_addr, ecs_source),
        "qname": wire_name(bytes(qname)) if isinstance(qname, bytes | bytearray)
        else str(qname),
        "qtype": qtype_label_full(qtype),
        "rcode": rcode_label(rcode),
        "pool": pool,
        "pop": pops,
        "scope": scope,
        "ttl": ttl,
        "latency_ms": round(latency * 1000, 3) if latency is not None else None,
    }
    if len(raw) > 12:  # (an experiment arm, fences)
        arm, fence = raw[12:14]  # type: ignore[misc]
        if arm is not None:
            out["arm"] = arm
        if fence is not None:
            out["fence"] = fence
    return out


def qtype_label_full(qtype: int | str) -> str:
    """Type mnemonic for the log (unlike the metric label, unusual types are kept)."""
    if isinstance(qtype, str):
        return qtype.upper()
    label = qtype_label(qtype)
    return label if label != "other" else f"TYPE{qtype}"


class QueryLog:
    """Bounded, sampled, asynchronous JSON-lines writer with size rotation.

    ``sample`` is the fraction of queries logged (0..1).  ``max_bytes`` 0 disables
    rotation; otherwise the file is rotated before a write would take it past
    ``max_bytes`` and ``keep`` rotated files are kept (``keep`` >= 1).
    """

    def __init__(self, path: str | Path, *, sample: float = 1.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = 5,
                 queue_size: int = DEFAULT_QUEUE, metrics: Metrics | None = None,
                 rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample must be between 0 and 1, got {sample}")
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.path = Path(path)
        self.sample_rate = sample
        self.max_bytes = max_bytes
        self.keep = keep
        self.queue_size = queue_size
        self.metrics = metrics
        self.rand = rand
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self._queue: deque[_Raw | Mapping[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._file: AsyncTextIOWrapper | None = None
        self._size = 0
        self._last_error = 0.0

    # --- query path (synchronous, O(1), never blocks) -------------------------------

    def sampled(self) -> bool:
        """The sampling draw: True when this query should be logged."""
        rate = self.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self.rand() < rate)

    def query(self, client: str, ecs_addr: str | bytes | None, ecs_source: int | None,
              qname: str | bytes, qtype: int | str, rcode: int | str, pool: str | None,
              pops: tuple[str, ...] | str | None, scope: int | None, ttl: int | None,
              latency: float | None) -> bool:
        """Log one query (sampled); raw values, formatted later. False if not queued."""
        if not self.sampled():
            return False
        return self._put((self.clock(), client, ecs_addr, ecs_source, qname, qtype, rcode,
                          pool, pops, scope, ttl, latency))

    def log(self, client: str, ecs_addr: str | bytes | None, ecs_source: int | None,
            qname: str | bytes, qtype: int | str, rcode: int | str, pool: str | None,
            pops: tuple[str, ...] | str | None, scope: int | None, ttl: int | None,
            latency: float | None, arm: str | None = None, fence: str | None = None) -> bool:
        """Log one query the caller has already sampled (:meth:`sampled`)."""
        if arm is None and fence is None:
            return self._put((self.clock(), client, ecs_addr, ecs_source, qname, qtype,
                              rcode, pool, pops, scope, ttl, latency))
        return self._put((self.clock(), client, ecs_addr, ecs_source, qname, qtype, rcode,
                          pool, pops, scope, ttl, latency, arm, fence))

    def submit(self, record: Mapping[str, Any]) -> bool:
        """Log a ready-made record (sampled); ``time`` is added when missing."""
        if not self.sampled():
            return False
        if "time" not in record:
            record = {"time": format_time(self.clock()), **record}
        return self._put(record)

    def _put(self, item: _Raw | Mapping[str, Any]) -> bool:
        if len(self._queue) >= self.queue_size or self._stopping:
            self._drop(1)
            return False
        self._queue.append(item)
        if not self._wake.is_set():
            self._wake.set()
        return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.querylog_dropped += n

    @property
    def pending(self) -> int:
        """Lines queued but not yet written."""
        return len(self._queue)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Open (append) the file and start the writer task."""
        if self._task is not None:
            return
        await self._open()
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._writer(),
                                                            name="geodns-querylog")

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds), then close."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.error("query log: %d lines not written at shutdown", len(self._queue))
                self._drop(len(self._queue))
                self._queue.clear()
        if self._file is not None:
            with contextlib.suppress(OSError):
                await self._file.close()
            self._file = None

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = await aiofiles.open(self.path, "a", encoding="utf-8")
        try:
            self._size = (await aiofiles.os.stat(self.path)).st_size
        except OSError:
            self._size = 0

    # --- writer -----------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft()
                     for _ in range(min(_BATCH, len(self._queue)))]
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a full disk must not kill the writer
                self._drop(len(batch))
                now = time.monotonic()
                if now - self._last_error >= _ERROR_LOG_INTERVAL:
                    self._last_error = now
                    log.error("query log: cannot write %s: %s (lines dropped)", self.path,
                              exc)

    async def _write(self, batch: list[_Raw | Mapping[str, Any]]) -> None:
        lines = []
        for item in batch:
            rec = item if isinstance(item, Mapping) else _format(item)
            lines.append(json.dumps(rec, separators=(",", ":"), default=str) + "\n")
        if self.max_bytes:
            # Rotate between lines, never inside one: write in chunks that fit.
            chunk: list[str] = []
            size = 0
            for line in lines:
                n = len(line.encode("utf-8"))
                if self._size + size + n > self.max_bytes and (self._size + size) > 0:
                    if chunk:
                        await self._append("".join(chunk), size, len(chunk))
                        chunk, size = [], 0
                    await self._rotate()
                chunk.append(line)
                size += n
            if chunk:
                await self._append("".join(chunk), size, len(chunk))
        else:
            text = "".join(lines)
            await self._append(text, len(text.encode("utf-8")), len(lines))

    async def _append(self, text: str, size: int, count: int) -> None:
        if self._file is None:
            await self._open()
        assert self._file is not None
        await self._file.write(text)
        await self._file.flush()
        self._size += size
        self.written += count
        if self.metrics is not None:
            self.metrics.querylog_written += count

    async def _rotate(self) -> None:
        """name.(keep-1) -> name.keep ... name -> name.1, then a fresh name."""
        if self._file is not None:
            await self._file.close()
            self._file = None
        base = str(self.path)
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(f"{base}.{self.keep}")
        for i in range(self.keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.replace(f"{base}.{i}", f"{base}.{i + 1}")
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.replace(base, f"{base}.1")
        await self._open()


def rotated_paths(path: str | Path, keep: int) -> list[Path]:
    """The live file and its rotated predecessors, newest first (existing ones only)."""
    p = Path(path)
    out = [p] if p.exists() else []
    out += [Path(f"{p}.{i}") for i in range(1, keep + 1) if os.path.exists(f"{p}.{i}")]
    return out
