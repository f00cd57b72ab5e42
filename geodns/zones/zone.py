"""One served zone: validated records arranged for RFC 1034/4592 lookups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdatatype import RdataType as T

from geodns.zones.dyna import DYNA_TYPE
from geodns.zones.load import Record, ZoneFileError, ns_target_problems

MAX_TTL = 2**31 - 1  # RFC 2181 section 8
WILDCARD = b"*"
# Types that may share a name with a CNAME (DNSSEC bookkeeping, RFC 2181/4035).
CNAME_NEIGHBOURS = {T.RRSIG, T.NSEC, T.NSEC3, T.KEY}


class Kind(Enum):
    """What one lookup step inside a zone found."""

    ANSWER = 1
    CNAME = 2
    NODATA = 3
    NXDOMAIN = 4
    REFERRAL = 5
    DYNAMIC = 6


@dataclass(slots=True)
class Step:
    kind: Kind
    rrsets: list[dns.rrset.RRset] = field(default_factory=list)
    target: dns.name.Name | None = None  # CNAME target
    pool: str | None = None  # DYNAMIC pool name
    owner: dns.name.Name | None = None  # DYNAMIC / REFERRAL owner


Node = dict[int, dns.rrset.RRset]
NameKey = tuple[bytes, ...]


def name_key(name: dns.name.Name) -> NameKey:
    """Lowercased labels: a cheap, case-insensitive dictionary key for a name."""
    return tuple(label.lower() for label in name.labels)


class Zone:
    """Immutable after construction; lookups never mutate it."""

    # xfr hook: a secondary zone past its SOA expire is served as a copy with this set,
    # and the store answers SERVFAIL for it (geodns.xfr.secondary.expired_copy).
    expired: bool = False

    def __init__(self, origin: dns.name.Name, records: list[Record], file: str) -> None:
        self.origin = origin
        self.file = file
        self.nodes: dict[dns.name.Name, Node] = {}
        self.lines: dict[tuple[dns.name.Name, int], tuple[str, int]] = {}
        problems: list[str] = []
        for rec in records:
            self._add(rec, problems)
        self.names: set[dns.name.Name] = set()
        for name in self.nodes:
            n = name
            while n not in self.names and len(n) >= len(origin):
                self.names.add(n)
                if n == origin:
                    break
                n = n.parent()
        self.cuts = {n for n, node in self.nodes.items() if T.NS in node and n != origin}
        self._node_keys = {name_key(n): node for n, node in self.nodes.items()}
        self._name_keys = {name_key(n) for n in self.names}
        self._cut_keys = {name_key(n) for n in self.cuts}
        problems += self._validate()
        # [operator hook] NS targets without addresses, each on its own NS line (load.py)
        problems += ns_target_problems(origin, records)
        if problems:
            raise ZoneFileError(problems)
        soa = self.nodes[origin][T.SOA]
        self.soa = soa
        self.serial: int = soa[0].serial
        neg = dns.rrset.RRset(origin, dns.rdataclass.IN, T.SOA)
        neg.update(soa)
        neg.ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308
        self.negative_soa = neg

    def dyna_records(self) -> list[tuple[dns.name.Name, str, str, int]]:
        """(owner, pool, file, line) of every DYNA record, for cross-checks with the config."""
        out = []
        for name, node in self.nodes.items():
            dyna = node.get(DYNA_TYPE)
            if dyna is not None:
                file, line = self.lines[(name, DYNA_TYPE)]
                out.append((name, dyna[0].pool, file, line))
        return out

    def _where(self, rec: Record) -> str:
        return f"{rec.file}:{rec.line}"

    def _add(self, rec: Record, problems: list[str]) -> None:
        name, rdtype = rec.name, rec.rdata.rdtype
        if not name.is_subdomain(self.origin):
            problems.append(f"{self._where(rec)}: {name} is outside the zone {self.origin}")
            return
        if rec.ttl > MAX_TTL:
            problems.append(f"{self._where(rec)}: bad TTL {rec.ttl} for {name} "
                            f"{dns.rdatatype.to_text(T(rdtype))} (maximum {MAX_TTL})")
            return
        node = self.nodes.setdefault(name, {})
        rrset = node.get(rdtype)
        if rrset is None:
            rrset = node[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
            self.lines[(name, rdtype)] = (rec.file, rec.line)
            self._check_exclusive(rec, node, problems)
        elif rdtype in (T.CNAME, DYNA_TYPE, T.SOA) and rrset[0] != rec.rdata:
            what = dns.rdatatype.to_text(T(rdtype))
            problems.append(f"{self._where(rec)}: {name} has more than one {what} record")
        rrset.add(rec.rdata, rec.ttl)

    def _check_exclusive(self, rec: Record, node: Node, problems: list[str]) -> None:
        """CNAME and DYNA names hold nothing else (RFC 1034 3.6.2)."""
        for exclusive in (T.CNAME, DYNA_TYPE):
            label = dns.rdatatype.to_text(T(exclusive))
            others = [t for t in node if t != exclusive and t not in CNAME_NEIGHBOURS]
            if exclusive in node and others:
                file, line = self.lines[(rec.name, exclusive)]
                problems.append(
                    f"{self._where(rec)}: {rec.name} has {label} (at {file}:{line}) "
                    f"and other data ({', '.join(dns.rdatatype.to_text(T(t)) for t in others)})")

    def _validate(self) -> list[str]:
        problems: list[str] = []
        apex = self.nodes.get(self.origin, {})
        if T.SOA not in apex:
            problems.append(f"{self.file}:1: zone {self.origin}: no SOA record at the apex")
        if T.NS not in apex:
            problems.append(f"{self.file}:1: zone {self.origin}: no NS records at the apex")
        for (name, rdtype), (file, line) in self.lines.items():
            if rdtype == T.SOA and name != self.origin:
                problems.append(f"{file}:{line}: SOA record for {name} is not at the apex "
                                f"{self.origin}")
            if rdtype == DYNA_TYPE and name in self.cuts:
                problems.append(f"{file}:{line}: DYNA at delegation point {name}")
        return problems

    # ----------------------------------------------------------------- lookups

    def rrset(self, name: dns.name.Name, rdtype: int) -> dns.rrset.RRset | None:
        node = self.nodes.get(name)
        return node.get(rdtype) if node else None

    def find(self, qname: dns.name.Name, qtype: int) -> Step:
        """One lookup step for ``qname`` (which must be inside the zone).

        Walks lowercased label tuples rather than dnspython Names: hashing a Name
        lowercases every label each time, which dominated uncached lookups.
        """
        key = name_key(qname)
        n = len(key)
        names, cuts = self._name_keys, self._cut_keys
        for k in range(len(self.origin.labels) + 1, n + 1):
            anc = key[n - k:]
            if anc in cuts and not (k == n and qtype == T.DS):
                return self._referral(dns.name.Name(qname.labels[n - k:]))
            if anc not in names:
                wnode = self._node_keys.get((WILDCARD, *anc[1:]))
                if wnode is None:
                    return Step(Kind.NXDOMAIN)
                return self._at_node(wnode, qname, qtype, synthesize=True)
        node = self._node_keys.get(key)
        if node is None:
            return Step(Kind.NODATA)  # empty non-terminal
        return self._at_node(node, qname, qtype, synthesize=False)

    def _at_node(self, node: Node, qname: dns.name.Name, qtype: int, synthesize: bool) -> Step:
        def owned(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
            if not synthesize:
                return rrset
            copy = dns.rrset.RRset(qname, rrset.rdclass, rrset.rdtype)
            copy.update(rrset)
            return copy

        dyna = node.get(DYNA_TYPE)
        if dyna is not None:
            return Step(Kind.DYNAMIC, pool=dyna[0].pool, owner=qname)
        cname = node.get(T.CNAME)
        if cname is not None and qtype != T.CNAME:
            return Step(Kind.CNAME, [owned(cname)], target=cname[0].target)
        if qtype == T.ANY:  # RFC 8482: one RRset is enough
            for rdtype in sorted(node):
                if rdtype != DYNA_TYPE:
                    return Step(Kind.ANSWER, [owned(node[rdtype])])
            return Step(Kind.NODATA)
        rrset = node.get(qtype)
        if rrset is None:
            return Step(Kind.NODATA)
        return Step(Kind.ANSWER, [owned(rrset)])

    def _referral(self, cut: dns.name.Name) -> Step:
        ns = self.nodes[cut][T.NS]
        glue: list[dns.rrset.RRset] = []
        for rd in ns:
            target = rd.target
            if target.is_subdomain(self.origin):
                for rdtype in (T.A, T.AAAA):
                    rr = self.rrset(target, rdtype)
                    if rr is not None:
                        glue.append(rr)
        return Step(Kind.REFERRAL, [ns, *glue], owner=cut)

    def all_rrsets(self) -> Iterable[dns.rrset.RRset]:
        for node in self.nodes.values():
            yield from node.values()
