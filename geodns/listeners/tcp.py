"""DNS over TCP (RFC 7766): length-prefixed, pipelined, idle timeout, connection cap."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from geodns.handler import Handler

log = logging.getLogger("geodns.tcp")
# xfr hook: (query, peer) -> the messages answering an AXFR/IXFR, or None for any other
XfrFn = Callable[[bytes, str], "list[bytes] | None"]
LOG_EVERY = 10.0  # seconds between "connection cap reached" lines


@dataclass
class TCPLimits:
    idle_timeout: float = 10.0
    max_connections: int = 1000


class TCPConnections:
    """Shared bookkeeping for every TCP listener of one server."""

    def __init__(self, handler: Handler, limits: TCPLimits) -> None:
        self.handler = handler
        self.limits = limits
        self.xfr: XfrFn | None = None  # xfr hook (geodns.xfr.service.XfrService)
        self.open: set[TCPProtocol] = set()
        self.refused_total = 0
        self._refused_logged = 0
        self._last_log = -LOG_EVERY

    def refused(self, peer: str) -> None:
        """Count a connection over the cap; log at most once per LOG_EVERY seconds."""
        self.refused_total += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            log.warning("tcp connection cap %d reached; closed %d connection(s) since the "
                        "last report, latest from %s", self.limits.max_connections,
                        self.refused_total - self._refused_logged, peer)
            self._last_log = now
            self._refused_logged = self.refused_total

    def protocol(self) -> TCPProtocol:
        return TCPProtocol(self)

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()


class TCPProtocol(asyncio.Protocol):
    """Each complete frame is answered at once, in order; a slow peer only slows itself."""

    def __init__(self, shared: TCPConnections) -> None:
        self.shared = shared
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        if len(self.shared.open) >= self.shared.limits.max_connections:
            self.shared.refused(self.peer)
            transport.close()
            return
        self.shared.open.add(self)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.shared.limits.idle_timeout, self.close)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        handle = self.shared.handler.handle
        xfr = self.shared.xfr
        transport = self.transport
        assert transport is not None
        out = []
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if len(buf) < n + 2:
                break
            msg = bytes(buf[2:n + 2])
            del buf[:n + 2]
            if xfr is not None:  # xfr hook: a transfer answers with many messages
                many = xfr(msg, self.peer)
                if many is not None:
                    out += [len(m).to_bytes(2, "big") + m for m in many]
                    continue
            resp = handle(msg, self.peer, True)
            if resp is not None:
                out.append(len(resp).to_bytes(2, "big") + resp)
        if out:
            transport.write(b"".join(out))
        self._arm()

    def eof_received(self) -> bool | None:
        return None  # close our side once the client has finished sending

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its queries.
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.shared.open.discard(self)
