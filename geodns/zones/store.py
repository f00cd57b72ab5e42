"""All served zones as one immutable value, and the answer to a question, in wire form.

A reload builds a whole new ZoneStore and swaps one reference; a store that fails
to build raises ZoneFileError with every problem, and the old store keeps serving.

Lookups work on the lowercased wire name of the question (``Query.qname``): no name
objects are built per query.  The common answers come straight from a zone's stored
RRset (:class:`Direct`) or its negative SOA (:class:`Negative`); CNAME chains,
referrals and answers with additional addresses are composed once
(:mod:`geodns.wire.compose`) and cached by the handler.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from dns.rdatatype import RdataType as T

from geodns.zones.dyna import DYNA_TYPE
from geodns.zones.fastload import NotSimple, WireRecord, read_wire_records
from geodns.zones.load import ZoneFileError, is_zone_file, origin_for, read_records
from geodns.zones.names import ancestors
from geodns.zones.zone import Node, Zone, blobs_of

__all__ = ["Answer", "Direct", "Dynamic", "Lookup", "Negative", "ZoneStore", "build_store",
           "read_zone", "zone_paths"]

MAX_CHAIN: Final = 12  # CNAME hops followed before we stop (loop-safe)
# Answers with more than the stored RRset: ANY (one RRset of several), and the types
# whose targets' addresses go in the additional section.
COMPOSED_TYPES: Final = frozenset({T.ANY, T.MX, T.NS, T.SRV})
_CNAME: Final = b"\x00\x05"
_DYNA: Final = DYNA_TYPE.to_bytes(2, "big")
_NS: Final = b"\x00\x02"
WILD: Final = b"\x01*"


@dataclass(slots=True)
class Direct:
    """The stored RRset answers the question as it is (owner: the question)."""

    blob: bytes


@dataclass(slots=True)
class Negative:
    """NXDOMAIN or NODATA from ``zone``: its SOA in the authority section."""

    rcode: int
    zone: Zone


@dataclass(slots=True)
class Lookup:
    """A composed answer: each section a list of (owner key, stored RRset)."""

    rcode: int
    aa: bool
    answer: list[tuple[bytes, bytes]] = field(default_factory=list)
    authority: list[tuple[bytes, bytes]] = field(default_factory=list)
    additional: list[tuple[bytes, bytes]] = field(default_factory=list)
    negative: Zone | None = None  # that zone's SOA closes the authority section
    dynamic: Dynamic | None = None


@dataclass(slots=True)
class Dynamic:
    """A name answered by a pool; the selector finishes the answer per client."""

    owner: bytes  # lowercase wire name of the DYNA record's owner (or wildcard match)
    pool: str
    zone: Zone


Result = Direct | Negative | Lookup | None  # None: not our zone (REFUSED)


def _blob(node: Node, tb: bytes) -> bytes | None:
    for b in blobs_of(node):
        if b[:2] == tb:
            return b
    return None


class ZoneStore:
    """Zones keyed by origin; longest-suffix match picks the zone for a name."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self.zones: dict[dns.name.Name, Zone] = {z.origin: z for z in zones}
        self._by_key = {z.key: z for z in self.zones.values()}

    # ------------------------------------------------------------------ hot path

    def zone_for(self, key: bytes, qtype: int = 0) -> Zone | None:
        """The zone holding ``key`` (lowercase wire); DS lives in the parent side."""
        by_key = self._by_key
        i = 0
        n = len(key)
        while i < n:
            zone = by_key.get(key[i:] if i else key)
            if zone is not None:
                if qtype == T.DS and i == 0 and n > 1:
                    parent = self.zone_for(key[key[0] + 1:])
                    if parent is not None:
                        return parent
                return zone
            if key[i] == 0:
                return None
            i += key[i] + 1
        return None

    def find(self, key: bytes, qtype: int) -> Result:
        """The answer to (``key``, ``qtype``); Direct and Negative are the fast cases
        (a name with data and no CNAME/DYNA, a name that does not exist, in a zone
        without delegations); everything else goes through :meth:`lookup_wire`."""
        zone = self.zone_for(key, qtype)
        if zone is None:
            return None
        if zone.cuts or zone.expired:
            return self.lookup_wire(key, qtype, zone)
        node = zone.nodes.get(key)
        if node is None:
            if zone.wildcards:
                return self.lookup_wire(key, qtype, zone)
            return Negative(dns.rcode.NOERROR if key in zone.ents else dns.rcode.NXDOMAIN,
                            zone)
        if qtype in COMPOSED_TYPES:
            return self.lookup_wire(key, qtype, zone)
        tb = qtype.to_bytes(2, "big")
        if isinstance(node, bytes):  # one RRset here: the common case
            head = node[:2]
            if head == _DYNA or (head == _CNAME and tb != _CNAME):
                return self.lookup_wire(key, qtype, zone)
            if head == tb:
                return Direct(node)
            return Negative(dns.rcode.NOERROR, zone)
        found = None
        for blob in node:
            head = blob[:2]
            if head == _DYNA or (head == _CNAME and tb != _CNAME):
                return self.lookup_wire(key, qtype, zone)  # steered, or a chain
            if head == tb:
                found = blob
        if found is not None:
            return Direct(found)
        return Negative(dns.rcode.NOERROR, zone)

    def lookup_wire(self, key: bytes, qtype: int, zone: Zone | None = None) -> Result:
        """Every case (RFC 1034 4.3.2, RFC 4592 wildcards, RFC 6604 chains)."""
        if zone is None:
            zone = self.zone_for(key, qtype)
            if zone is None:
                return None
        result = Lookup(dns.rcode.NOERROR, True)
        seen = {key}
        name = key
        tb = qtype.to_bytes(2, "big")
        for _ in range(MAX_CHAIN):
            if zone.expired:
                return Lookup(dns.rcode.SERVFAIL, False, answer=result.answer)
            owner, node, step = _find(zone, name, qtype)
            if step == "referral":
                assert node is not None
                if not result.answer:
                    result.aa = False
                ns = _blob(node, _NS)
                assert ns is not None
                result.authority.append((owner, ns))
                result.additional += _glue(zone, ns)
                break
            if node is None:
                result.negative = zone
                if step == "nxdomain":
                    result.rcode = dns.rcode.NXDOMAIN  # RFC 6604: rcode of the last name
                break
            dyna = _blob(node, _DYNA)
            if dyna is not None:
                result.dynamic = Dynamic(owner, dyna[17:].decode(), zone)
                break
            cname = _blob(node, _CNAME)
            if cname is not None and qtype != T.CNAME:
                result.answer.append((owner, cname))
                target = cname[16:].lower()
                if target in seen:
                    break  # loop: stop with what we have
                seen.add(target)
                nxt = self.zone_for(target, qtype)
                if nxt is None:
                    break  # leaves our authority; the resolver continues
                zone, name = nxt, target
                continue
            if qtype == T.ANY:  # RFC 8482: one RRset is enough
                blobs = sorted((b for b in blobs_of(node) if b[:2] != _DYNA),
                               key=lambda b: b[:2])
                if blobs:
                    result.answer.append((owner, blobs[0]))
                else:
                    result.negative = zone
                break
            blob = _blob(node, tb)
            if blob is None:
                result.negative = zone
            else:
                result.answer.append((owner, blob))
            break
        return result

    # ------------------------------------------------------------------ tools

    def lookup(self, qname: dns.name.Name, qtype: int) -> Answer:
        """The same answer as dnspython objects (tools and tests; not per query)."""
        from geodns.wire.compose import compose

        key: bytes = qname.to_wire().lower()  # type: ignore[union-attr]
        found = self.find(key, qtype)
        if found is None:
            return Answer(dns.rcode.REFUSED, False)
        rendered = compose(key, qtype, found, additional=False)
        q = dns.message.make_query(qname, dns.rdatatype.RdataType.make(qtype))
        wire = q.to_wire()
        qend = 12 + len(key) + 4
        head = wire[:2] + rendered.heads[0]
        msg = dns.message.from_wire(head + wire[12:qend] + rendered.body)
        dynamic = found.dynamic if isinstance(found, Lookup) else None
        return Answer(msg.rcode(), bool(msg.flags & dns.flags.AA), list(msg.answer),
                      list(msg.authority), list(msg.additional), dynamic)

    def serials(self) -> dict[str, int]:
        return {z.origin.to_text(): z.serial for z in self.zones.values()}

    def files(self) -> set[str]:
        """Every file the zones were read from, for change watching."""
        out = {z.file for z in self.zones.values()}
        for z in self.zones.values():
            out |= z.includes
        return out


@dataclass(slots=True)
class Answer:
    """A lookup as dnspython objects (see :meth:`ZoneStore.lookup`)."""

    rcode: int
    aa: bool
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    dynamic: Dynamic | None = None


def _find(zone: Zone, key: bytes, qtype: int) -> tuple[bytes, Node | None, str]:
    """One step inside ``zone``: (owner key, node or None, what): what is "node",
    "referral" (node: the cut), "nodata" or "nxdomain"."""
    nodes = zone.nodes
    okey = zone.key
    cuts = zone.cuts
    if cuts or key not in nodes:
        ents = zone.ents
        chain = list(ancestors(key, len(okey)))  # longest first, ends at the apex
        for anc in reversed(chain[:-1]):  # from just below the apex down to the name
            if anc in cuts and not (len(anc) == len(key) and qtype == T.DS):
                return anc, nodes[anc], "referral"
            if anc not in nodes and anc not in ents:
                wild = nodes.get(WILD + anc[anc[0] + 1:]) if zone.wildcards else None
                if wild is None:
                    return key, None, "nxdomain"
                return key, wild, "node"
    node = nodes.get(key)
    if node is None:
        return key, None, "nodata"  # empty non-terminal
    return key, node, "node"


def _glue(zone: Zone, ns: bytes) -> list[tuple[bytes, bytes]]:
    """A and AAAA records of the NS targets inside the zone (glue)."""
    from geodns.zones.names import is_subdomain
    from geodns.zones.zone import rrset_records

    out: list[tuple[bytes, bytes]] = []
    for _, rdata in rrset_records(ns):
        target = rdata.lower()
        if not is_subdomain(target, zone.key):
            continue
        out += zone.address_blobs(target)
    return out


def zone_paths(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, n) for n in os.listdir(directory)
        if is_zone_file(n) and os.path.isfile(os.path.join(directory, n))
    )


def read_zone(path: str, text: str, origin: dns.name.Name | None = None) -> Zone:
    """One zone file into a Zone: the fast reader for plain files, dnspython's reader
    (every problem with its line) for the rest.  Raises ZoneFileError."""
    if origin is None:
        try:
            origin = origin_for(path, text)
        except dns.exception.DNSException as exc:
            raise ZoneFileError([f"{path}:1: bad $ORIGIN: {exc}"]) from None
    try:
        return Zone(origin, read_wire_records(path, text, origin), path)
    except NotSimple:
        pass
    origin, full = read_records(path, text, origin)
    zone = Zone(origin, (WireRecord(r.name.to_wire(), int(r.rdata.rdtype), r.ttl,  # type: ignore[arg-type]
                                    r.rdata.to_wire() or b"", r.line, r.file) for r in full),
                path)
    zone.includes = frozenset(r.file for r in full if r.file != path)
    return zone


def build_store(texts: dict[str, str]) -> ZoneStore:
    """Build a store from {path: text}; raises ZoneFileError listing every problem."""
    problems: list[str] = []
    zones: dict[dns.name.Name, Zone] = {}
    for path in sorted(texts):
        try:
            zone = read_zone(path, texts[path])
        except ZoneFileError as exc:
            problems += exc.problems
            continue
        origin = zone.origin
        if origin in zones:
            problems.append(f"{path}:1: zone {origin} is already served from "
                            f"{zones[origin].file}")
            continue
        zones[origin] = zone
    if problems:
        raise ZoneFileError(problems)
    return ZoneStore(zones.values())


def read_zone_dir(directory: str) -> dict[str, str]:
    """Synchronous read of every zone file (used by `check` and at start-up)."""
    texts: dict[str, str] = {}
    problems: list[str] = []
    try:
        paths = zone_paths(directory)
    except OSError as exc:
        raise ZoneFileError([f"{directory}:0: cannot read zones directory: {exc}"]) from None
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                texts[path] = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}:0: cannot read: {exc}")
    if problems:
        raise ZoneFileError(problems)
    return texts
