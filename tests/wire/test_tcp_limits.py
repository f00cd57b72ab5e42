"""TCP connection cap: connections over the cap are closed; those under it keep working."""

from __future__ import annotations

import socket
import time

from tests.util import REPO_ROOT, geodns_server, make_query, tcp_connect, tcp_read_message


def query(sock: socket.socket) -> bytes:
    wire = make_query("static.example.com.", "A").to_wire()
    sock.sendall(len(wire).to_bytes(2, "big") + wire)
    return tcp_read_message(sock)


def closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_over_the_cap_are_closed() -> None:
    args = ["--config", str(REPO_ROOT / "geodns.toml"), "--tcp-max-connections", "3",
            "--tcp-idle-timeout", "30"]
    with geodns_server(REPO_ROOT / "zones", args) as srv:
        time.sleep(0.3)  # the readiness probe's own TCP connection has closed
        held = [tcp_connect(srv.port) for _ in range(3)]
        try:
            for s in held:
                assert query(s)
            extra = tcp_connect(srv.port)
            assert closed_by_peer(extra)
            extra.close()
            assert all(query(s) for s in held)  # the held connections still work
            held.pop().close()
            time.sleep(0.3)
            again = tcp_connect(srv.port)
            held.append(again)
            assert query(again)  # a slot freed up
            assert "connection cap 3 reached; closed 1 connection(s)" in srv.stderr_text()
        finally:
            for s in held:
                s.close()
