"""Pre-rendered answers and the few bytes patched in per query.

An answer is rendered once (with dnspython, off the hot path) for the lowercased
question; per query we only splice in the client's ID, RD bit, question bytes (so
0x20 case is echoed) and OPT record.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable

import dns.name
import dns.rrset

from geodns.wire.decode import Query

QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
OPT_HEAD = b"\x00\x00\x29"  # root owner, TYPE=OPT


class Rendered:
    """One answer as bytes after the question, plus header variants."""

    __slots__ = ("an", "ar", "body", "flags", "heads", "lean", "ns")

    def __init__(self, flags: int, an: int, ns: int, ar: int, body: bytes) -> None:
        self.lean: Rendered | None = None  # without optional additional records, if any
        self.flags = flags
        self.an = an
        self.ns = ns
        self.ar = ar
        self.body = body
        # index = rd * 2 + edns: flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
        self.heads = tuple(
            struct.pack("!HHHHH", flags | (RD if rd else 0), 1, an, ns, ar + edns)
            for rd in (0, 1) for edns in (0, 1)
        )


def render(qname: dns.name.Name, qtype: int, qclass: int, flags: int,
           answer: Iterable[dns.rrset.RRset], authority: Iterable[dns.rrset.RRset],
           additional: Iterable[dns.rrset.RRset]) -> Rendered:
    """Render sections with name compression relative to the question at offset 12."""
    f = io.BytesIO()
    f.write(b"\x00" * 12)
    compress: dict[dns.name.Name, int] = {}
    qname.to_wire(f, compress)
    f.write(struct.pack("!HH", qtype, qclass))
    start = f.tell()
    counts = []
    for section in (answer, authority, additional):
        n = 0
        for rrset in section:
            n += rrset.to_wire(f, compress)
        counts.append(n)
    return Rendered(QR | flags, counts[0], counts[1], counts[2], f.getvalue()[start:])


def opt_record(udp_size: int, do: bool, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """Our OPT RR: our payload size, version 0, only DO echoed (RFC 6891 6.1.3)."""
    return OPT_HEAD + struct.pack("!HBBBBH", udp_size, ext_rcode, 0, 0x80 if do else 0, 0,
                                  len(options)) + options


def ecs_option(q: Query, scope: int) -> bytes:
    """Echo the client's ECS family, source and address with our scope (RFC 7871 7.2.1)."""
    ecs = q.ecs
    if ecs is None:
        return b""
    return struct.pack("!HH", 8, len(ecs)) + ecs[:3] + bytes((scope,)) + ecs[4:]


def error_response(q: Query, rcode: int, udp_size: int) -> bytes:
    """Header (+ question when it parsed) (+ OPT when the query had one)."""
    data = q.data
    flags = QR | (q.opcode << 11) | (RD if q.rd else 0) | (rcode & 0x0F)
    has_q = q.qend > 12
    edns = q.edns
    head = data[:2] + struct.pack("!HHHHH", flags, 1 if has_q else 0, 0, 0, 1 if edns else 0)
    out = head + data[12:q.qend]
    if edns:
        options = ecs_option(q, 0) if rcode != 1 else b""
        out += opt_record(udp_size, q.do, rcode >> 4, options)
    return out


def truncated(q: Query, r: Rendered, opt: bytes) -> bytes:
    """TC=1 with header, question and OPT only; the client retries over TCP."""
    data = q.data
    flags = r.flags | TC | (RD if q.rd else 0)
    return (data[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if opt else 0)
            + data[12:q.qend] + opt)
