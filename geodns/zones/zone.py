"""One served zone, validated and stored as answer-ready wire bytes.

Each RRset is kept as one ``bytes`` value: a 4-byte head (type, record count) and the
records exactly as they go on the wire, each owner written as a pointer to the
question (``c0 0c``).  A direct answer is that value after the head, copied behind the
client's own question; wildcard answers use it unchanged (their owner is the question).
Names are keyed by their lowercased wire form.  A zone of a million records takes
about 200 bytes a name this way, where dnspython objects took 1.7 KB.

Validation reports every problem as ``file:line: problem`` (CNAME or DYNA beside other
data, records outside the zone, TTLs, SOA and NS at the apex, in-zone NS targets
without address, RRsets too large for any DNS message).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Final

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdatatype import RdataType as T

from geodns.zones.dyna import DYNA_TYPE
from geodns.zones.fastload import WireRecord
from geodns.zones.load import ZoneFileError
from geodns.zones.names import is_subdomain, parent, to_name, to_text

__all__ = ["MAX_TTL", "Node", "Zone", "blobs_of", "rrset_records"]

MAX_TTL: Final = 2**31 - 1  # RFC 2181 section 8
# Types that may share a name with a CNAME (DNSSEC bookkeeping, RFC 2181/4035).
CNAME_NEIGHBOURS: Final = frozenset({T.RRSIG, T.NSEC, T.NSEC3, T.KEY})
# Room a message needs besides the records: header, the longest question, an OPT with
# options (NSID, cookies, ECS, EXPIRE).
MESSAGE_OVERHEAD: Final = 12 + 255 + 4 + 11 + 128
MAX_MESSAGE: Final = 65535
_HEAD: Final = struct.Struct("!HH")
_RR: Final = struct.Struct("!HHIH")
_H: Final = struct.Struct("!H")
_NAME_ONLY: Final = frozenset({T.NS, T.CNAME, T.PTR, T.DNAME})
_SPECIAL: Final = frozenset({T.CNAME, DYNA_TYPE, T.SOA})  # one record per name at most


def _type_text(rtype: int) -> str:
    return dns.rdatatype.to_text(rtype)  # type: ignore[arg-type]


Node = bytes | tuple[bytes, ...]


def blobs_of(node: Node) -> tuple[bytes, ...]:
    """The RRsets of a name (stored as bytes when there is one)."""
    return (node,) if node.__class__ is bytes else node  # type: ignore[return-value]


def rrset_records(blob: bytes) -> Iterator[tuple[int, bytes]]:
    """(TTL, rdata) of every record of a stored RRset."""
    off = 4
    end = len(blob)
    while off < end:
        _, _, ttl, rdlen = _RR.unpack_from(blob, off + 2)
        yield ttl, blob[off + 12:off + 12 + rdlen]
        off += 12 + rdlen


def _canonical(rtype: int, rdata: bytes) -> bytes:
    """The form two rdatas are compared in (names in them are case-insensitive)."""
    if rtype in _NAME_ONLY:
        return rdata.lower()
    if rtype == T.MX:
        return rdata[:2] + rdata[2:].lower()
    if rtype == T.SOA:
        i = 0
        for _ in range(2):
            while rdata[i]:
                i += rdata[i] + 1
            i += 1
        return rdata[:i].lower() + rdata[i:]
    return rdata


class Zone:
    """Immutable after construction; lookups never mutate it."""

    # xfr hook: a secondary zone past its SOA expire is served as a copy with this set,
    # and the store answers SERVFAIL for it (geodns.xfr.secondary.expired_copy).
    expired: bool = False
    includes: frozenset[str] = frozenset()  # files read through $INCLUDE (watched too)

    def __init__(self, origin: dns.name.Name, records: Iterable[WireRecord], file: str) -> None:
        self.origin = origin
        self.file = file
        okey: bytes = origin.to_wire().lower()  # type: ignore[union-attr]
        self.key = okey
        problems: list[str] = []
        # Built in one pass, straight into the stored form: a million records must not
        # need a second copy of everything.
        # A name with one RRset holds it as bytes, one with several a tuple: a million
        # bytes values are no work for the garbage collector, a million tuples are.
        nodes: dict[bytes, Node] = {}
        special: dict[bytes, tuple[str, int]] = {}  # key + type -> where (CNAME, DYNA, SOA)
        ns_lines: list[tuple[str, int, bytes]] = []  # (file, line, target key) of NS records
        cased: dict[bytes, bytes] = {}
        too_big: set[bytes] = set()
        dyna: list[tuple[dns.name.Name, str, str, int]] = []
        pack_h, pack_rr, pack_head = _H.pack, _RR.pack, _HEAD.pack
        olen = len(okey)
        for owner, rtype, ttl, rdata, line, rfile in records:
            key = owner.lower()
            if not (key.endswith(okey) and (len(key) == olen or is_subdomain(key, okey))):
                problems.append(f"{rfile}:{line}: {to_text(owner)} is outside the zone {origin}")
                continue
            if ttl > MAX_TTL:
                problems.append(f"{rfile}:{line}: bad TTL {ttl} for {to_text(owner)} "
                                f"{_type_text(rtype)} (maximum {MAX_TTL})")
                continue
            if len(rdata) > 65535:
                problems.append(f"{rfile}:{line}: a {_type_text(rtype)} record of "
                                f"{to_text(owner)} is {len(rdata)} bytes, more than a record "
                                "can hold (65535)")
                continue
            if rtype == T.NS:
                ns_lines.append((rfile, line, rdata.lower()))
            tb = pack_h(rtype)
            record = b"\xc0\x0c" + pack_rr(rtype, 1, ttl, len(rdata)) + rdata
            found = nodes.get(key)
            if found is None:
                nodes[key] = pack_head(rtype, 1) + record
                if owner != key:
                    cased[key] = owner
                if rtype in _SPECIAL:
                    special[key + tb] = (rfile, line)
                continue
            node: tuple[bytes, ...] = (found,) if isinstance(found, bytes) else found
            at = -1
            for i, b in enumerate(node):
                if b[:2] == tb:
                    at = i
                    break
            if at < 0:
                nodes[key] = (*node, pack_head(rtype, 1) + record)
                if rtype in _SPECIAL:
                    special[key + tb] = (rfile, line)
                have = [int.from_bytes(b[:2], "big") for b in node] + [rtype]
                if T.CNAME in have or DYNA_TYPE in have:
                    self._exclusive(key, owner, have, special, rfile, line, problems)
                continue
            blob = node[at]
            old = [rd for _, rd in rrset_records(blob)]
            canon = _canonical(rtype, rdata)
            duplicate = rdata in old or (canon != rdata and any(
                _canonical(rtype, r) == canon for r in old))
            if not duplicate and rtype in _SPECIAL:
                problems.append(f"{rfile}:{line}: {to_text(owner)} has more than one "
                                f"{_type_text(rtype)} record")
            have_ttl = int.from_bytes(blob[10:14], "big")
            if ttl < have_ttl:  # an RRset has one TTL: the smallest given (as dnspython)
                blob = pack_head(rtype, len(old)) + b"".join(
                    b"\xc0\x0c" + pack_rr(rtype, 1, ttl, len(rd)) + rd for rd in old)
            elif ttl > have_ttl:
                record = b"\xc0\x0c" + pack_rr(rtype, 1, have_ttl, len(rdata)) + rdata
            if not duplicate:
                blob = pack_head(rtype, len(old) + 1) + blob[4:] + record
                if len(blob) - 4 + MESSAGE_OVERHEAD > MAX_MESSAGE and key + tb not in too_big:
                    too_big.add(key + tb)  # reported once, on the record that crossed
                    problems.append(
                        f"{rfile}:{line}: the {_type_text(rtype)} RRset of {to_text(owner)} "
                        f"grows to {len(blob) - 4} bytes here; it cannot fit in a DNS message "
                        f"({MAX_MESSAGE} bytes) even over TCP")
            nodes[key] = blob if len(node) == 1 else (*node[:at], blob, *node[at + 1:])
        apex = blobs_of(nodes.get(okey, ()))
        apex_types = {int.from_bytes(b[:2], "big") for b in apex}
        if T.SOA not in apex_types:
            problems.append(f"{file}:1: zone {origin}: no SOA record at the apex")
        if T.NS not in apex_types:
            problems.append(f"{file}:1: zone {origin}: no NS records at the apex")
        ns_tb = pack_h(T.NS)
        cuts = {k for k, node in nodes.items()
                if k != okey and any(b[:2] == ns_tb for b in blobs_of(node))} \
            if ns_lines else set()
        for gk, (rfile, line) in special.items():
            rtype = int.from_bytes(gk[-2:], "big")
            key = gk[:-2]
            if rtype == T.SOA and key != okey:
                problems.append(f"{rfile}:{line}: SOA record for "
                                f"{to_text(cased.get(key, key))} is not at the apex {origin}")
            if rtype == DYNA_TYPE:
                if key in cuts:
                    problems.append(f"{rfile}:{line}: DYNA at delegation point "
                                    f"{to_text(cased.get(key, key))}")
                here = blobs_of(nodes[key])
                blob = here[[b[:2] for b in here].index(gk[-2:])]
                dyna.append((to_name(cased.get(key, key)), blob[17:].decode(), rfile, line))
        a_tb, aaaa_tb = pack_h(T.A), pack_h(T.AAAA)
        for rfile, line, target in ns_lines:
            if is_subdomain(target, okey) and not any(
                    b[:2] in (a_tb, aaaa_tb) for b in blobs_of(nodes.get(target, ()))):
                problems.append(f"{rfile}:{line}: NS target {to_text(target)} is inside the "
                                "zone but has no A or AAAA record")
        if problems:
            raise ZoneFileError(problems)
        ents: set[bytes] = set()
        for key in nodes:
            k = key
            while k != okey:
                k = parent(k)
                if k in nodes or k in ents:
                    break
                ents.add(k)
        self.nodes = nodes
        self.ents = frozenset(ents)  # empty non-terminals
        self.cuts = frozenset(cuts)
        self.wildcards = any(k[:2] == b"\x01*" for k in nodes)
        self._cased = cased
        self._dyna = dyna
        # Owner keys of the steered names (wildcards aside): the answer path goes
        # straight to their cached templates.
        self.dyna_keys = frozenset(k[:-2] for k in special if k[-2:] == pack_h(DYNA_TYPE)
                                   and k[:2] != b"\x01*")
        soa_blob = self.rrset_blob(okey, T.SOA)
        assert soa_blob is not None
        ttl, soa_rdata = next(rrset_records(soa_blob))
        self.soa = self._rrset(okey, T.SOA, soa_blob)
        self.serial: int = self.soa[0].serial
        neg_ttl = min(ttl, self.soa[0].minimum)  # RFC 2308
        neg = dns.rrset.RRset(origin, dns.rdataclass.IN, T.SOA)
        neg.update(self.soa)
        neg.ttl = neg_ttl
        self.negative_soa = neg
        # The SOA record of negative answers, without its owner (a pointer per query).
        self.negative_tail = pack_rr(T.SOA, 1, neg_ttl, len(soa_rdata)) + soa_rdata

    @staticmethod
    def _exclusive(key: bytes, owner: bytes, have: list[int],
                   special: dict[bytes, tuple[str, int]], rfile: str, line: int,
                   problems: list[str]) -> None:
        """CNAME and DYNA names hold nothing else (RFC 1034 3.6.2)."""
        for exclusive in (T.CNAME, DYNA_TYPE):
            others = [t for t in have if t != exclusive and t not in CNAME_NEIGHBOURS]
            if exclusive in have and others:
                first = special[key + _H.pack(exclusive)]
                problems.append(
                    f"{rfile}:{line}: {to_text(owner)} has {_type_text(exclusive)} (at "
                    f"{first[0]}:{first[1]}) and other data "
                    f"({', '.join(_type_text(t) for t in others)})")

    # ----------------------------------------------------------------- reading

    def rrset_blob(self, key: bytes, rtype: int) -> bytes | None:
        """The stored RRset of ``rtype`` at ``key`` (lowercase wire), or None."""
        node = self.nodes.get(key)
        if node is None:
            return None
        want = _H.pack(rtype)
        for blob in blobs_of(node):
            if blob[:2] == want:
                return blob
        return None

    def address_blobs(self, key: bytes) -> list[tuple[bytes, bytes]]:
        """(``key``, RRset) for the A and then the AAAA RRset at ``key``, those it has:
        the addresses that glue and additional sections carry."""
        out = []
        for rtype in (T.A, T.AAAA):
            blob = self.rrset_blob(key, rtype)
            if blob is not None:
                out.append((key, blob))
        return out

    def dyna_records(self) -> list[tuple[dns.name.Name, str, str, int]]:
        """(owner, pool, file, line) of every DYNA record, for cross-checks with the config."""
        return list(self._dyna)

    def _rrset(self, key: bytes, rtype: int, blob: bytes) -> dns.rrset.RRset:
        name = to_name(self._cased.get(key, key))
        rdtype = dns.rdatatype.RdataType.make(rtype)
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        for ttl, rdata in rrset_records(blob):
            rd = dns.rdata.from_wire(dns.rdataclass.IN, rdtype, rdata, 0, len(rdata))
            rrset.add(rd, ttl)
        return rrset

    def rrset(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        """One RRset as dnspython objects (tools, tests, transfers; not per query)."""
        key: bytes = name.to_wire().lower()  # type: ignore[union-attr]
        blob = self.rrset_blob(key, rdtype)
        return self._rrset(key, rdtype, blob) if blob is not None else None

    def all_rrsets(self) -> Iterator[dns.rrset.RRset]:
        """Every RRset as dnspython objects (transfers, journals, golden tests)."""
        for key, node in self.nodes.items():
            for blob in blobs_of(node):
                yield self._rrset(key, int.from_bytes(blob[:2], "big"), blob)
