"""Domain names as uncompressed wire bytes: what the store is keyed on and answers are
built from.  Keys are the lowercased wire form (label length bytes are below 64, so
``bytes.lower`` only touches ASCII letters), and a name's suffixes are slices of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.name

__all__ = ["ancestors", "from_text", "is_subdomain", "lines", "parent", "to_name", "to_text"]

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*/")


def from_text(text: str, origin: bytes, origin_name: dns.name.Name) -> bytes:
    """Wire form of a master-file name relative to ``origin`` (``@`` is the origin).

    Plain names are encoded here; anything unusual (escapes, quotes, non-ASCII) goes
    through dnspython, which raises its own errors.
    """
    if text == "@":
        return origin
    raw = text.encode("ascii", "surrogateescape") if text.isascii() else b"\\"
    if b"\\" in raw or b'"' in raw:
        return dns.name.from_text(text, origin_name).to_wire()  # type: ignore[return-value]
    absolute = raw.endswith(b".")
    if absolute:
        raw = raw[:-1]
        if not raw:
            return b"\x00"
    out = bytearray()
    for label in raw.split(b"."):
        n = len(label)
        if n == 0 or n > 63 or not _PLAIN.issuperset(label):
            return dns.name.from_text(text, origin_name).to_wire()  # type: ignore[return-value]
        out.append(n)
        out += label
    wire = bytes(out) + (b"\x00" if absolute else origin)
    if len(wire) > 255:
        raise dns.name.NameTooLong
    return wire


def parent(key: bytes) -> bytes:
    return key[key[0] + 1:]


def ancestors(key: bytes, stop: int) -> Iterator[bytes]:
    """``key`` and its ancestors, longest first, down to ``stop`` bytes (the zone apex)."""
    i = 0
    n = len(key)
    while n - i >= stop:
        yield key[i:]
        if key[i] == 0:
            return
        i += key[i] + 1


def is_subdomain(key: bytes, origin: bytes) -> bool:
    """Is ``key`` ``origin`` or below it (both lowercase wire names)?"""
    if not key.endswith(origin):
        return False
    cut = len(key) - len(origin)
    i = 0
    while i < cut:
        i += key[i] + 1
    return i == cut


def to_name(wire: bytes) -> dns.name.Name:
    labels = []
    i = 0
    while wire[i]:
        labels.append(wire[i + 1:i + 1 + wire[i]])
        i += wire[i] + 1
    labels.append(b"")
    return dns.name.Name(labels)


def to_text(wire: bytes) -> str:
    return to_name(wire).to_text()


def lines(text: str) -> Iterator[str]:
    """The lines of ``text`` one at a time (``\\n`` separated, without it).

    Neither ``str.split`` nor ``io.StringIO`` here: both handle the whole text in one
    call, which for a zone of a million lines holds the interpreter for tens of ms, and
    zones are loaded in a worker thread beside the one answering queries."""
    start = 0
    find = text.find
    while True:
        end = find("\n", start)
        if end < 0:
            if start < len(text):
                yield text[start:]
            return
        yield text[start:end]
        start = end + 1
