"""UDP listener: one datagram in, at most one datagram out, answered synchronously.

The socket is read in a drain loop (``add_reader``) rather than through an asyncio
datagram transport: one readiness event answers every datagram already queued, up to
:data:`BATCH`, with one ``recvfrom`` and one ``sendto`` each and no transport layer in
between.  Under load that is most of the per-query cost outside the handler (the
diverse-ECS benchmark answers about 8 % more queries per second this way)."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any, Final, Protocol

__all__ = ["BATCH", "Answerer", "UDPReader"]

BATCH: Final = 64  # datagrams per readiness event before other tasks get the loop again
MAX_DATAGRAM: Final = 65535


class Answerer(Protocol):
    """What answers a datagram (:class:`geodns.handler.Handler`); None: no answer."""

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None: ...


class UDPReader:
    """Answers a bound UDP socket; answers the kernel cannot take yet wait, in order."""

    def __init__(self, handler: Answerer, sock: socket.socket,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.sock = sock
        self.loop = loop
        self.backlog: deque[tuple[bytes, Any]] = deque()  # (answer, address) not yet sent
        self.fd = sock.fileno()
        sock.setblocking(False)
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        send = self.sock.sendto
        handle = self.handler.handle  # looked up per event: dnstap may wrap it
        backlog = self.backlog
        for _ in range(BATCH):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket: next datagram
                continue
            resp = handle(data, addr[0], False)
            if resp is None:
                continue
            if backlog:  # keep the order: behind what already waits
                backlog.append((resp, addr))
                continue
            try:
                send(resp, addr)
            except (BlockingIOError, InterruptedError):
                backlog.append((resp, addr))
                self.loop.add_writer(self.fd, self._writable)
            except OSError:
                pass  # the client's address is unreachable: nothing to tell anyone

    def _writable(self) -> None:
        send = self.sock.sendto
        backlog = self.backlog
        while backlog:
            resp, addr = backlog[0]
            try:
                send(resp, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft()
        self.loop.remove_writer(self.fd)

    def close(self) -> None:
        """Stop reading (the socket itself is closed by its owner, the server)."""
        self.loop.remove_reader(self.fd)
        if self.backlog:
            self.loop.remove_writer(self.fd)
            self.backlog.clear()
