"""A minimal MaxMind DB writer for tests: tiny databases with networks we control.

Only what tests need: maps, strings, doubles, unsigned ints, arrays, booleans;
24, 28 or 32-bit records; IPv4 or IPv6 trees (IPv4 networks of an IPv6 tree live under
``::/96`` as in real GeoIP2 databases), optionally with IPv6 blocks aliased to that IPv4
tree as MaxMind's databases do (``::ffff:0:0/96``, ``2001::/32``, ``2002::/16``).  No
deduplication beyond identical Python objects.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

_META_MARKER = b"\xab\xcd\xefMaxMind.com"


def _ctrl(type_num: int, size: int) -> bytes:
    """Control byte(s) for ``type_num`` with payload ``size``."""
    if type_num <= 7:
        first_type, ext = type_num << 5, b""
    else:
        first_type, ext = 0, bytes([type_num - 7])
    if size < 29:
        return bytes([first_type | size]) + ext
    if size < 285:
        return bytes([first_type | 29]) + ext + bytes([size - 29])
    if size < 65821:
        return bytes([first_type | 30]) + ext + (size - 285).to_bytes(2, "big")
    return bytes([first_type | 31]) + ext + (size - 65821).to_bytes(3, "big")


class Uint:
    """An unsigned int with an explicit width (metadata fields are type-checked by readers)."""

    def __init__(self, value: int, width: int) -> None:
        self.value, self.width = value, width


def encode(value: Any) -> bytes:
    """MaxMind DB data-section encoding of ``value``."""
    if isinstance(value, Uint):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big") if value.value \
            else b""
        return _ctrl({16: 5, 32: 6, 64: 9}[value.width], len(raw)) + raw
    if isinstance(value, bool):
        return _ctrl(14, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _ctrl(2, len(raw)) + raw
    if isinstance(value, float):
        return _ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative ints not supported")
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
        if value < 1 << 16:
            return _ctrl(5, len(raw)) + raw
        if value < 1 << 32:
            return _ctrl(6, len(raw)) + raw
        return _ctrl(9, len(raw)) + raw
    if isinstance(value, dict):
        out = _ctrl(7, len(value))
        for k, v in value.items():
            out += encode(str(k)) + encode(v)
        return out
    if isinstance(value, list | tuple):
        return _ctrl(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class _Node:
    __slots__ = ("kids",)

    def __init__(self, fill: Any = None) -> None:
        self.kids: list[Any] = [fill, fill]  # _Node, a data record (wrapped), or None


class _Data:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


MAXMIND_ALIASES = ("::ffff:0:0/96", "2001::/32", "2002::/16")


def write_mmdb(path: Path, networks: list[tuple[str, Any]], ip_version: int = 6,
               database_type: str = "Test-City", record_size: int = 24,
               build_epoch: int = 1_700_000_000, aliases: tuple[str, ...] = ()) -> Path:
    """Write ``networks`` (CIDR, record dict) to ``path``; later, longer prefixes win.

    ``aliases``: IPv6 blocks that point at the IPv4 tree (``::/96``), e.g.
    :data:`MAXMIND_ALIASES`."""
    bits = 128 if ip_version == 6 else 32
    root = _Node()
    items = []
    for cidr, record in networks:
        net = ipaddress.ip_network(cidr)
        if net.version == 4 and ip_version == 6:
            start, plen = int(net.network_address), net.prefixlen + 96
        elif net.version == 6 and ip_version == 4:
            raise ValueError("IPv6 network in an IPv4 database")
        else:
            start, plen = int(net.network_address), net.prefixlen
        items.append((plen, start, _Data(record)))
    for plen, start, data in sorted(items, key=lambda t: t[0]):
        node = root
        for depth in range(plen - 1):
            b = (start >> (bits - 1 - depth)) & 1
            kid = node.kids[b]
            if not isinstance(kid, _Node):
                kid = _Node(kid)  # split a leaf: both halves keep the old record
                node.kids[b] = kid
            node = kid
        if plen == 0:
            raise ValueError("a /0 network is not supported")
        node.kids[(start >> (bits - plen)) & 1] = data
    if aliases:
        v4 = root
        for _ in range(96):
            kid = v4.kids[0]
            if not isinstance(kid, _Node):
                kid = v4.kids[0] = _Node(kid)
            v4 = kid
        for cidr in aliases:
            net = ipaddress.IPv6Network(cidr)
            start, plen = int(net.network_address), net.prefixlen
            node = root
            for depth in range(plen - 1):
                b = (start >> (127 - depth)) & 1
                kid = node.kids[b]
                if not isinstance(kid, _Node):
                    kid = node.kids[b] = _Node(kid)
                node = kid
            node.kids[(start >> (128 - plen)) & 1] = v4

    # Number nodes breadth-first (a node linked twice, the IPv4 tree, once), then data.
    order: list[_Node] = [root]
    index = {id(root): 0}
    i = 0
    while i < len(order):
        for kid in order[i].kids:
            if isinstance(kid, _Node) and id(kid) not in index:
                index[id(kid)] = len(order)
                order.append(kid)
        i += 1
    node_count = len(order)
    data_section = b""
    offsets: dict[int, int] = {}

    def record_value(kid: Any) -> int:
        nonlocal data_section
        if kid is None:
            return node_count
        if isinstance(kid, _Node):
            return index[id(kid)]
        key = id(kid.value)
        if key not in offsets:
            offsets[key] = len(data_section)
            data_section += encode(kid.value)
        return node_count + 16 + offsets[key]

    tree = bytearray()
    for node in order:
        left, right = (record_value(k) for k in node.kids)
        if max(left, right) >= 1 << record_size:
            raise ValueError(f"database too large for {record_size}-bit records")
        if record_size == 24:
            tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
        elif record_size == 28:
            middle = ((left >> 24) << 4) | (right >> 24)
            tree += ((left & 0xFFFFFF).to_bytes(3, "big") + bytes([middle])
                     + (right & 0xFFFFFF).to_bytes(3, "big"))
        else:
            tree += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    meta = {
        "node_count": Uint(node_count, 32),
        "record_size": Uint(record_size, 16),
        "ip_version": Uint(ip_version, 16),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": Uint(2, 16),
        "binary_format_minor_version": Uint(0, 16),
        "build_epoch": Uint(build_epoch, 64),
        "description": {"en": "geodns test database"},
    }
    path.write_bytes(bytes(tree) + b"\x00" * 16 + data_section + _META_MARKER + encode(meta))
    return path


def city(continent: str, country: str, lat: float, lon: float,
         subdivisions: tuple[str, ...] = (), name: str | None = None) -> dict[str, Any]:
    """A GeoIP2-City-shaped record."""
    rec: dict[str, Any] = {
        "continent": {"code": continent},
        "country": {"iso_code": country},
        "location": {"latitude": float(lat), "longitude": float(lon), "accuracy_radius": 50},
    }
    if subdivisions:
        rec["subdivisions"] = [{"iso_code": s} for s in subdivisions]
    if name:
        rec["city"] = {"names": {"en": name}}
    return rec


def asn(number: int, org: str | None = None) -> dict[str, Any]:
    """A GeoLite2-ASN-shaped record."""
    rec: dict[str, Any] = {"autonomous_system_number": Uint(number, 32)}
    if org is not None:
        rec["autonomous_system_organization"] = org
    return rec


def write_asn_mmdb(path: Path, networks: list[tuple[str, int, str | None]],
                   ip_version: int = 6, aliases: tuple[str, ...] = ()) -> Path:
    """A GeoLite2-ASN style database from (CIDR, ASN, organisation) rows."""
    return write_mmdb(path, [(cidr, asn(number, org)) for cidr, number, org in networks],
                      ip_version=ip_version, database_type="GeoLite2-ASN", aliases=aliases)
