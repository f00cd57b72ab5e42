"""Listening sockets: bound with SO_REUSEPORT, one set per worker, and handed over
whole to a server that replaces this one.

Every DNS listener is a group of sockets bound to the same address with
SO_REUSEPORT, one per worker, so the kernel spreads queries over the workers by
flow.  The process that binds them keeps them open for the life of the node: a
worker that dies and is restarted reads the same socket (queries that arrived
meanwhile are still queued there), and ``--replace`` hands every socket, the
control listener's too, to the new server over a Unix socket (SCM_RIGHTS).  The
old and new servers then read the very same sockets until the old one stops
reading: no query is dropped and no port is ever closed, which binding fresh
SO_REUSEPORT sockets beside the old ones cannot promise (the datagrams queued in
a socket that closes are lost).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from geodns.service import bind_error

log = logging.getLogger("geodns.workers")

UDP_BUFFER: Final = 4 << 20
MAX_FDS: Final = 200  # per SCM_RIGHTS message (the kernel allows 253)


@dataclass
class Listener:
    """One listening socket: ``kind`` is udp, tcp or http (the control API)."""

    kind: str
    host: str
    port: int
    sock: socket.socket

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "host": self.host, "port": self.port}


def bind(host: str, port: int, kind: str, reuseport: bool = True) -> socket.socket:
    """A non-blocking socket bound to ``host:port``; BindError says what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, stype)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if stype == socket.SOCK_DGRAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
    try:
        sock.bind((host, port))
        if stype == socket.SOCK_STREAM:
            sock.listen(1024)
    except OSError as exc:  # name the address and the fix (service.py)
        sock.close()
        raise bind_error(exc, host, port, "control API" if kind == "http" else kind) \
            from None
    sock.setblocking(False)
    return sock


def bind_dns(endpoints: list[tuple[str, int]], copies: int) -> list[Listener]:
    """``copies`` UDP and TCP sockets for every endpoint (port 0: one free port, the
    same for UDP and TCP and all copies)."""
    out: list[Listener] = []
    try:
        for host, port in endpoints:
            for _ in range(copies):
                usock = bind(host, port, "udp")
                port = usock.getsockname()[1]
                out.append(Listener("udp", host, port, usock))
                out.append(Listener("tcp", host, port, bind(host, port, "tcp")))
    except BaseException:
        for listener in out:
            listener.sock.close()
        raise
    return out


def grow(listeners: list[Listener], endpoints: list[tuple[str, int]],
         copies: int) -> list[Listener]:
    """Taken-over sockets plus new ones until every endpoint has ``copies`` of each
    kind (sockets for endpoints no longer configured are closed)."""
    wanted = {(h, p) for h, p in endpoints}
    kept = []
    for listener in listeners:
        if listener.kind == "http" or (listener.host, listener.port) in wanted \
                or any(h == listener.host and p == 0 for h, p in endpoints):
            kept.append(listener)
        else:
            log.info("no longer listening on %s port %d (%s)", listener.host, listener.port,
                     listener.kind)
            listener.sock.close()
    for host, port in endpoints:
        for kind in ("udp", "tcp"):
            have = [x for x in kept if x.kind == kind and x.host == host
                    and (x.port == port or port == 0)]
            if port == 0 and have:
                port = have[0].port
            for _ in range(copies - len(have)):
                sock = bind(host, port, kind)
                kept.append(Listener(kind, host, sock.getsockname()[1], sock))
    return kept


def slots(listeners: list[Listener], workers: int) -> list[list[Listener]]:
    """The DNS sockets each worker reads: copy j of an endpoint goes to worker j mod N
    (more copies than workers, after a takeover from a bigger server: some read two)."""
    out: list[list[Listener]] = [[] for _ in range(workers)]
    seen: dict[tuple[str, str, int], int] = {}
    for listener in listeners:
        if listener.kind == "http":
            continue
        key = (listener.kind, listener.host, listener.port)
        j = seen.get(key, 0)
        seen[key] = j + 1
        out[j % workers].append(listener)
    return out


# ---------------------------------------------------------------- takeover socket

def takeover_path(endpoints: list[tuple[str, int]]) -> Path:
    """Where a server on these endpoints answers ``--replace`` (named by the first
    endpoint; systemd's RuntimeDirectory when there is one)."""
    base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] \
        or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    host, port = endpoints[0] if endpoints else ("none", 0)
    name = re.sub(r"[^0-9A-Za-z.]+", "_", host)
    return Path(base) / f"geodns-{os.getuid()}-{name}-{port}.sock"


def send_listeners(conn: socket.socket, listeners: list[Listener], pid: int) -> None:
    """The takeover reply: one JSON line describing the sockets, then their fds."""
    head = json.dumps({"pid": pid, "listeners": [x.describe() for x in listeners]})
    conn.sendall(head.encode() + b"\n")
    fds = [x.sock.fileno() for x in listeners]
    for i in range(0, len(fds), MAX_FDS):
        socket.send_fds(conn, [b"F"], fds[i:i + MAX_FDS])
    if not fds:
        conn.sendall(b"F")


def receive_listeners(conn: socket.socket) -> tuple[int, list[Listener]]:
    """The other side of :func:`send_listeners` (a blocking socket)."""
    head = b""
    while not head.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("the running server closed the takeover socket")
        head += chunk
    info = json.loads(head)
    wanted = len(info["listeners"])
    fds: list[int] = []
    if not wanted:
        conn.recv(1)
    while len(fds) < wanted:
        _, got, _, _ = socket.recv_fds(conn, 1, MAX_FDS)
        if not got:
            raise ConnectionError("the running server stopped sending sockets")
        fds.extend(got)
    out = []
    for desc, fd in zip(info["listeners"], fds, strict=True):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        out.append(Listener(desc["kind"], desc["host"], int(desc["port"]), sock))
    return int(info["pid"]), out

