"""Hostile TCP clients for the limits tests and ``tools/tcpabuse``: clients that never
read their answers, slowloris tricklers, and the measurements (server RSS, whether the
server has closed a connection).  Loopback only: every client binds its own source
address in 127.0.0.0/8, so per-address limits can be exercised from one machine.
"""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import struct
import time
from collections.abc import Iterable

from tests.helpers.net import LOCALHOST
from tests.helpers.queries import make_query, tcp_read_message

TCP_ESTABLISHED = 1
BIG_QUERY = make_query("example.com.", "NS", edns=0).to_wire()  # NS + glue: the big answer


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def source(i: int) -> str:
    """The i-th loopback source address (127.0.1.2, 127.0.1.3, ...): one per client."""
    return f"127.0.{1 + i // 250}.{2 + i % 250}"


def connect(port: int, src: str = LOCALHOST, timeout: float = 5.0,
            bufsize: int | None = None) -> socket.socket:
    """A TCP connection to the server from ``src`` (a loopback address); ``bufsize``
    shrinks our kernel buffers, so what the kernel holds is mostly the server's."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if bufsize is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((LOCALHOST, port))
    except BaseException:
        s.close()
        raise
    return s


def raise_fd_limit(need: int) -> None:
    """Enough descriptors for ``need`` sockets here (and in servers started after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of our end (1: established; anything else: the server has
    closed or reset it).  Works without reading, which never-reading clients must not."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def server_closed(sock: socket.socket) -> bool:
    """True once the server has closed or reset the connection (never blocks)."""
    if tcp_state(sock) != TCP_ESTABLISHED:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""  # readable: this does not block
    except BlockingIOError:
        return False
    except OSError:
        return True


def flood_without_reading(sock: socket.socket, seconds: float,
                          wire: bytes = BIG_QUERY) -> int:
    """Pipeline queries as fast as the server takes them for ``seconds``, never reading
    an answer; returns the bytes sent."""
    chunk = frame(wire) * 512
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            return sent  # the server stopped reading us: that is the point
        except OSError:
            return sent
    return sent


def trickle(socks: Iterable[socket.socket], data: bytes, offset: int) -> None:
    """Send byte ``offset`` of ``data`` on every socket (one slowloris step)."""
    byte = data[offset:offset + 1]
    for s in socks:
        with contextlib.suppress(OSError):
            s.send(byte)


def query_once(port: int, src: str, timeout: float = 5.0) -> float:
    """Seconds until a fresh connection from ``src`` is answered (raises if it is not)."""
    start = time.monotonic()
    with connect(port, src, timeout) as s:
        wire = make_query("static.example.com.", "A").to_wire()
        s.sendall(frame(wire))
        tcp_read_message(s)
    return time.monotonic() - start
