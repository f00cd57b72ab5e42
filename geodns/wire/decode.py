"""Bounds-checked decoding of a DNS query: header, one question, OPT (EDNS, ECS).

The hot path parses only what an authoritative answer needs and leaves the packet
untouched, so the reply can copy the client's question bytes (0x20 case echo).
Errors are values, never exceptions escaping to the listener.
"""

from __future__ import annotations

from typing import Final

import dns.name

# Outcomes that are not a normal query.
DROP: Final = 0  # short packet or a response: send nothing
FORMERR: Final = 1
NOTIMP: Final = 4
BADVERS: Final = 16

OPT_TYPE: Final = 41
_ONE_QUESTION: Final = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0
ECS_CODE: Final = 8
COOKIE_CODE: Final = 10  # RFC 7873
NSID_CODE: Final = 3  # RFC 5001
EXPIRE_CODE: Final = 9  # RFC 7314


class Query:
    """A decoded query; only the fields the answer path reads.

    Fields hold class-level defaults and a decode sets only what the query has: most
    queries carry no ECS, cookie or error, and each attribute set costs on every query.
    """

    data: bytes
    qend = 12  # offset just past the question (12 when there is none)
    qname = b""  # lowercased wire name (key for lookups and caches)
    qtype = 0
    qclass = 0
    rd = 0
    opcode = 0
    edns = False
    payload = 512
    do = False
    version = 0
    ecs: bytes | None = None  # the ECS option data as received (family..address)
    ecs_family = 0
    ecs_source = 0
    ecs_addr = b""  # address padded with zeros to 4 or 16 bytes
    error = 0  # 0: fine; else FORMERR, NOTIMP or BADVERS
    cookie: bytes | None = None  # COOKIE option data: client (+ server) cookie
    nsid = False  # the query asked for our NSID
    expire = False  # the query carried an EDNS EXPIRE option

    def __init__(self, data: bytes) -> None:
        self.data = data
        if len(data) > 2:
            flags = data[2]
            self.rd = flags & 0x01
            self.opcode = (flags >> 3) & 0x0F

    @property
    def has_question(self) -> bool:
        return self.qend > 12


def wire_name(wire: bytes) -> dns.name.Name:
    """A Name from a validated, uncompressed wire name (``Query.qname``), without
    dnspython's general wire parser, which is slow for a per-miss call."""
    labels = []
    i = 0
    n = wire[0]
    while n:
        labels.append(wire[i + 1:i + 1 + n])
        i += n + 1
        n = wire[i]
    labels.append(b"")
    return dns.name.Name(labels)


def _name_end(data: bytes, off: int, end: int) -> int:
    """Offset just past an uncompressed name at ``off``; -1 when malformed.

    Queries have nothing before the question to point at, so any compression
    pointer there is malformed.
    """
    total = 0
    while True:
        if off >= end:
            return -1
        n = data[off]
        if n == 0:
            return off + 1
        if n > 63:
            return -1
        total += n + 1
        if total > 254:
            return -1
        off += n + 1


def _skip_name(data: bytes, off: int, end: int) -> int:
    """Skip a possibly compressed name in a record we do not interpret."""
    while True:
        if off >= end:
            return -1
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2 if off + 2 <= end else -1
        if n > 63:
            return -1
        off += n + 1


def decode(data: bytes) -> Query | None:
    """Decode a query; None means drop it silently."""
    end = len(data)
    if end < 12 or data[2] & 0x80:
        return None
    if end > 16 and not data[2] & 0x78 and data[4:10] == _ONE_QUESTION and data[10] == 0 \
            and data[11] <= 1:
        # The usual shape: QUERY, one question, nothing but an OPT after it.
        off = 12
        n = data[12]
        while n:
            if n > 63:
                break
            off += n + 1
            if off >= end:
                break
            n = data[off]
        else:
            qe = off + 1
            if qe <= 255 + 12 and qe + 4 <= end:
                q = Query.__new__(Query)
                q.data = data
                q.rd = data[2] & 0x01
                q.qname = data[12:qe].lower()
                q.qtype = (data[qe] << 8) | data[qe + 1]
                q.qclass = (data[qe + 2] << 8) | data[qe + 3]
                qend = q.qend = qe + 4
                if data[11] == 0:
                    if qend != end:
                        q.error = FORMERR
                    return q
                if qend + 11 <= end and data[qend] == 0 and data[qend + 1] == 0 \
                        and data[qend + 2] == OPT_TYPE:
                    if _decode_opt(q, data, qend + 1, end) != end:
                        q.error = q.error or FORMERR
                    return q
    q = Query(data)
    if q.opcode != 0:
        q.error = NOTIMP
    qdcount = (data[4] << 8) | data[5]
    if qdcount != 1:
        if not q.error:
            q.error = FORMERR
        return q
    qe = _name_end(data, 12, end)
    if qe < 0 or qe + 4 > end:
        q.error = q.error or FORMERR
        return q
    q.qname = data[12:qe].lower()
    q.qtype = (data[qe] << 8) | data[qe + 1]
    q.qclass = (data[qe + 2] << 8) | data[qe + 3]
    q.qend = qe + 4
    if q.error:
        return q
    ancount = (data[6] << 8) | data[7]
    nscount = (data[8] << 8) | data[9]
    arcount = (data[10] << 8) | data[11]
    if ancount == 0 and nscount == 0 and arcount == 0:
        if q.qend != end:
            q.error = FORMERR
        return q
    _decode_records(q, data, q.qend, end, ancount + nscount, arcount)
    return q


def _decode_records(q: Query, data: bytes, off: int, end: int, skip: int, arcount: int) -> None:
    """Walk answer/authority (skipped) and additional (looking for one OPT)."""
    for i in range(skip + arcount):
        is_additional = i >= skip
        if is_additional and off + 11 <= end and data[off] == 0 and data[off + 1] == 0 \
                and data[off + 2] == OPT_TYPE:
            if q.edns:
                q.error = FORMERR  # more than one OPT (RFC 6891 6.1.1)
                return
            off = _decode_opt(q, data, off + 1, end)
            if off < 0:
                q.error = q.error or FORMERR
                return
            continue
        off = _skip_name(data, off, end)
        if off < 0 or off + 10 > end:
            q.error = FORMERR
            return
        rtype = (data[off] << 8) | data[off + 1]
        rdlen = (data[off + 8] << 8) | data[off + 9]
        if rtype == OPT_TYPE:  # OPT with a non-root owner, or outside additional
            q.error = FORMERR
            return
        off += 10 + rdlen
        if off > end:
            q.error = FORMERR
            return
    if off != end:
        q.error = FORMERR


def _decode_opt(q: Query, data: bytes, off: int, end: int) -> int:
    """Decode the OPT pseudo-RR whose TYPE starts at ``off``; return the offset past it."""
    q.edns = True
    payload = (data[off + 2] << 8) | data[off + 3]
    q.payload = payload if payload > 512 else 512
    q.version = data[off + 5]
    q.do = bool(data[off + 6] & 0x80)
    rdlen = (data[off + 8] << 8) | data[off + 9]
    p = off + 10
    stop = p + rdlen
    if stop > end:
        return -1
    while p < stop:
        if p + 4 > stop:
            return -1
        code = (data[p] << 8) | data[p + 1]
        olen = (data[p + 2] << 8) | data[p + 3]
        p += 4
        if p + olen > stop:
            return -1
        if code == ECS_CODE and (q.ecs is not None or not _decode_ecs(q, data[p:p + olen])):
            q.error = FORMERR
            return stop
        if code == COOKIE_CODE:
            # Client cookie (8) or client + server cookie (8 + 8..32); else, or twice,
            # malformed: FORMERR (RFC 7873 5.2.2).
            if q.cookie is not None or not (olen == 8 or 16 <= olen <= 40):
                q.error = FORMERR
                return stop
            q.cookie = bytes(data[p:p + olen])
        elif code == NSID_CODE:
            q.nsid = True  # RFC 5001: the query's option is empty (data, if any, ignored)
        elif code == EXPIRE_CODE:
            q.expire = True  # RFC 7314
        p += olen
    if q.version != 0 and not q.error:
        q.error = BADVERS
    return stop


def _decode_ecs(q: Query, opt: bytes) -> bool:
    """Validate an ECS option per RFC 7871 section 6; False means FORMERR."""
    if len(opt) < 4:
        return False
    family = (opt[0] << 8) | opt[1]
    source = opt[2]
    scope = opt[3]
    addr = opt[4:]
    if family == 1:
        width = 4
    elif family == 2:
        width = 16
    else:
        return False
    if source > width * 8 or scope != 0:
        return False
    if len(addr) != (source + 7) // 8:
        return False
    if source % 8 and addr and addr[-1] & (0xFF >> (source % 8)):
        return False  # bits beyond SOURCE PREFIX-LENGTH must be zero
    q.ecs = bytes(opt)
    q.ecs_family = family
    q.ecs_source = source
    q.ecs_addr = bytes(addr) + bytes(width - len(addr))
    return True
