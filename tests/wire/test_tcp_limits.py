"""TCP limits against a real server and hostile clients: clients that never read,
slowloris tricklers, the connection cap (closing the least recently useful connection
to make room, RFC 7766 6.2.3) and the per-client limit."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from geodns.listeners.tcp import client_key
from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import make_query, tcp_read_message
from tests.helpers.servers import geodns_server
from tests.wire.tcp_abuse import (
    connect,
    flood_without_reading,
    frame,
    query_once,
    raise_fd_limit,
    rss_kib,
    server_closed,
    source,
    trickle,
)

pytestmark = pytest.mark.timeout(120)
CONFIG = ["--config", str(REPO_ROOT / "geodns.toml")]


def query(sock: socket.socket) -> bytes:
    sock.sendall(frame(make_query("static.example.com.", "A").to_wire()))
    return tcp_read_message(sock)


def wait_until(cond: Callable[[], bool], seconds: float, step: float = 0.1) -> float | None:
    """Seconds until ``cond()`` held, or None if it never did within ``seconds``."""
    start = time.monotonic()
    while True:
        if cond():
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            return None
        time.sleep(step)


def test_never_reading_clients_are_closed_and_memory_stays_bounded() -> None:
    """300 clients pipeline queries for the largest answer and never read: the server
    stops answering them at a small high-water mark (RSS grows < 25 MiB in all, under
    90 KiB a client) and closes each once its output has made no progress for the idle
    timeout (3 s here)."""
    n = 300
    raise_fd_limit(n + 200)
    args = [*CONFIG, "--tcp-idle-timeout", "3", "--tcp-max-per-client", "5"]
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        base = rss_kib(srv.proc.pid)
        socks = [connect(srv.port, source(i), bufsize=4096) for i in range(n)]
        try:
            for s in socks:
                flood_without_reading(s, 0.2)
            flooded = time.monotonic()
            peak = rss_kib(srv.proc.pid)

            def all_closed() -> bool:
                nonlocal peak
                peak = max(peak, rss_kib(srv.proc.pid))
                for s in socks:
                    flood_without_reading(s, 0.001)  # keep pushing, as an attacker would
                return all(server_closed(s) for s in socks)

            took = wait_until(all_closed, 15.0, step=0.25)
            held = time.monotonic() - flooded
            assert took is not None, (
                f"{sum(not server_closed(s) for s in socks)} of {n} never-reading clients "
                f"still open {held:.1f} s after the flood (idle timeout 3 s)")
            assert held < 3 + 4, f"never-reading clients held their slots {held:.1f} s"
            grew = (peak - base) / 1024
            assert grew < 25, f"RSS grew {grew:.1f} MiB with {n} never-reading clients"
            assert srv.alive()
            assert query_once(srv.port, "127.0.0.1") < 2.0
        finally:
            for s in socks:
                s.close()


def test_trickling_connections_do_not_lock_out_new_clients() -> None:
    """1000 slowloris connections (10 sources x 100, one byte every 0.4 s) fill the cap;
    a new client is still answered at once (the least recently useful connection makes
    room), and every trickler is closed by the message deadline (1.5 s here) although
    each byte arrives well within the idle timeout."""
    n = 1000
    raise_fd_limit(n + 200)
    args = [*CONFIG, "--tcp-max-connections", str(n), "--tcp-message-timeout", "1.5"]
    wire = frame(make_query("static.example.com.", "A").to_wire())
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        socks = [connect(srv.port, source(i % 10)) for i in range(n)]
        try:
            started = time.monotonic()
            trickle(socks, wire, 0)
            for offset in range(1, 4):
                time.sleep(0.4)
                trickle(socks, wire, offset)
            took = query_once(srv.port, "127.0.0.200", timeout=5.0)
            assert took < 2.0, f"a new client waited {took:.2f} s behind 1000 tricklers"
            for offset in range(4, 8):  # keep trickling: it must not keep them open
                time.sleep(0.4)
                trickle(socks, wire, offset)
            left = wait_until(lambda: all(server_closed(s) for s in socks), 3.0)
            held = time.monotonic() - started
            assert left is not None, (
                f"{sum(not server_closed(s) for s in socks)} of {n} tricklers still open "
                f"after {held:.1f} s (message deadline 1.5 s)")
            assert query_once(srv.port, "127.0.0.201") < 2.0
        finally:
            for s in socks:
                s.close()


def test_cap_closes_the_least_recently_useful_connection() -> None:
    args = [*CONFIG, "--tcp-max-connections", "3", "--tcp-idle-timeout", "30"]
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        time.sleep(0.3)  # the readiness probe's own TCP connection has closed
        held = [connect(srv.port, source(i)) for i in range(3)]
        try:
            for s in held:
                assert query(s)
                time.sleep(0.05)
            assert query(held[0])  # now held[1] has been useless the longest
            extra = connect(srv.port, source(3))
            held.append(extra)
            assert query(extra)  # the newcomer is served
            assert wait_until(lambda: server_closed(held[1]), 3.0) is not None
            assert all(query(s) for s in (held[0], held[2], extra))
            assert not any(server_closed(s) for s in (held[0], held[2], extra))
            assert "tcp connection cap 3 reached; closed the least recently useful " \
                   "connection; 1 connection(s)" in srv.stderr_text()
        finally:
            for s in held:
                s.close()


def test_per_client_limit() -> None:
    args = [*CONFIG, "--tcp-max-per-client", "3"]
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        mine = [connect(srv.port, "127.0.0.2") for _ in range(3)]
        try:
            assert all(query(s) for s in mine)
            over = connect(srv.port, "127.0.0.2")
            mine.append(over)
            assert wait_until(lambda: server_closed(over), 3.0) is not None
            assert query_once(srv.port, "127.0.0.3") < 2.0  # other clients are not affected
            assert all(query(s) for s in mine[:3])  # nor are the first three
            mine.pop(0).close()
            time.sleep(0.3)
            again = connect(srv.port, "127.0.0.2")
            mine.append(again)
            assert query(again)  # a slot of its own freed up
            assert "tcp per-client limit 3 reached; refused; 1 connection(s) since the last " \
                   "report, latest from 127.0.0.2" in srv.stderr_text()
        finally:
            for s in mine:
                s.close()


def test_message_deadline_is_not_extended_by_each_byte() -> None:
    """One byte every 0.3 s (idle timeout 10 s): closed at the 1 s message deadline;
    a query split in two parts within the deadline is answered."""
    args = [*CONFIG, "--tcp-message-timeout", "1"]
    wire = frame(make_query("static.example.com.", "A").to_wire())
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        with connect(srv.port) as slow:
            slow.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.monotonic()
            for i in range(12):
                if server_closed(slow):
                    break
                trickle([slow], wire, i)
                time.sleep(0.3)
            closed = wait_until(lambda: server_closed(slow), 2.0)
            held = time.monotonic() - start
            assert closed is not None and held < 2.5, f"a trickler held on for {held:.1f} s"
        with connect(srv.port) as ok:
            ok.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(3):  # three queries, each in two parts 0.4 s apart
                ok.sendall(wire[:5])
                time.sleep(0.4)
                ok.sendall(wire[5:])
                assert tcp_read_message(ok)


def test_client_key_counts_ipv6_by_64() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
