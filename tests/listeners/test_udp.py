"""The UDP drain loop on real loopback sockets: every datagram answered once, in order,
also past one batch and when the kernel will not take an answer yet."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from geodns.listeners.udp import BATCH, UDPReader


class Echo:
    """A handler that answers ``b"re:" + query`` and drops queries starting with ``drop``."""

    def __init__(self) -> None:
        self.clients: list[str] = []

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        self.clients.append(client)
        return None if data.startswith(b"drop") else b"re:" + data


class Stalling:
    """A socket whose ``sendto`` says EAGAIN the first ``times`` times (a full send buffer)."""

    def __init__(self, sock: socket.socket, times: int) -> None:
        self.sock = sock
        self.times = times

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def recvfrom(self, size: int) -> tuple[bytes, Any]:
        return self.sock.recvfrom(size)

    def sendto(self, data: bytes, addr: Any) -> int:
        if self.times > 0:
            self.times -= 1
            raise BlockingIOError
        return self.sock.sendto(data, addr)


def _pair() -> tuple[socket.socket, socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.connect(server.getsockname())
    client.settimeout(5)
    return server, client


async def _exchange(server: Any, client: socket.socket, queries: list[bytes],
                    expect: int) -> tuple[list[bytes], Echo, UDPReader]:
    """Send ``queries`` to a reader on ``server``; the first ``expect`` answers."""
    handler = Echo()
    reader = UDPReader(handler, server, asyncio.get_running_loop())
    for q in queries:
        client.send(q)
    loop = asyncio.get_running_loop()
    got = [await loop.run_in_executor(None, client.recv, 512) for _ in range(expect)]
    return got, handler, reader


def test_every_datagram_is_answered_in_order_past_one_batch() -> None:
    server, client = _pair()
    queries = [b"q%04d" % i for i in range(3 * BATCH + 5)]

    async def main() -> tuple[list[bytes], Echo]:
        got, handler, reader = await _exchange(server, client, queries, len(queries))
        reader.close()
        return got, handler

    try:
        got, handler = asyncio.run(main())
    finally:
        server.close()
        client.close()
    assert got == [b"re:" + q for q in queries]
    assert set(handler.clients) == {"127.0.0.1"}


def test_dropped_queries_get_no_answer_and_do_not_stop_the_loop() -> None:
    server, client = _pair()
    queries = [b"drop1", b"keep1", b"drop2", b"keep2"]

    async def main() -> list[bytes]:
        got, _, reader = await _exchange(server, client, queries, 2)
        reader.close()
        return got

    try:
        got = asyncio.run(main())
        client.settimeout(0.2)
        try:
            extra = client.recv(512)
        except TimeoutError:
            extra = None
    finally:
        server.close()
        client.close()
    assert got == [b"re:keep1", b"re:keep2"]
    assert extra is None


def test_answers_the_kernel_refuses_wait_and_keep_their_order() -> None:
    server, client = _pair()
    stalling = Stalling(server, times=3)
    queries = [b"a", b"b", b"c", b"d", b"e"]

    async def main() -> tuple[list[bytes], UDPReader]:
        got, _, reader = await _exchange(stalling, client, queries, len(queries))
        reader.close()
        return got, reader

    try:
        got, reader = asyncio.run(main())
    finally:
        server.close()
        client.close()
    assert got == [b"re:" + q for q in queries]
    assert not reader.backlog


def test_a_closed_reader_answers_nothing_more() -> None:
    server, client = _pair()

    async def main() -> list[bytes]:
        got, _, reader = await _exchange(server, client, [b"one"], 1)
        reader.close()
        client.send(b"two")
        await asyncio.sleep(0.2)
        return got

    try:
        got = asyncio.run(main())
        client.settimeout(0.2)
        try:
            late = client.recv(512)
        except TimeoutError:
            late = None
    finally:
        server.close()
        client.close()
    assert got == [b"re:one"]
    assert late is None
