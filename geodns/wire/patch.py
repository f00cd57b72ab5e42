"""Small edits to a response the answer path already built: append an EDNS option to its
OPT record, or cut it down to a truncated (TC=1) reply.

The defences (RRL slips, DNS cookies) run after the answer is built, so they work on
bytes rather than reach into the encoder.  They only ever see our own responses: header,
question copied from the query, records, and the OPT record last (RFC 6891 puts no order
on additional records, but we always append OPT last).  Per query this costs nothing;
it runs only for queries with a cookie and for slipped responses.
"""

from __future__ import annotations

import struct

TC = 0x0200
OPT_TYPE = b"\x00\x29"


def question_end(resp: bytes) -> int:
    """Offset just past the question (12 when the reply carries none)."""
    if resp[5] == 0 and resp[4] == 0:
        return 12
    off = 12
    n = resp[off]
    while n:
        off += n + 1
        n = resp[off]
    return off + 5  # root label, QTYPE, QCLASS


def _skip_name(resp: bytes, off: int) -> int:
    while True:
        n = resp[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += n + 1


def opt_offset(resp: bytes, qend: int) -> int:
    """Where the OPT record starts; -1 when the last record is not an OPT (or none)."""
    count = (resp[6] << 8 | resp[7]) + (resp[8] << 8 | resp[9]) + (resp[10] << 8 | resp[11])
    off = qend
    last = -1
    for _ in range(count):
        last = off
        off = _skip_name(resp, off)
        off += 10 + (resp[off + 8] << 8 | resp[off + 9])
    if last < 0 or off != len(resp) or resp[last] != 0 or resp[last + 1:last + 3] != OPT_TYPE:
        return -1
    return last


def with_option(resp: bytes, qend: int, code: int, data: bytes, limit: int = 0,
                rdlen_hint: int = -1) -> bytes:
    """``resp`` with one more option in its OPT record (unchanged without an OPT).

    When ``limit`` is set (UDP) and the option would push the reply past it, the reply
    becomes header + question + OPT with TC=1, as any answer too large for UDP does.
    ``rdlen_hint``: the OPT RDATA length the caller expects; when the record there
    checks out, the walk over every record is skipped.
    """
    o = len(resp) - 11 - rdlen_hint
    if rdlen_hint < 0 or o < qend or resp[o:o + 3] != b"\x00\x00\x29" \
            or (resp[o + 9] << 8 | resp[o + 10]) != rdlen_hint:
        o = opt_offset(resp, qend)
        if o < 0:
            return resp
    rdlen = resp[o + 9] << 8 | resp[o + 10]
    option = struct.pack("!HH", code, len(data)) + data
    opt = resp[o:o + 9] + struct.pack("!H", rdlen + len(option)) + resp[o + 11:] + option
    if limit and o + len(opt) > limit:
        return truncated(resp, qend, opt)
    return resp[:o] + opt


def truncated(resp: bytes, qend: int, opt: bytes | None = None) -> bytes:
    """Header (flags and rcode kept, TC set), question and OPT: nothing worth reflecting.

    ``opt`` None keeps the reply's own OPT record (if it has one).
    """
    if opt is None:
        o = opt_offset(resp, qend)
        opt = resp[o:] if o >= 0 else b""
    flags = (resp[2] << 8 | resp[3]) | TC
    return (resp[:2] + struct.pack("!HHHHH", flags, 1 if qend > 12 else 0, 0, 0,
                                   1 if opt else 0) + resp[12:qend] + opt)
