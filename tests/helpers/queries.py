"""Asking a server over UDP and TCP on loopback, every call bounded in time."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from tests.helpers.net import LOCALHOST
from tests.helpers.wirecheck import dnslib_check


def udp_query(
    port: int,
    wire: bytes,
    timeout: float = 2.0,
    host: str = LOCALHOST,
    check: bool = True,
) -> bytes | None:
    """Send one UDP datagram; return the reply or None if nothing arrived in time.

    Replies are run through :func:`dnslib_check` unless ``check`` is False.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(wire)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            s.settimeout(remaining)
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            # ignore stray datagrams that do not carry our id (when we have one)
            if len(wire) >= 2 and len(data) >= 2 and data[:2] != wire[:2]:
                continue
            break
    if check:
        dnslib_check(data)
    return data


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def tcp_read_message(sock: socket.socket, check: bool = True) -> bytes:
    (length,) = struct.unpack("!H", recv_exact(sock, 2))
    data = recv_exact(sock, length)
    if check:
        dnslib_check(data)
    return data


def tcp_connect(port: int, host: str = LOCALHOST, timeout: float = 5.0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def tcp_query(
    port: int,
    wire: bytes,
    timeout: float = 5.0,
    host: str = LOCALHOST,
    check: bool = True,
) -> bytes:
    """Send one length-prefixed query over a fresh TCP connection; return the reply."""
    with tcp_connect(port, host, timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        return tcp_read_message(s, check=check)


def make_query(
    qname: str,
    qtype: str | int = "A",
    *,
    edns: int | None = None,
    payload: int = 1232,
    do: bool = False,
    rd: bool = False,
    options: Sequence[dns.edns.Option] = (),
    qclass: str | int = "IN",
) -> dns.message.QueryMessage:
    """A dnspython query; ``edns=None`` means no OPT record (unless ``do``/``options``)."""
    use_edns = edns if edns is not None else (0 if (do or options) else -1)
    q = dns.message.make_query(
        qname,
        qtype,
        rdclass=qclass,
        use_edns=use_edns,
        payload=payload,
        want_dnssec=do,
        options=list(options) or None,
    )
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def ask(
    port: int,
    query: dns.message.Message,
    *,
    tcp: bool = False,
    timeout: float = 3.0,
    host: str = LOCALHOST,
) -> dns.message.Message:
    """Send a dnspython query over UDP or TCP and return the parsed (and dnslib-checked) reply."""
    wire = query.to_wire()
    if tcp:
        data = tcp_query(port, wire, timeout=timeout, host=host)
    else:
        got = udp_query(port, wire, timeout=timeout, host=host)
        assert got is not None, f"no UDP answer from {host}:{port} for {query.question}"
        data = got
    msg = dns.message.from_wire(data)
    assert msg.id == query.id
    return msg
