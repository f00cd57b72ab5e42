"""Loopback addresses and free ports (tests only ever talk to 127.0.0.1 and ::1)."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a port that is currently free for both UDP and TCP on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        tcp = socket.socket(family, socket.SOCK_STREAM)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("could not find a port free for both UDP and TCP")


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
