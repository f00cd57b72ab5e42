"""Answers that are more than one stored RRset, rendered once into a :class:`Rendered`.

CNAME chains, referrals, negative answers inside a chain, ANY, and answers whose
targets' addresses go in the additional section are laid out here, with every owner
name written as a pointer: to the question, to a suffix of it, or to a name inside an
earlier record's data (a CNAME target is the next owner).  Names inside record data
stay uncompressed, which is what lets later owners point into them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from dns.rdatatype import RdataType as T

from geodns.wire.encode import AA, QR, Rendered
from geodns.zones.names import ancestors
from geodns.zones.store import Direct, Lookup, Negative, Result, ZoneStore
from geodns.zones.zone import Zone

__all__ = ["compose", "compose_lookup"]

# Where a name sits in each type's data (types whose targets later owners point at).
_NAME_AT: Final = {T.CNAME: 0, T.NS: 0, T.PTR: 0, T.DNAME: 0, T.MX: 2, T.SRV: 6}
_WANTS_ADDRESSES: Final = frozenset({T.MX, T.NS, T.SRV})
_RR: Final = struct.Struct("!HHIH")


class _Writer:
    """Appends records after the question, remembering where names are."""

    def __init__(self, qkey: bytes) -> None:
        self.parts: list[bytes] = []
        self.pos = 12 + len(qkey) + 4
        self.names: dict[bytes, int] = {}
        self._remember(qkey, 12)

    def _remember(self, key: bytes, offset: int) -> None:
        i = 0
        while key[i:] not in self.names and key[i] != 0:
            self.names[key[i:]] = offset + i
            i += key[i] + 1

    def owner(self, key: bytes) -> bytes:
        """A pointer to ``key``, writing the labels nobody holds yet."""
        names = self.names
        found = names.get(key)
        if found is not None:
            return (0xC000 | found).to_bytes(2, "big")
        head = bytearray()
        for anc in ancestors(key, 1):
            found = names.get(anc)
            if found is not None:
                return bytes(head) + (0xC000 | found).to_bytes(2, "big")
            if anc == b"\x00":
                break
            head += anc[:anc[0] + 1]
        return bytes(head) + b"\x00"

    def rrset(self, key: bytes, blob: bytes) -> int:
        """Every record of a stored RRset with ``key`` as owner; returns the count."""
        rtype = int.from_bytes(blob[:2], "big")
        at = _NAME_AT.get(rtype)  # type: ignore[call-overload]
        n = 0
        off = 4
        end = len(blob)
        while off < end:
            rdlen = int.from_bytes(blob[off + 10:off + 12], "big")
            owner = self.owner(key)
            start = self.pos + len(owner)
            self.parts.append(owner + blob[off + 2:off + 12 + rdlen])
            if not owner.endswith(b"\x00") and len(owner) > 2:
                self._remember(key, self.pos)  # labels written here now
            if at is not None:
                self._remember(blob[off + 12 + at:off + 12 + rdlen].lower(), start + 10 + at)
            self.pos = start + 10 + rdlen
            off += 12 + rdlen
            n += 1
        return n

    def negative(self, zone: Zone) -> int:
        owner = self.owner(zone.key)
        self.parts.append(owner + zone.negative_tail)
        self.pos += len(owner) + len(zone.negative_tail)
        return 1

    def body(self) -> bytes:
        return b"".join(self.parts)


def _targets(answer: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Names in the answer whose addresses a resolver will want next (MX, NS, SRV)."""
    out: list[bytes] = []
    for _, blob in answer:
        rtype = int.from_bytes(blob[:2], "big")
        if rtype not in _WANTS_ADDRESSES:
            continue
        at = _NAME_AT[rtype]  # type: ignore[index]
        off = 4
        while off < len(blob):
            rdlen = int.from_bytes(blob[off + 10:off + 12], "big")
            target = blob[off + 12 + at:off + 12 + rdlen].lower()
            if target not in out:
                out.append(target)
            off += 12 + rdlen
    return out


def _addresses(store: ZoneStore | None, targets: list[bytes]) -> list[tuple[bytes, bytes]]:
    """In-zone A and AAAA RRsets of ``targets`` (not below a delegation)."""
    if store is None:
        return []
    out: list[tuple[bytes, bytes]] = []
    for target in targets:
        zone = store.zone_for(target)
        if zone is None or zone.expired:
            continue
        if zone.cuts and any(anc in zone.cuts for anc in ancestors(target, len(zone.key) + 1)):
            continue
        out += zone.address_blobs(target)
    return out


def compose_lookup(qkey: bytes, found: Lookup, extra: Sequence[tuple[bytes, bytes]] = (),
                   final: Sequence[tuple[bytes, bytes]] = ()) -> Rendered:
    """A Lookup (plus ``final`` answer records, e.g. a steered name's selection, and
    ``extra`` optional additional records) rendered after the question."""
    w = _Writer(qkey)
    an = sum(w.rrset(k, b) for k, b in found.answer)
    an += sum(w.rrset(k, b) for k, b in final)
    ns = sum(w.rrset(k, b) for k, b in found.authority)
    if found.negative is not None:
        ns += w.negative(found.negative)
    ar = sum(w.rrset(k, b) for k, b in found.additional)
    flags = QR | (AA if found.aa else 0) | found.rcode
    lean = Rendered(flags, an, ns, ar, w.body()) if extra else None
    if extra:
        ar += sum(w.rrset(k, b) for k, b in extra)
    full = Rendered(flags, an, ns, ar, w.body())
    full.lean = lean
    return full


def compose(qkey: bytes, qtype: int, found: Result, store: ZoneStore | None = None,
            additional: bool = True) -> Rendered:
    """Any lookup result as a Rendered answer (Direct and Negative too, for tools)."""
    if isinstance(found, Direct):
        found = Lookup(0, True, answer=[(qkey, found.blob)])
    elif isinstance(found, Negative):
        found = Lookup(found.rcode, True, negative=found.zone)
    assert isinstance(found, Lookup)
    extra = _addresses(store, _targets(found.answer)) if additional else []
    return compose_lookup(qkey, found, extra)
