"""DNS over TCP (RFC 7766): length-prefixed, pipelined, with limits a hostile client
cannot get around.

* Memory per connection is bounded: queries are read into a small per-connection
  buffer (grown only as far as the message being received needs), and answering
  stops once unsent output passes a small high-water mark (reading stops too, so
  the kernel pushes back on the client).  A client that never reads its answers
  holds at most one read buffer and about one high-water mark of answers.
* Every connection has a deadline, checked by one sweep for all connections (no
  timer per read): a query must arrive whole within ``message_timeout`` of its
  first byte (trickling bytes does not extend it); output must make progress within
  ``idle_timeout``; an idle connection is closed after ``idle_timeout``.
* At most ``max_per_client`` connections per client (IPv4 address, IPv6 /64); when
  ``max_connections`` is reached the connection that has been useless longest (no
  answered query, no output progress) is closed to make room (RFC 7766 6.2.3), so
  a crowd of stalled connections never locks new clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from geodns.handler import Handler

log = logging.getLogger("geodns.tcp")
# xfr hook: (query, peer) -> the messages answering an AXFR/IXFR, or None for any other
# query; a worker process returns a future of them (the supervisor answers transfers)
XfrFn = Callable[[bytes, str], "list[bytes] | asyncio.Future[list[bytes]] | None"]
LOG_EVERY: Final = 10.0  # seconds between "limit reached" lines
READ_BUFFER: Final = 4096  # initial (and resting) read buffer per connection
MIN_READ: Final = 512  # room offered per read at least
GROW_STEP: Final = 16 * 1024  # the buffer grows by at most this per read


@dataclass
class TCPLimits:
    idle_timeout: float = 10.0  # no query (or no output progress) for this long: closed
    max_connections: int = 1000
    message_timeout: float = 3.0  # a query must arrive whole within this of its first byte
    max_per_client: int = 100  # connections per IPv4 address / IPv6 /64
    write_high: int = 16 * 1024  # unsent output above this: stop answering and reading
    write_low: int = 4 * 1024  # ... until it drains below this
    socket_buffer: int = 64 * 1024  # SO_SNDBUF/SO_RCVBUF per connection (0: kernel's own)


def client_key(address: str) -> str:
    """What the per-client limit counts by: the IPv4 address, or the IPv6 /64."""
    if ":" not in address:
        return address
    try:
        packed = ipaddress.IPv6Address(address.split("%", 1)[0]).packed
    except ValueError:
        return address
    return packed[:8].hex()


class _Throttled:
    """A warning logged at most once per LOG_EVERY seconds, with the count since."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.total = 0
        self._logged = 0
        self._last = -LOG_EVERY

    def hit(self, peer: str) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY:
            log.warning("%s; %d connection(s) since the last report, latest from %s",
                        self.text, self.total - self._logged, peer)
            self._last = now
            self._logged = self.total


class TCPConnections:
    """Shared bookkeeping for every TCP listener of one server: the open connections
    (least recently useful first), per-client counts, and the deadline sweep."""

    def __init__(self, handler: Handler, limits: TCPLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.xfr: XfrFn | None = None  # xfr hook (geodns.xfr.service.XfrService)
        self.open: OrderedDict[TCPProtocol, None] = OrderedDict()
        self.per_client: dict[str, int] = {}
        self.evicted = _Throttled(f"tcp connection cap {limits.max_connections} reached; "
                                  "closed the least recently useful connection")
        self.refused = _Throttled(f"tcp per-client limit {limits.max_per_client} reached; "
                                  "refused")
        self.timed_out = {"message": 0, "stalled": 0, "idle": 0}
        shortest = min(limits.idle_timeout, limits.message_timeout)
        self.tick = min(0.5, max(0.02, shortest / 8))
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol(self) -> TCPProtocol:
        return TCPProtocol(self)

    def admit(self, conn: TCPProtocol) -> bool:
        """Count ``conn`` in, making room if the cap is reached; False: refuse it."""
        key = conn.key
        if self.per_client.get(key, 0) >= self.limits.max_per_client:
            self.refused.hit(conn.peer)
            return False
        while len(self.open) >= self.limits.max_connections and self.open:
            oldest = next(iter(self.open))
            self.forget(oldest)
            oldest.drop()
            self.evicted.hit(conn.peer)
        self.open[conn] = None
        self.per_client[key] = self.per_client.get(key, 0) + 1
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self.tick, self._sweep)
        return True

    def forget(self, conn: TCPProtocol) -> None:
        if conn not in self.open:
            return
        del self.open[conn]
        n = self.per_client.get(conn.key, 0) - 1
        if n > 0:
            self.per_client[conn.key] = n
        else:
            self.per_client.pop(conn.key, None)

    def touch(self, conn: TCPProtocol) -> None:
        """``conn`` was just useful: last in line for eviction."""
        if conn in self.open:
            self.open.move_to_end(conn)

    def _sweep(self) -> None:
        """Close every connection past a deadline; runs every ``tick`` while any is open."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for conn in list(self.open):
            reason = conn.expired(now)
            if reason is not None:
                self.timed_out[reason] += 1
                self.forget(conn)
                conn.drop()
        if self.open:
            self._sweeper = asyncio.get_running_loop().call_later(self.tick, self._sweep)

    async def drain(self, timeout: float) -> None:
        """Let open connections finish (each closes when idle, or at ``timeout``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.open and loop.time() < end:
            await asyncio.sleep(0.05)
        self.close_all()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class TCPProtocol(asyncio.BufferedProtocol):
    """Each complete frame is answered at once, in order, while the client keeps up."""

    def __init__(self, shared: TCPConnections) -> None:
        self.shared = shared
        self.buf = bytearray(READ_BUFFER)
        self.start = 0  # unprocessed bytes are buf[start:end]
        self.end = 0
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.key = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.msg_started = 0.0  # loop time the partial message in buf began (0: none)
        self.useful = 0.0  # loop time of the last answered query or output progress
        self.unsent = 0  # output buffered at the last progress check
        self.paused = False  # output over the high-water mark: not answering, not reading
        self.waiting: asyncio.Future[list[bytes]] | None = None  # a transfer elsewhere
        self.eof = False  # the client finished sending while a transfer was on its way

    # --- lifecycle ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        self.useful = self.loop.time()
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.key = client_key(self.peer)
        if not self.shared.admit(self):
            transport.abort()  # type: ignore[attr-defined]
            return
        limits = self.shared.limits
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=limits.write_high, low=limits.write_low)
        sock = transport.get_extra_info("socket")
        if limits.socket_buffer and sock is not None:
            # Kernel buffers autotune to megabytes per connection; a client that never
            # reads would park that much of our memory in the kernel (and keep us
            # answering into it).  64 KiB still holds the largest DNS message.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.socket_buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, limits.socket_buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.forget(self)
        self.buf = bytearray()

    def eof_received(self) -> bool | None:
        if self.waiting is not None:  # a transfer is on its way: send it, then close
            self.eof = True
            return True
        return None  # close our side once the client has finished sending

    def close(self) -> None:
        """Graceful close (pending answers are still sent)."""
        if self.transport is not None:
            self.transport.close()

    def drop(self) -> None:
        """Close now; pending output is discarded (a client that does not read it)."""
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()

    def expired(self, now: float) -> str | None:
        """Which deadline has passed, if any (called by the sweep)."""
        limits = self.shared.limits
        transport = self.transport
        if transport is None or self.waiting is not None:
            return None
        unsent = transport.get_write_buffer_size()
        if unsent:  # also while closing: a close waits for output that may never drain
            if unsent < self.unsent:  # the client read some: progress
                self.useful = now
            self.unsent = unsent
            return "stalled" if now - self.useful >= limits.idle_timeout else None
        self.unsent = 0
        if transport.is_closing():
            return None
        if self.msg_started:
            return "message" if now - self.msg_started >= limits.message_timeout else None
        return "idle" if now - self.useful >= limits.idle_timeout else None

    # --- reading --------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        start, end = self.start, self.end
        buf = self.buf
        if len(buf) - end < MIN_READ:
            # Compact into a new buffer (the old one may still be exported to the
            # transport, so it is never resized in place), grown by what the message
            # being received still lacks, at most GROW_STEP at a time: memory follows
            # the bytes that arrived, not the length a client announces.
            have = end - start
            want = MIN_READ
            if have >= 2:
                lacking = ((buf[start] << 8) | buf[start + 1]) + 2 - have
                want = max(want, min(lacking, GROW_STEP))
            new = bytearray(max(READ_BUFFER, have + want))
            new[:have] = buf[start:end]
            self.buf, self.start, self.end = new, 0, have
            end = have
        return memoryview(self.buf)[end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.end += nbytes
        self._answer()

    def _answer(self) -> None:
        """Answer every complete frame while output stays under the high-water mark."""
        transport = self.transport
        assert transport is not None and self.loop is not None
        handle = self.shared.handler.handle
        xfr = self.shared.xfr
        buf = self.buf
        start = s = self.start
        e = self.end
        answered = False
        out: list[bytes] = []
        size = 0
        high = self.shared.limits.write_high
        while e - s >= 2 and not self.paused and self.waiting is None:
            n = (buf[s] << 8) | buf[s + 1]
            if e - s < n + 2:
                break
            msg = bytes(buf[s + 2:s + 2 + n])
            s += n + 2
            if xfr is not None:  # xfr hook: a transfer answers with many messages
                many = xfr(msg, self.peer)
                if isinstance(many, asyncio.Future):  # answered elsewhere: wait, in order
                    if out:
                        transport.write(b"".join(out))
                        out.clear()
                    self.waiting = many
                    transport.pause_reading()
                    many.add_done_callback(self._transferred)
                    break
                if many is not None:
                    answered = True
                    transport.write(b"".join(len(m).to_bytes(2, "big") + m for m in many))
                    continue
            resp = handle(msg, self.peer, True)
            if resp is not None:
                answered = True
                out.append(len(resp).to_bytes(2, "big") + resp)
                size += len(resp) + 2
                if size >= high:  # write now: pause_writing stops the loop if it must
                    transport.write(b"".join(out))
                    out.clear()
                    size = 0
        if out:
            transport.write(b"".join(out))
        if s == e:
            s = e = 0
            if len(buf) > READ_BUFFER:  # a big message is done: give the memory back
                self.buf = bytearray(READ_BUFFER)
        self.start, self.end = s, e
        now = self.loop.time()
        if answered:
            self.useful = now
            self.shared.touch(self)
        if self.paused or s == e:
            self.msg_started = 0.0
        elif s != start or not self.msg_started:
            self.msg_started = now  # a new message began in this read

    def _transferred(self, fut: asyncio.Future[list[bytes]]) -> None:
        """A transfer answered by another process: send it, then go on reading."""
        self.waiting = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if fut.cancelled() or fut.exception() is not None:
            log.warning("zone transfer for %s failed: %s", self.peer,
                        "cancelled" if fut.cancelled() else fut.exception())
            self.drop()
            return
        transport.write(b"".join(len(m).to_bytes(2, "big") + m for m in fut.result()))
        self.useful = self.loop.time() if self.loop is not None else self.useful
        if self.eof:
            transport.close()
            return
        if not self.paused:
            transport.resume_reading()
            self._answer()

    # --- back-pressure ----------------------------------------------------------------

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop answering and reading its queries.
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.paused and not self.transport.is_closing():
            self.paused = False
            if self.waiting is not None:
                return  # _transferred resumes
            self.transport.resume_reading()
            self._answer()  # frames that were waiting in the buffer
