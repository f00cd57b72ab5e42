"""All served zones as one immutable value, and the full answer for a question.

A reload builds a whole new ZoneStore and swaps one reference; a store that fails
to build raises ZoneFileError with every problem, and the old store keeps serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rrset
from dns.rdatatype import RdataType as T

from geodns.zones.load import ZoneFileError, is_zone_file, read_records
from geodns.zones.zone import Kind, Zone, name_key

MAX_CHAIN = 12  # CNAME hops followed before we stop (loop-safe)


@dataclass(slots=True)
class Dynamic:
    """A name answered by a pool; the selector finishes the answer per client."""

    owner: dns.name.Name
    pool: str
    zone: Zone


@dataclass(slots=True)
class Answer:
    """What the lookup decided, before rendering."""

    rcode: int
    aa: bool
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    dynamic: Dynamic | None = None


class ZoneStore:
    """Zones keyed by origin; longest-suffix match picks the zone for a name."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self.zones: dict[dns.name.Name, Zone] = {z.origin: z for z in zones}
        self._by_key = {name_key(z.origin): z for z in self.zones.values()}

    def zone_for(self, qname: dns.name.Name, qtype: int = 0) -> Zone | None:
        key = name_key(qname)
        by_key = self._by_key
        for i in range(len(key)):
            zone = by_key.get(key[i:])
            if zone is not None:
                if qtype == T.DS and i == 0 and len(key) > 1:
                    parent = self.zone_for(qname.parent())
                    if parent is not None:
                        return parent  # DS lives in the parent side of the cut
                return zone
        return None

    def lookup(self, qname: dns.name.Name, qtype: int) -> Answer:
        zone = self.zone_for(qname, qtype)
        if zone is None:
            return Answer(dns.rcode.REFUSED, aa=False)
        if zone.expired:  # xfr hook: a secondary zone past its SOA expire
            return Answer(dns.rcode.SERVFAIL, aa=False)
        result = Answer(dns.rcode.NOERROR, aa=True)
        seen = {qname}
        name = qname
        for _ in range(MAX_CHAIN):
            step = zone.find(name, qtype)
            kind = step.kind
            if kind is Kind.ANSWER:
                result.answer += step.rrsets
            elif kind is Kind.CNAME:
                result.answer += step.rrsets
                target = step.target
                assert target is not None
                if target in seen:
                    break  # loop: stop with what we have
                seen.add(target)
                next_zone = self.zone_for(target, qtype)
                if next_zone is None or next_zone.expired:
                    break  # leaves our (valid) authority; the resolver continues
                zone, name = next_zone, target
                continue
            elif kind is Kind.NODATA:
                result.authority.append(zone.negative_soa)
            elif kind is Kind.NXDOMAIN:
                result.rcode = dns.rcode.NXDOMAIN  # RFC 6604: rcode of the last name
                result.authority.append(zone.negative_soa)
            elif kind is Kind.REFERRAL:
                if not result.answer:
                    result.aa = False
                ns, *glue = step.rrsets
                result.authority.append(ns)
                result.additional += glue
            elif kind is Kind.DYNAMIC:
                assert step.owner is not None and step.pool is not None
                result.dynamic = Dynamic(step.owner, step.pool, zone)
            break
        return result

    def serials(self) -> dict[str, int]:
        return {z.origin.to_text(): z.serial for z in self.zones.values()}

    def files(self) -> set[str]:
        """Every file the zones were read from ($INCLUDEs too), for change watching."""
        return {z.file for z in self.zones.values()}


def zone_paths(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, n) for n in os.listdir(directory)
        if is_zone_file(n) and os.path.isfile(os.path.join(directory, n))
    )


def build_store(texts: dict[str, str]) -> ZoneStore:
    """Build a store from {path: text}; raises ZoneFileError listing every problem."""
    problems: list[str] = []
    zones: dict[dns.name.Name, Zone] = {}
    for path in sorted(texts):
        try:
            origin, records = read_records(path, texts[path])
            zone = Zone(origin, records, path)
        except ZoneFileError as exc:
            problems += exc.problems
            continue
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
