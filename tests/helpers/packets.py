"""Hand-built DNS packets (headers, names, questions, OPT, ECS) for protocol tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence


def raw_header(
    qid: int = 0x1234,
    *,
    qr: int = 0,
    opcode: int = 0,
    aa: int = 0,
    tc: int = 0,
    rd: int = 0,
    ra: int = 0,
    z: int = 0,
    rcode: int = 0,
    qd: int = 1,
    an: int = 0,
    ns: int = 0,
    ar: int = 0,
) -> bytes:
    flags = (
        (qr << 15)
        | (opcode << 11)
        | (aa << 10)
        | (tc << 9)
        | (rd << 8)
        | (ra << 7)
        | (z << 4)
        | rcode
    )
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def encode_name(name: str) -> bytes:
    """Uncompressed wire form of a name, preserving case."""
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode()
            out += bytes([len(b)]) + b
    return out + b"\x00"


def raw_question(name: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return encode_name(name) + struct.pack("!HH", qtype, qclass)


def raw_opt(
    payload: int = 1232,
    *,
    ext_rcode: int = 0,
    version: int = 0,
    do: bool = False,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    rdata = b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)
    ttl = (ext_rcode << 24) | (version << 16) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", 41, payload, ttl, len(rdata)) + rdata


def ecs_option(family: int, source: int, scope: int, address: bytes) -> tuple[int, bytes]:
    return (8, struct.pack("!HBB", family, source, scope) + address)
