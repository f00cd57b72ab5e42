"""The UDP drain loop on real loopback sockets: every datagram answered once, in order,
also past one batch and when the kernel will not take an answer yet."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

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


Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A bound server socket and a client connected to it, closed afterwards."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.connect(server.getsockname())
    client.settimeout(5)
    yield server, client
    server.close()
    client.close()


def _exchange(server: Any, client: socket.socket, queries: list[bytes], expect: int,
              after: tuple[bytes, ...] = ()) -> tuple[list[bytes], Echo, UDPReader]:
    """Send ``queries`` to a reader on ``server``, take the first ``expect`` answers,
    close the reader, then send ``after``."""
    handler = Echo()

    async def main() -> tuple[list[bytes], UDPReader]:
        loop = asyncio.get_running_loop()
        reader = UDPReader(handler, server, loop)
        for q in queries:
            client.send(q)
        got = [await loop.run_in_executor(None, client.recv, 512) for _ in range(expect)]
        reader.close()
        for q in after:
            client.send(q)
        await asyncio.sleep(0.2 if after else 0)
        return got, reader

    got, reader = asyncio.run(main())
    return got, handler, reader


def _more(client: socket.socket) -> bytes | None:
    """Whatever else arrives within 0.2 s (None: nothing)."""
    client.settimeout(0.2)
    try:
        return client.recv(512)
    except TimeoutError:
        return None


def test_every_datagram_is_answered_in_order_past_one_batch(pair: Pair) -> None:
    queries = [b"q%04d" % i for i in range(3 * BATCH + 5)]
    got, handler, _ = _exchange(*pair, queries, len(queries))
    assert got == [b"re:" + q for q in queries]
    assert set(handler.clients) == {"127.0.0.1"}


def test_dropped_queries_get_no_answer_and_do_not_stop_the_loop(pair: Pair) -> None:
    got, _, _ = _exchange(*pair, [b"drop1", b"keep1", b"drop2", b"keep2"], 2)
    assert got == [b"re:keep1", b"re:keep2"]
    assert _more(pair[1]) is None


def test_answers_the_kernel_refuses_wait_and_keep_their_order(pair: Pair) -> None:
    server, client = pair
    queries = [b"a", b"b", b"c", b"d", b"e"]
    got, _, reader = _exchange(Stalling(server, times=3), client, queries, len(queries))
    assert got == [b"re:" + q for q in queries]
    assert not reader.backlog


def test_a_closed_reader_answers_nothing_more(pair: Pair) -> None:
    got, _, _ = _exchange(*pair, [b"one"], 1, after=(b"two",))
    assert got == [b"re:one"]
    assert _more(pair[1]) is None
