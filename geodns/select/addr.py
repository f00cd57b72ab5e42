"""Client addresses as (family, int): cheap to mask, shift and compare on a cache miss."""

from __future__ import annotations

import socket

__all__ = ["bits_of", "format_addr", "mask", "parse_client"]

_V4_MAPPED = 0xFFFF


def parse_client(client: str | bytes) -> tuple[int, int]:
    """``(4|6, address)`` from packed bytes (4 or 16, taken at face value: the ECS family
    decides) or text (a v4-mapped ``::ffff:a.b.c.d`` from a dual-stack socket is IPv4;
    a ``%zone`` suffix is ignored).  ValueError on anything else."""
    if isinstance(client, bytes | bytearray | memoryview):
        raw = bytes(client)
        if len(raw) == 4:
            return 4, int.from_bytes(raw, "big")
        if len(raw) == 16:
            return 6, int.from_bytes(raw, "big")
        raise ValueError(f"packed client address must be 4 or 16 bytes, got {len(raw)}")
    text = client.split("%", 1)[0]
    try:
        if ":" in text:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
            if value >> 32 == _V4_MAPPED:
                return 4, value & 0xFFFFFFFF
            return 6, value
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        raise ValueError(f"invalid client address {client!r}") from None


def bits_of(family: int) -> int:
    return 32 if family == 4 else 128


def mask(family: int, addr: int, prefix: int) -> int:
    """``addr`` with every bit past ``prefix`` cleared."""
    bits = bits_of(family)
    if prefix >= bits:
        return addr
    if prefix <= 0:
        return 0
    return (addr >> (bits - prefix)) << (bits - prefix)


def format_addr(family: int, addr: int) -> str:
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, addr.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, addr.to_bytes(16, "big"))


def format_net(family: int, addr: int, prefix: int) -> str:
    """``a.b.c.d/len`` of the block of ``addr`` at ``prefix``."""
    return f"{format_addr(family, mask(family, addr, prefix))}/{prefix}"
