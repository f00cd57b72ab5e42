"""A served zone's records as transfers, journals and disk copies need them.

Records travel as dnspython RRsets; the journal and the secondary's disk copy keep
one RR per line of master-file text (absolute names), which dnspython writes and our
zone loader reads back, so a copy on disk is validated exactly like a zone file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.serial
import dns.transaction
import dns.zone
from dns.rdatatype import RdataType as T

from geodns.zones.dyna import DYNA_TYPE
from geodns.zones.zone import Zone


def rr_lines(rrsets: Iterable[dns.rrset.RRset]) -> set[str]:
    """Every RR as one line ``owner ttl IN TYPE rdata`` (absolute names)."""
    out: set[str] = set()
    for rrset in rrsets:
        out.update(rrset.to_text().splitlines())
    return out


def parse_line(line: str) -> dns.rrset.RRset:
    """One line written by :func:`rr_lines` back into a one-RR RRset."""
    owner, ttl, rdclass, rdtype, rdata = line.split(None, 4)
    rd = dns.rdata.from_text(rdclass, rdtype, rdata, dns.name.root, relativize=False)
    rrset = dns.rrset.RRset(dns.name.from_text(owner), rd.rdclass, rd.rdtype)
    rrset.add(rd, int(ttl))
    return rrset


def is_soa(line: str) -> bool:
    """Is this :func:`rr_lines` line an SOA record?"""
    return line.split(None, 4)[3] == "SOA"


def soa_first(lines: Iterable[str]) -> list[str]:
    """Sorted lines with the SOA first, as a master file (and a reader) expects."""
    soa: list[str] = []
    rest: list[str] = []
    for line in sorted(lines):
        (soa if is_soa(line) else rest).append(line)
    return soa + rest


def master_text(origin: dns.name.Name, lines: Iterable[str]) -> str:
    """A master file (``$ORIGIN`` first) holding ``lines``."""
    return f"$ORIGIN {origin.to_text()}\n" + "".join(line + "\n" for line in soa_first(lines))


def zone_rrsets(zone: Zone) -> Iterator[dns.rrset.RRset]:
    """The SOA first, then every other RRset of the zone (glue included)."""
    yield zone.soa
    for rrset in zone.all_rrsets():
        if rrset.rdtype != T.SOA:
            yield rrset


def soa_values(zone: Zone) -> tuple[int, int, int, int]:
    """(serial, refresh, retry, expire) from the zone's SOA."""
    soa = zone.soa[0]
    return soa.serial, soa.refresh, soa.retry, soa.expire


def newer(a: int, b: int | None) -> bool:
    """Is serial ``a`` newer than ``b`` (RFC 1982 arithmetic; anything beats None)?"""
    return b is None or dns.serial.Serial(a) > dns.serial.Serial(b)


class ConflictError(ValueError):
    """A transfer would put other data beside a CNAME or DYNA (or a second one)."""


_EXCLUSIVE = (T.CNAME, DYNA_TYPE)
_NEUTRAL = {T.RRSIG, T.NSEC, T.NSEC3, T.KEY}


def _check_put(txn: dns.transaction.Transaction, name: dns.name.Name,
               rdataset: dns.rdataset.Rdataset) -> None:
    """dnspython quietly drops data beside a CNAME and keeps one of two CNAMEs; a zone
    file with either is rejected, so a transfer with either must be too."""
    node = txn.get_node(name)
    rdtype = rdataset.rdtype
    if node is None:
        return
    types = {rds.rdtype for rds in node if rds.rdtype != rdtype}
    label = dns.rdatatype.to_text(rdtype)
    if rdtype in _EXCLUSIVE:
        others = sorted(dns.rdatatype.to_text(t) for t in types - _NEUTRAL)
        old = node.get_rdataset(rdataset.rdclass, rdtype)
        if old is not None and len(old) and old[0] != rdataset[0]:
            raise ConflictError(f"{name} has more than one {label} record")
        if others:
            raise ConflictError(f"{name} has {label} and other data ({', '.join(others)})")
    elif rdtype not in _NEUTRAL:
        for exclusive in _EXCLUSIVE:
            if exclusive in types:
                raise ConflictError(f"{name} has {dns.rdatatype.to_text(T(exclusive))} and "
                                    f"other data ({label})")


class TransferZone(dns.zone.Zone):
    """A dnspython zone (absolute names) whose write transactions refuse the
    conflicts dnspython would otherwise resolve silently."""

    def __init__(self, origin: dns.name.Name) -> None:
        super().__init__(origin, dns.rdataclass.IN, relativize=False)

    def writer(self, replacement: bool = False) -> Any:
        txn = super().writer(replacement)
        txn.check_put_rdataset(_check_put)
        return txn

    @classmethod
    def of(cls, zone: Zone | None, origin: dns.name.Name) -> TransferZone:
        """A transfer target holding ``zone``'s records (empty when None: AXFR)."""
        target = cls(origin)
        if zone is not None:
            with target.writer(True) as txn:
                for rrset in zone.all_rrsets():
                    txn.add(rrset)
        return target

    def lines(self) -> set[str]:
        out: set[str] = set()
        for name, node in self.nodes.items():
            for rds in node:
                out.update(rds.to_text(name).splitlines())
        return out

    def serial(self) -> int | None:
        assert self.origin is not None
        soa = self.get_rdataset(self.origin, T.SOA)
        return soa[0].serial if soa else None

