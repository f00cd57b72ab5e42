"""Query messages built by hand: the diverse workloads write millions of them, which
dnspython would take minutes to build one Message at a time."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
EDNS_PAYLOAD = 1232


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def query_prefix(qname: str, qtype: str, edns: bool = True) -> bytes:
    """Header (ID 0: dnsperf sets its own; RD off, as a resolver asks an authority) and
    question, with ARCOUNT 1 when an OPT record will follow."""
    header = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 1 if edns else 0)
    return header + encode_name(qname) + struct.pack("!HH", QTYPES[qtype], 1)


def opt_record(options: bytes = b"") -> bytes:
    return b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(options)) + options


def plain_query(qname: str, qtype: str) -> bytes:
    return query_prefix(qname, qtype) + opt_record()


class BinaryWriter:
    """dnsperf -B input: every message preceded by its 2-byte big-endian length."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("wb", buffering=1 << 20)
        self.count = 0

    def add(self, wire: bytes) -> None:
        self.file.write(struct.pack("!H", len(wire)) + wire)
        self.count += 1

    def add_all(self, wires: Iterable[bytes]) -> None:
        for wire in wires:
            self.add(wire)

    def close(self) -> None:
        self.file.close()


class EcsQueries:
    """Fast ECS queries for one (name, type): only the address part changes."""

    def __init__(self, qname: str, qtype: str) -> None:
        self.prefix = query_prefix(qname, qtype)

    def v4(self, net24: int) -> bytes:
        """``net24``: the /24 as an integer (address >> 8)."""
        body = struct.pack("!HBB", 1, 24, 0) + net24.to_bytes(3, "big")
        return self._with(body)

    def v6(self, net56: int) -> bytes:
        """``net56``: the /56 as an integer (address >> 72)."""
        body = struct.pack("!HBB", 2, 56, 0) + net56.to_bytes(7, "big")
        return self._with(body)

    def _with(self, body: bytes) -> bytes:
        opt = struct.pack("!HH", 8, len(body)) + body
        return self.prefix + b"\x00" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(opt)) + opt
