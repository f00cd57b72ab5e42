"""Every answer decoded twice: by dnspython and, independently, by dnslib."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dnslib


def _raw_counts(wire: bytes) -> tuple[int, int, int, int]:
    return struct.unpack("!HHHH", wire[4:12])


def dnslib_check(wire: bytes) -> dns.message.Message:
    """Decode ``wire`` with dnspython and, independently, with dnslib.

    Asserts that both decoders accept the message (no trailing garbage), and
    that the header counts and the (extended) rcode agree between the raw
    header, dnslib and dnspython.  Returns the dnspython message.
    """
    assert len(wire) >= 12, f"response shorter than a DNS header: {wire!r}"
    qd, an, ns, ar = _raw_counts(wire)
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=False)
    except Exception as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(
            f"dnspython cannot parse the response: {exc!r}; wire={wire.hex()}"
        ) from exc
    try:
        rec = dnslib.DNSRecord.parse(wire)
    except Exception as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(
            f"dnslib cannot parse the response: {exc!r}; wire={wire.hex()}"
        ) from exc

    # dnslib: parsed record lists against the raw header counts
    assert (len(rec.questions), len(rec.rr), len(rec.auth), len(rec.ar)) == (qd, an, ns, ar), (
        "dnslib section lengths disagree with the header counts"
    )
    # dnspython: it groups RRs into RRsets and pulls OPT/TSIG out of additional
    dp_an = sum(len(r) for r in msg.answer)
    dp_ns = sum(len(r) for r in msg.authority)
    dp_ar = sum(len(r) for r in msg.additional)
    if msg.opt is not None:
        dp_ar += 1
    if msg.tsig is not None:
        dp_ar += 1
    assert (len(msg.question), dp_an, dp_ns, dp_ar) == (qd, an, ns, ar), (
        f"dnspython counts {(len(msg.question), dp_an, dp_ns, dp_ar)} != header {(qd, an, ns, ar)}"
    )
    # rcode, including the extended bits carried in the OPT TTL
    lib_rcode = rec.header.rcode
    opts = [r for r in rec.ar if r.rtype == dnslib.QTYPE.OPT]
    assert len(opts) <= 1, "more than one OPT record"
    if opts:
        lib_rcode |= ((opts[0].ttl >> 24) & 0xFF) << 4
    assert lib_rcode == msg.rcode(), f"rcode: dnslib {lib_rcode} != dnspython {msg.rcode()}"
    assert rec.header.id == msg.id
    assert bool(rec.header.qr) == bool(msg.flags & dns.flags.QR)
    assert bool(rec.header.tc) == bool(msg.flags & dns.flags.TC)
    assert bool(rec.header.aa) == bool(msg.flags & dns.flags.AA)
    assert rec.header.opcode == msg.opcode()
    return msg


def header_fields(wire: bytes) -> dict[str, int]:
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", wire[:12])
    return {
        "id": qid,
        "qr": flags >> 15 & 1,
        "opcode": flags >> 11 & 0xF,
        "aa": flags >> 10 & 1,
        "tc": flags >> 9 & 1,
        "rd": flags >> 8 & 1,
        "ra": flags >> 7 & 1,
        "z": flags >> 4 & 7,
        "rcode": flags & 0xF,
        "qd": qd,
        "an": an,
        "ns": ns,
        "ar": ar,
    }


def rcode_text(msg: dns.message.Message) -> str:
    return dns.rcode.to_text(msg.rcode())
