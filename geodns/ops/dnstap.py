"""dnstap output: every (sampled) query and answer as AUTH_QUERY/AUTH_RESPONSE messages.

dnstap is protobuf messages in Frame Streams frames, to a file or to a collector's
Unix socket (vector, go-dnscollector, dnstap-read, ...).  Libraries, and why:

* the ``Dnstap``/``Message`` schema is ``dnstap_pb`` (the official dnstap.proto,
  generated), serialised by Google's ``protobuf`` runtime (its C "upb" backend: about
  1 us per message with a reused message object; the same fields hand-encoded in
  Python took 11);
* framing is ``fstrm`` (Frame Streams codec: control frames READY/ACCEPT/START/STOP/
  FINISH and data frames); the writer here only does I/O around it.

The query path never waits: :meth:`Dnstap.wrap` puts the raw bytes and two clock
readings on a bounded deque (sampled; nothing at all when dnstap is off, since the
handler is only wrapped when it is on).  A writer task encodes and writes them.  A
full queue, a write error or a collector that is not there drops messages and
counts them (``geodns_dnstap_dropped_total``): we lose telemetry, never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import aiofiles
import fstrm
from dnstap_pb import dnstap_pb2 as pb

from geodns.config import DnstapConfig
from geodns.handler import HandleFn as Answer
from geodns.handler import Outcome
from geodns.ops.metrics import Metrics

__all__ = ["CONTENT_TYPE", "Dnstap", "Encoder"]

log = logging.getLogger("geodns.dnstap")

CONTENT_TYPE: Final = b"protobuf:dnstap.Dnstap"
_BATCH: Final = 1024  # queries encoded per write
_POLL: Final = 0.05  # seconds the writer sleeps when the queue is empty
_HANDSHAKE_TIMEOUT: Final = 5.0
_RETRY_MAX: Final = 5.0  # seconds between reconnects to a missing collector, at most
_ERROR_LOG_INTERVAL: Final = 60.0
_ONE: Final = 1.0 - 1e-9  # sampling: 10 x 0.3 must reach 1 three times despite rounding

HandleFn = Callable[[bytes, str, bool], "bytes | None"]
# (query time ns, response time ns, query bytes, response bytes or None, client, tcp,
#  the Dnstap ``extra`` field: "arm=NAME fence=NAME" of a steered answer, or None)
_Item = tuple[int, int, bytes, "bytes | None", str, bool, "bytes | None"]


def _extra(choice: Any) -> bytes | None:
    """The experiment arm and fence of a steered answer, for analysts reading dnstap."""
    arm, fence = choice.arm, choice.fence
    if not arm and not fence:
        return None
    return " ".join(f"{k}={v}" for k, v in (("arm", arm), ("fence", fence)) if v).encode()


class Encoder:
    """Queued queries -> dnstap protobuf payloads, reusing one message object (building a
    fresh one per query cost 3x more) and caching packed client addresses."""

    def __init__(self, identity: bytes, version: bytes) -> None:
        self.msg = pb.Dnstap(type=pb.Dnstap.MESSAGE, identity=identity, version=version)
        self.addresses: dict[str, tuple[int, bytes]] = {}

    def address(self, client: str) -> tuple[int, bytes]:
        """(dnstap socket family, packed address) of a client address string."""
        hit = self.addresses.get(client)
        if hit is not None:
            return hit
        text = client.split("%", 1)[0]
        try:
            packed = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        except OSError:
            packed = b"\0\0\0\0"
        if len(packed) == 16 and packed.startswith(b"\0" * 10 + b"\xff\xff"):
            packed = packed[12:]  # v4-mapped: the IPv4 client it is
        hit = (pb.INET if len(packed) == 4 else pb.INET6, packed)
        if len(self.addresses) >= 65536:
            self.addresses.clear()
        self.addresses[client] = hit
        return hit

    def pair(self, item: _Item) -> list[bytes]:
        """The AUTH_QUERY and (if there was an answer) AUTH_RESPONSE of one query."""
        t_query, t_resp, query, resp, client, tcp, extra = item
        family, addr = self.address(client)
        if extra is not None:
            self.msg.extra = extra
        elif self.msg.HasField("extra"):
            self.msg.ClearField("extra")
        m = self.msg.message
        m.Clear()
        m.type = pb.Message.AUTH_QUERY
        m.socket_family = family
        m.socket_protocol = pb.TCP if tcp else pb.UDP
        m.query_address = addr
        m.query_time_sec, m.query_time_nsec = divmod(t_query, 1_000_000_000)
        m.query_message = query
        out = [self.msg.SerializeToString()]
        if resp is not None:
            m.type = pb.Message.AUTH_RESPONSE
            m.ClearField("query_message")
            m.response_time_sec, m.response_time_nsec = divmod(t_resp, 1_000_000_000)
            m.response_message = resp
            out.append(self.msg.SerializeToString())
        return out


class Dnstap:
    """A sampled, bounded dnstap writer to a file (unidirectional Frame Streams) or a
    Unix socket (bidirectional: READY -> ACCEPT -> START, STOP -> FINISH)."""

    def __init__(self, config: DnstapConfig, metrics: Metrics | None = None,
                 version: str = "geodns") -> None:
        if not config.enabled:
            raise ValueError("dnstap needs a file or a socket")
        self.config = config
        self.metrics = metrics
        self.file = config.file
        self.socket = config.socket
        self.sample = config.sample
        self.queue_size = config.queue
        self.identity = (config.identity or socket.gethostname()).encode()
        self.version = version.encode()
        self.written = 0  # queries (not frames) written
        self.dropped = 0
        self._queue: deque[_Item] = deque()
        self._acc = 0.0  # sampling accumulator: exact fractions, no random draw
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._codec = fstrm.FstrmCodec()
        self._encoder = Encoder(self.identity, self.version)
        self._last_error = -_ERROR_LOG_INTERVAL

    @property
    def target(self) -> str:
        return f"file {self.file}" if self.file is not None else f"socket {self.socket}"

    # --- query path -------------------------------------------------------------------

    def wrap(self, inner: Answer) -> HandleFn:
        """``handle`` with dnstap: the answer first, then an O(1) append (when sampled)."""
        queue = self._queue
        limit = self.queue_size
        rate = self.sample
        clock = time.time_ns

        def handle(data: bytes, client: str, tcp: bool) -> bytes | None:
            if rate < 1.0:
                acc = self._acc + rate
                if acc < _ONE:
                    self._acc = acc
                    return inner(data, client, tcp, None)
                self._acc = acc - 1.0
            t0 = clock()
            out = Outcome()  # the steered choice: its arm and fence go in ``extra``
            resp = inner(data, client, tcp, out)
            if len(queue) < limit and not self._stopping:
                sel = out.choice
                queue.append((t0, clock(), data, resp, client, tcp,
                              _extra(sel[1]) if sel is not None else None))
            else:
                self._drop(1)
            return resp

        return handle

    def enqueue(self, items: list[_Item]) -> None:
        """Queue queries another process answered (workers ship theirs to the
        supervisor's writer): the same bound as :meth:`wrap`, overflow dropped and counted."""
        room = 0 if self._stopping else max(0, self.queue_size - len(self._queue))
        self._queue.extend(items[:room])
        if len(items) > room:
            self._drop(len(items) - room)

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.dnstap_dropped += n

    def _wrote(self, n: int) -> None:
        self.written += n
        if self.metrics is not None:
            self.metrics.dnstap_written += n

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task (a file is opened at once; a socket is dialled in it)."""
        if self._task is not None:
            return
        self._stopping = False
        writer = self._file_writer() if self.file is not None else self._socket_writer()
        self._task = asyncio.get_running_loop().create_task(writer, name="geodns-dnstap")
        log.info("dnstap: writing to %s (sample %g)", self.target, self.sample)

    async def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (at most ``timeout`` s), send STOP, close."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, timeout)
        except TimeoutError:
            log.error("dnstap: %d queries not written at shutdown", len(self._queue))
        except Exception:  # the writer already logged it
            pass
        if self._queue:
            self._drop(len(self._queue))
            self._queue.clear()

    def _batch(self) -> tuple[bytes, int]:
        """Encode up to _BATCH queued queries as data frames."""
        n = min(_BATCH, len(self._queue))
        frames = []
        pair, frame, pop = self._encoder.pair, self._codec.encode_data, self._queue.popleft
        for _ in range(n):
            for payload in pair(pop()):
                frames.append(frame(payload))
        return b"".join(frames), n

    def _error(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_error >= _ERROR_LOG_INTERVAL:
            self._last_error = now
            log.error("dnstap: %s %s: %s (messages are dropped and counted until it works)",
                      what, self.target, exc)

    # --- file: START, data frames, STOP -------------------------------------------------

    async def _file_writer(self) -> None:
        assert self.file is not None
        path = self.file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > 0:
                # One Frame Streams file holds one stream: keep the last run's as PATH.1.
                os.replace(path, f"{path}.1")
            f = await aiofiles.open(path, "wb")
        except OSError as exc:
            self._error("cannot open", exc)
            await self._drain_dropping()
            return
        try:
            await f.write(self._codec.encode_ctrlstart(CONTENT_TYPE))
            while True:
                if not self._queue:
                    if self._stopping:
                        break
                    await asyncio.sleep(_POLL)
                    continue
                data, n = self._batch()
                try:
                    await f.write(data)
                    await f.flush()
                    self._wrote(n)
                except OSError as exc:
                    self._drop(n)
                    self._error("cannot write", exc)
            await f.write(self._codec.encode(fstrm.FSTRM_CONTROL_STOP))
        except OSError as exc:
            self._error("cannot write", exc)
        finally:
            with contextlib.suppress(OSError):
                await f.close()

    async def _drain_dropping(self) -> None:
        while not self._stopping:
            if self._queue:
                self._drop(len(self._queue))
                self._queue.clear()
            await asyncio.sleep(_POLL)

    # --- socket: READY/ACCEPT/START handshake, data frames, STOP/FINISH ----------------

    async def _socket_writer(self) -> None:
        assert self.socket is not None
        retry = 0.5
        while not self._stopping:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self.socket))
            except OSError as exc:
                self._error("cannot connect to", exc)
                await self._wait_dropping(retry)
                retry = min(retry * 2, _RETRY_MAX)
                continue
            try:
                await self._handshake(reader, writer)
                log.info("dnstap: connected to %s", self.socket)
                retry = 0.5
                await self._stream(reader, writer)
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self._error("lost", exc)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _wait_dropping(self, seconds: float) -> None:
        """While nobody listens, queued messages are dropped (counted), not hoarded."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            if self._queue:
                self._drop(len(self._queue))
                self._queue.clear()
            await asyncio.sleep(_POLL)

    async def _read_control(self, reader: asyncio.StreamReader) -> int:
        """One control frame from the collector; returns its type."""
        head = await asyncio.wait_for(reader.readexactly(8), _HANDSHAKE_TIMEOUT)
        escape, length = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        if escape != 0 or not 4 <= length <= 512:
            raise ValueError("collector sent something that is not a control frame")
        body = await asyncio.wait_for(reader.readexactly(length), _HANDSHAKE_TIMEOUT)
        codec = fstrm.FstrmCodec()
        codec.append(head + body)
        codec.process()
        ctrl, types, _ = codec.decode()
        if ctrl == fstrm.FSTRM_CONTROL_ACCEPT and CONTENT_TYPE not in types and types:
            raise ValueError(f"collector does not accept {CONTENT_TYPE.decode()}")
        return int(ctrl)

    async def _handshake(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        writer.write(self._codec.encode_ctrlready(CONTENT_TYPE))
        await writer.drain()
        ctrl = await self._read_control(reader)
        if ctrl != fstrm.FSTRM_CONTROL_ACCEPT:
            raise ValueError(f"expected ACCEPT from the collector, got control frame {ctrl}")
        writer.write(self._codec.encode_ctrlstart(CONTENT_TYPE))
        await writer.drain()

    async def _stream(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    break
                if reader.at_eof():
                    raise ConnectionResetError("collector closed the connection")
                await asyncio.sleep(_POLL)
                continue
            data, n = self._batch()
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                self._drop(n)
                raise
            self._wrote(n)
        writer.write(self._codec.encode(fstrm.FSTRM_CONTROL_STOP))
        await writer.drain()
        with contextlib.suppress(Exception):
            if await self._read_control(reader) != fstrm.FSTRM_CONTROL_FINISH:
                log.debug("dnstap: collector did not answer STOP with FINISH")


def status(tap: Dnstap | None) -> dict[str, Any] | None:
    """``dnstap`` for /status (None when off)."""
    if tap is None:
        return None
    return {"target": tap.target, "sample": tap.sample, "written": tap.written,
            "dropped": tap.dropped, "pending": tap.pending}
