"""UDP listener: one datagram in, at most one datagram out, answered synchronously."""

from __future__ import annotations

import asyncio
from typing import Any

from geodns.handler import Handler


class UDPProtocol(asyncio.DatagramProtocol):
    """No task per packet: the handler runs inside datagram_received."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        resp = self.handler.handle(data, addr[0], False)
        if resp is not None and self.transport is not None:
            self.transport.sendto(resp, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from clients that went away are not our problem
