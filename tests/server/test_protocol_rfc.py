"""RFC protocol behaviour over real UDP/TCP, with hand-built packets.

Table-driven: every UDP_CASES entry is one packet and the expected reaction
(no reply at all, or a reply with the given rcode/flags/sections).  The
server serves tests/data/interop (zone interop.example.).

Behaviour asserted (decided for geodns): short packets and QR=1 dropped;
opcode != QUERY -> NOTIMP (with OPT when the query had one), except NOTIFY:
REFUSED unless from a secondary zone's primary; QDCOUNT != 1 and undecodable questions -> FORMERR;
EDNS version > 0 -> BADVERS (OPT version 0); DO echoed; unknown options not
echoed; client payload < 512 treated as 512; UDP limit
min(max(payload, 512), 1232) with EDNS, 512 without; TC replies carry only
header + question (+ OPT); malformed ECS -> FORMERR, valid ECS echoed with
scope 0; question case echoed; RD echoed, RA never set; AXFR/IXFR over UDP
FORMERR, over TCP REFUSED (no [transfer] allow); class != IN -> REFUSED; ANY -> one RRset
(RFC 8482); TCP pipelining, no head-of-line blocking between connections,
and an idle timeout.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dnslib
import pytest

from tests.helpers.net import free_port, ipv6_available
from tests.helpers.packets import ecs_option, encode_name, raw_header, raw_opt, raw_question
from tests.helpers.paths import DATA_DIR
from tests.helpers.queries import tcp_connect, tcp_query, tcp_read_message, udp_query
from tests.helpers.servers import geodns_server
from tests.helpers.wirecheck import dnslib_check, header_fields

pytestmark = pytest.mark.timeout(60)

ZONE_DIR = DATA_DIR / "interop"
Z = "interop.example."
WWW = "www." + Z
A, AAAA, NS, CNAME, SOA, TXT, AXFR, IXFR, ANY = 1, 28, 2, 5, 6, 16, 252, 251, 255
OPT_ECS = 8
NO_REPLY_WAIT = 1.0  # seconds to wait before concluding that a packet was dropped
SOA_NEG_TTL = 300  # min(SOA TTL 3600, SOA MINIMUM 300) of the test zone


@pytest.fixture(scope="module")
def server():
    with geodns_server(ZONE_DIR) as srv:
        yield srv
        assert srv.alive(), f"geodns died:\n{srv.stderr_text()[-4000:]}"


# --------------------------------------------------------------------------- packets


def query(
    name: str = WWW,
    qtype: int = A,
    qclass: int = 1,
    *,
    qid: int = 0x4242,
    rd: int = 0,
    opcode: int = 0,
    qr: int = 0,
    opt: bytes | None = None,
) -> bytes:
    return (
        raw_header(qid, qr=qr, opcode=opcode, rd=rd, ar=1 if opt is not None else 0)
        + raw_question(name, qtype, qclass)
        + (opt or b"")
    )


def with_ecs(family: int, source: int, address: bytes, scope: int = 0, name: str = WWW) -> bytes:
    return query(name, opt=raw_opt(1232, options=[ecs_option(family, source, scope, address)]))


def question_bytes(wire: bytes) -> bytes:
    """The raw question section of a message with QDCOUNT=1 and an uncompressed qname."""
    i = 12
    while wire[i] != 0:
        i += 1 + wire[i]
    return wire[12 : i + 1 + 4]


# --------------------------------------------------------------------------- expectations


@dataclasses.dataclass
class Expect:
    rcode: int | None = None  # full (extended) rcode
    aa: bool | None = None
    tc: bool | None = None
    opt: bool | None = None  # OPT record present in the reply
    do: bool | None = None
    an: int | None = None  # ANCOUNT
    empty: bool = False  # answer, authority and additional (except OPT) all empty
    echo_question: bool = False  # question section byte-identical to the query's
    opcode: int | None = None
    check: Callable[[bytes, dns.message.Message], None] | None = None


NO_REPLY = None


def _ecs_of(msg: dns.message.Message) -> list[dns.edns.ECSOption]:
    return [o for o in msg.options if o.otype == dns.edns.OptionType.ECS]


def ecs_echo(family: int, source: int, address: bytes) -> Callable:
    def check(wire: bytes, msg: dns.message.Message) -> None:
        # look at the raw option: family, source, scope and address bytes
        opts = _raw_options(wire)
        ecs = [d for c, d in opts if c == OPT_ECS]
        assert len(ecs) == 1, f"ECS must be echoed exactly once, got options {opts}"
        fam, src, scope = struct.unpack("!HBB", ecs[0][:4])
        assert (fam, src, ecs[0][4:]) == (family, source, address), ecs[0].hex()
        assert scope == 0, f"static answer: scope must be 0, got {scope}"

    return check


def _raw_options(wire: bytes) -> list[tuple[int, bytes]]:
    """EDNS options of the OPT record in ``wire``, undecoded (via dnslib, not dnspython)."""
    rec = dnslib.DNSRecord.parse(wire)
    out: list[tuple[int, bytes]] = []
    for rr in rec.ar:
        if rr.rtype == dnslib.QTYPE.OPT:
            out.extend((o.code, bytes(o.data)) for o in rr.rdata)
    return out


def no_options(wire: bytes, msg: dns.message.Message) -> None:
    assert msg.edns == 0, "reply must carry OPT version 0"
    assert not msg.options, f"no EDNS option may be echoed, got {msg.options}"


def one_rrset(owner: str) -> Callable:
    def check(wire: bytes, msg: dns.message.Message) -> None:
        assert len(msg.answer) == 1, f"RFC 8482: exactly one RRset, got\n{msg.to_text()}"
        assert msg.answer[0].name.to_text().lower() == owner.lower()

    return check


def answer_count(n: int, rdtype: int = A) -> Callable:
    def check(wire: bytes, msg: dns.message.Message) -> None:
        got = sum(len(r) for r in msg.answer if r.rdtype == rdtype)
        assert got == n, msg.to_text()

    return check


def negative_soa(wire: bytes, msg: dns.message.Message) -> None:
    soas = [r for r in msg.authority if r.rdtype == dns.rdatatype.SOA]
    assert len(soas) == 1 and soas[0].name.to_text().lower() == Z, msg.to_text()
    assert soas[0].ttl == SOA_NEG_TTL, f"SOA TTL must be min(TTL, MINIMUM)={SOA_NEG_TTL}"


def referral(wire: bytes, msg: dns.message.Message) -> None:
    assert not msg.answer
    ns = [r for r in msg.authority if r.rdtype == dns.rdatatype.NS]
    assert ns and ns[0].name.to_text().lower() == "sub." + Z, msg.to_text()
    glue = {(r.name.to_text().lower(), r.rdtype) for r in msg.additional}
    assert ("ns1.sub." + Z, dns.rdatatype.A) in glue, msg.to_text()
    assert ("ns1.sub." + Z, dns.rdatatype.AAAA) in glue, msg.to_text()


def cname_only(wire: bytes, msg: dns.message.Message) -> None:
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.CNAME], msg.to_text()
    assert msg.answer[0].name.to_text().lower() == "c1." + Z


# --------------------------------------------------------------------------- the table

HDR = raw_header  # shorthand

UDP_CASES: list[tuple[str, bytes, Expect | None]] = [
    # dropped packets
    ("empty-datagram", b"", NO_REPLY),
    ("short-11-bytes", query()[:11], NO_REPLY),
    ("short-1-byte", b"\x00", NO_REPLY),
    ("qr-set", query(qr=1), NO_REPLY),
    ("qr-set-with-opt", query(qr=1, opt=raw_opt()), NO_REPLY),
    # opcodes other than QUERY
    ("opcode-iquery", query(opcode=1), Expect(rcode=dns.rcode.NOTIMP, opcode=1)),
    ("opcode-status", query(opcode=2), Expect(rcode=dns.rcode.NOTIMP, opcode=2)),
    ("opcode-3", query(opcode=3), Expect(rcode=dns.rcode.NOTIMP, opcode=3)),
    ("opcode-notify", query(Z, SOA, opcode=4),
     Expect(rcode=dns.rcode.REFUSED, opcode=4, opt=False)),
    ("opcode-notify-edns", query(Z, SOA, opcode=4, opt=raw_opt(1232)),
     Expect(rcode=dns.rcode.REFUSED, opcode=4, opt=True, echo_question=True)),
    ("opcode-update", query(Z, SOA, opcode=5), Expect(rcode=dns.rcode.NOTIMP, opcode=5)),
    ("opcode-update-edns", query(Z, SOA, opcode=5, opt=raw_opt(1232)),
     Expect(rcode=dns.rcode.NOTIMP, opcode=5, opt=True, echo_question=True)),
    ("opcode-status-edns", query(opcode=2, opt=raw_opt(1232)),
     Expect(rcode=dns.rcode.NOTIMP, opcode=2, opt=True)),
    ("opcode-15", query(opcode=15), Expect(rcode=dns.rcode.NOTIMP, opcode=15)),
    # question section problems
    ("qdcount-0", HDR(qd=0), Expect(rcode=dns.rcode.FORMERR, an=0)),
    ("qdcount-0-with-opt", HDR(qd=0, ar=1) + raw_opt(), Expect(rcode=dns.rcode.FORMERR, an=0)),
    (
        "qdcount-2",
        HDR(qd=2) + raw_question(WWW, A) + raw_question(Z, SOA),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "qdcount-2-same",
        HDR(qd=2) + raw_question(WWW, A) + raw_question(WWW, A),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "compression-pointer-in-question",
        HDR() + b"\xc0\x0c" + struct.pack("!HH", A, 1),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "compression-pointer-after-label",
        HDR() + b"\x03www\xc0\x0c" + struct.pack("!HH", A, 1),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    ("header-only-qdcount-1", HDR(), Expect(rcode=dns.rcode.FORMERR, an=0)),
    (
        "truncated-qname",
        HDR() + encode_name(WWW)[:-4],
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "qname-without-type-class",
        HDR() + encode_name(WWW),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "qname-half-type",
        HDR() + encode_name(WWW) + b"\x00",
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "label-overruns-packet",
        HDR() + b"\x3fwww",
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "qname-longer-than-255",
        HDR() + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00" + b"\x00\x01\x00\x01",
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    (
        "two-opt-records",  # RFC 6891 6.1.1: MUST be FORMERR
        HDR(ar=2) + raw_question(WWW, A) + raw_opt() + raw_opt(),
        Expect(rcode=dns.rcode.FORMERR, an=0),
    ),
    # EDNS
    (
        "edns-version-1-badvers",
        query(opt=raw_opt(version=1)),
        Expect(rcode=dns.rcode.BADVERS, an=0, opt=True, check=lambda w, m: _opt_version0(m)),
    ),
    (
        "edns-version-255-badvers",
        query(opt=raw_opt(version=255)),
        Expect(rcode=dns.rcode.BADVERS, an=0, opt=True, check=lambda w, m: _opt_version0(m)),
    ),
    ("edns-do-echoed", query(opt=raw_opt(do=True)), Expect(rcode=0, aa=True, opt=True, do=True)),
    ("edns-do-clear", query(opt=raw_opt(do=False)), Expect(rcode=0, aa=True, opt=True, do=False)),
    ("no-edns-no-opt", query(), Expect(rcode=0, aa=True, opt=False, an=1)),
    (
        "edns-server-payload-1232",
        query(opt=raw_opt(4096)),
        Expect(rcode=0, opt=True, check=lambda w, m: _payload(m, 1232)),
    ),
    (
        "edns-z-flags-not-echoed",  # RFC 6891 6.1.4: Z set to zero by senders
        HDR(ar=1) + raw_question(WWW, A) + b"\x00" + struct.pack("!HHIH", 41, 1232, 0x7FFF, 0),
        Expect(rcode=0, opt=True, do=False, check=lambda w, m: _ednsflags(m, 0)),
    ),
    (
        "edns-z-flags-with-do",
        HDR(ar=1) + raw_question(WWW, A) + b"\x00" + struct.pack("!HHIH", 41, 1232, 0xFFFF, 0),
        Expect(rcode=0, opt=True, do=True, check=lambda w, m: _ednsflags(m, 0x8000)),
    ),
    (
        "header-z-bit-ignored",  # RFC 1035: Z must be zero in queries and responses
        HDR(z=4) + raw_question(WWW, A),
        Expect(rcode=0, aa=True, an=1, check=lambda w, m: _z_clear(w)),
    ),
    (
        "edns-unknown-option-not-echoed",
        query(opt=raw_opt(options=[(65001, b"hello")])),
        Expect(rcode=0, aa=True, opt=True, an=1, check=no_options),
    ),
    (
        "edns-unknown-empty-option-not-echoed",
        query(opt=raw_opt(options=[(65002, b"")])),
        Expect(rcode=0, aa=True, opt=True, an=1, check=no_options),
    ),
    # UDP size limits; the reply of medium is ~300 bytes, big ~690, huge ~1640
    (
        "payload-100-as-512-fits",
        query("medium." + Z, opt=raw_opt(100)),
        Expect(rcode=0, tc=False, check=answer_count(15)),
    ),
    (
        "payload-0-as-512-fits",
        query("medium." + Z, opt=raw_opt(0)),
        Expect(rcode=0, tc=False, check=answer_count(15)),
    ),
    (
        "payload-100-big-truncated",
        query("big." + Z, opt=raw_opt(100)),
        Expect(rcode=0, tc=True, opt=True, empty=True, echo_question=True),
    ),
    (
        "payload-512-big-truncated",
        query("big." + Z, opt=raw_opt(512)),
        Expect(rcode=0, tc=True, opt=True, empty=True, echo_question=True),
    ),
    (
        "payload-1232-big-fits",
        query("big." + Z, opt=raw_opt(1232)),
        Expect(rcode=0, tc=False, check=answer_count(40)),
    ),
    (
        "payload-4096-big-fits",
        query("big." + Z, opt=raw_opt(4096)),
        Expect(rcode=0, tc=False, check=answer_count(40)),
    ),
    (
        "payload-4096-huge-truncated",
        query("huge." + Z, opt=raw_opt(4096)),
        Expect(rcode=0, tc=True, opt=True, empty=True, echo_question=True),
    ),
    (
        "payload-65535-huge-truncated",
        query("huge." + Z, opt=raw_opt(65535)),
        Expect(rcode=0, tc=True, opt=True, empty=True, echo_question=True),
    ),
    (
        "no-edns-medium-fits",
        query("medium." + Z),
        Expect(rcode=0, tc=False, opt=False, check=answer_count(15)),
    ),
    (
        "no-edns-big-truncated",
        query("big." + Z),
        Expect(rcode=0, tc=True, opt=False, empty=True, echo_question=True),
    ),
    (
        "truncated-keeps-do",
        query("big." + Z, opt=raw_opt(512, do=True)),
        Expect(rcode=0, tc=True, opt=True, do=True, empty=True),
    ),
    # ECS (RFC 7871)
    (
        "ecs-v4-24-echoed",
        with_ecs(1, 24, bytes([81, 2, 69])),
        Expect(rcode=0, aa=True, an=1, check=ecs_echo(1, 24, bytes([81, 2, 69]))),
    ),
    (
        "ecs-v4-32-echoed",
        with_ecs(1, 32, bytes([81, 2, 69, 1])),
        Expect(rcode=0, aa=True, an=1, check=ecs_echo(1, 32, bytes([81, 2, 69, 1]))),
    ),
    (
        "ecs-v4-0-echoed",
        with_ecs(1, 0, b""),
        Expect(rcode=0, aa=True, an=1, check=ecs_echo(1, 0, b"")),
    ),
    (
        "ecs-v6-56-echoed",
        with_ecs(2, 56, bytes.fromhex("20010db8123456")),
        Expect(rcode=0, aa=True, an=1, check=ecs_echo(2, 56, bytes.fromhex("20010db8123456"))),
    ),
    (
        "ecs-echoed-on-nxdomain",
        with_ecs(1, 24, bytes([81, 2, 69]), name="nonexistent." + Z),
        Expect(rcode=dns.rcode.NXDOMAIN, check=ecs_echo(1, 24, bytes([81, 2, 69]))),
    ),
    ("ecs-bad-family-0", with_ecs(0, 24, bytes([81, 2, 69])), Expect(rcode=dns.rcode.FORMERR)),
    ("ecs-bad-family-3", with_ecs(3, 24, bytes([81, 2, 69])), Expect(rcode=dns.rcode.FORMERR)),
    ("ecs-v4-source-33", with_ecs(1, 33, bytes(5)), Expect(rcode=dns.rcode.FORMERR)),
    ("ecs-v6-source-129", with_ecs(2, 129, bytes(17)), Expect(rcode=dns.rcode.FORMERR)),
    (
        "ecs-address-longer-than-needed",
        with_ecs(1, 24, bytes([81, 2, 69, 0])),
        Expect(rcode=dns.rcode.FORMERR),
    ),
    (
        "ecs-address-shorter-than-needed",
        with_ecs(1, 24, bytes([81, 2])),
        Expect(rcode=dns.rcode.FORMERR),
    ),
    (
        "ecs-nonzero-bits-beyond-prefix",
        with_ecs(1, 20, bytes([81, 2, 69])),
        Expect(rcode=dns.rcode.FORMERR),
    ),
    (
        "ecs-v6-nonzero-bits-beyond-prefix",
        with_ecs(2, 33, bytes.fromhex("20010db8ff")),
        Expect(rcode=dns.rcode.FORMERR),
    ),
    (
        "ecs-option-too-short",
        query(opt=raw_opt(options=[(OPT_ECS, b"\x00\x01\x18")])),
        Expect(rcode=dns.rcode.FORMERR),
    ),
    # question echo, header bits
    (
        "0x20-case-echoed",
        query("WwW.InTeRoP.ExAmPlE."),
        Expect(rcode=0, aa=True, an=1, echo_question=True),
    ),
    (
        "0x20-case-echoed-nxdomain",
        query("NoNeXiStEnT.iNtErOp.ExAmPlE."),
        Expect(rcode=dns.rcode.NXDOMAIN, echo_question=True, check=negative_soa),
    ),
    ("rd-set-echoed-ra-clear", query(rd=1), Expect(rcode=0, check=lambda w, m: _rd_ra(w, 1))),
    ("rd-clear-echoed-ra-clear", query(rd=0), Expect(rcode=0, check=lambda w, m: _rd_ra(w, 0))),
    (
        "rd-echoed-on-refused",
        query("www.example.invalid.", rd=1),
        Expect(rcode=dns.rcode.REFUSED, aa=False, check=lambda w, m: _rd_ra(w, 1)),
    ),
    # zone transfers over UDP
    ("axfr-over-udp", query(Z, AXFR), Expect(rcode=dns.rcode.FORMERR, an=0)),
    ("ixfr-over-udp", query(Z, IXFR), Expect(rcode=dns.rcode.FORMERR, an=0)),
    # classes
    ("class-ch-refused", query("version.bind.", TXT, 3), Expect(rcode=dns.rcode.REFUSED, an=0)),
    ("class-ch-in-zone-refused", query(WWW, A, 3), Expect(rcode=dns.rcode.REFUSED, an=0)),
    ("class-hs-refused", query(WWW, A, 4), Expect(rcode=dns.rcode.REFUSED, an=0)),
    # class ANY questions are answered from the IN data, as Knot and NSD do (issue 14)
    ("class-any-answered", query(WWW, A, 255), Expect(rcode=0, aa=True, an=1)),
    # answers
    ("out-of-zone-refused", query("www.example.net."), Expect(rcode=dns.rcode.REFUSED, aa=False)),
    ("any-minimal", query(WWW, ANY), Expect(rcode=0, aa=True, check=one_rrset(WWW))),
    ("any-minimal-apex", query(Z, ANY), Expect(rcode=0, aa=True, check=one_rrset(Z))),
    (
        "any-nxdomain",
        query("nonexistent." + Z, ANY),
        Expect(rcode=dns.rcode.NXDOMAIN, aa=True, check=negative_soa),
    ),
    (
        "nxdomain-soa-ttl",
        query("nonexistent." + Z),
        Expect(rcode=dns.rcode.NXDOMAIN, aa=True, an=0, check=negative_soa),
    ),
    (
        "nodata-soa-ttl",
        query(WWW, 15),
        Expect(rcode=0, aa=True, an=0, check=negative_soa),
    ),
    ("ent-nodata", query("deep." + Z), Expect(rcode=0, aa=True, an=0, check=negative_soa)),
    ("referral-aa-clear", query("www.sub." + Z), Expect(rcode=0, aa=False, check=referral)),
    ("cname-query-cname-only", query("c1." + Z, CNAME), Expect(rcode=0, aa=True, check=cname_only)),
]


def _opt_version0(msg: dns.message.Message) -> None:
    assert msg.edns == 0, f"BADVERS reply must carry OPT version 0, got {msg.edns}"


def _payload(msg: dns.message.Message, size: int) -> None:
    assert msg.payload == size, f"server should advertise {size}, got {msg.payload}"


def _ednsflags(msg: dns.message.Message, flags: int) -> None:
    assert msg.ednsflags & 0xFFFF == flags, f"EDNS flags {msg.ednsflags:#06x}, want {flags:#06x}"


def _z_clear(wire: bytes) -> None:
    assert header_fields(wire)["z"] == 0, "header Z bit must be zero in responses"


def _rd_ra(wire: bytes, rd: int) -> None:
    h = header_fields(wire)
    assert h["rd"] == rd, f"RD must be echoed ({rd}), got {h['rd']}"
    assert h["ra"] == 0, "RA must never be set"


def check_reply(packet: bytes, wire: bytes | None, exp: Expect | None) -> None:
    if exp is None:
        assert wire is None, f"expected no reply, got {wire.hex() if wire else wire}"
        return
    assert wire is not None, "expected a reply, got nothing"
    msg = dnslib_check(wire)
    h = header_fields(wire)
    assert h["qr"] == 1
    assert h["id"] == struct.unpack("!H", packet[:2])[0], "id must be echoed"
    if exp.rcode is not None:
        assert msg.rcode() == exp.rcode, (
            f"rcode {dns.rcode.to_text(msg.rcode())} != {dns.rcode.to_text(exp.rcode)}\n"
            f"{msg.to_text()}"
        )
    if exp.opcode is not None:
        assert h["opcode"] == exp.opcode, "opcode must be echoed"
    if exp.aa is not None:
        assert bool(h["aa"]) is exp.aa, f"AA should be {exp.aa}\n{msg.to_text()}"
    if exp.tc is not None:
        assert bool(h["tc"]) is exp.tc, f"TC should be {exp.tc}\n{msg.to_text()}"
    if exp.opt is not None:
        assert (msg.edns >= 0) is exp.opt, f"OPT presence should be {exp.opt}\n{msg.to_text()}"
    if exp.do is not None:
        assert bool(msg.ednsflags & dns.flags.DO) is exp.do, f"DO should be {exp.do}"
    if exp.an is not None:
        assert h["an"] == exp.an, msg.to_text()
    if exp.empty:
        assert (h["an"], h["ns"]) == (0, 0), msg.to_text()
        assert h["ar"] == (1 if msg.edns >= 0 else 0), "only OPT may remain in additional"
    if exp.echo_question:
        assert h["qd"] == 1
        assert question_bytes(wire) == question_bytes(packet), (
            f"question not echoed exactly: {question_bytes(wire)!r} != {question_bytes(packet)!r}"
        )
    if exp.check is not None:
        exp.check(wire, msg)


def alive_check(port: int) -> None:
    got = udp_query(port, query(qid=0x7777), timeout=2)
    assert got is not None, "server stopped answering"
    assert dns.message.from_wire(got).rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize(("packet", "exp"), [pytest.param(p, e, id=i) for i, p, e in UDP_CASES])
def test_udp(server, packet: bytes, exp: Expect | None) -> None:
    wire = udp_query(server.port, packet, timeout=NO_REPLY_WAIT if exp is None else 2.0)
    check_reply(packet, wire, exp)
    alive_check(server.port)


# the same checks over TCP for the cases where transport does not matter

TCP_SAME = {
    "opcode-notify",
    "opcode-update-edns",
    "qdcount-0",
    "qdcount-2",
    "compression-pointer-in-question",
    "truncated-qname",
    "edns-version-1-badvers",
    "edns-do-echoed",
    "edns-unknown-option-not-echoed",
    "ecs-v4-24-echoed",
    "ecs-bad-family-3",
    "ecs-nonzero-bits-beyond-prefix",
    "0x20-case-echoed",
    "rd-set-echoed-ra-clear",
    "class-ch-refused",
    "any-minimal",
    "nxdomain-soa-ttl",
    "referral-aa-clear",
}


@pytest.mark.parametrize(
    ("packet", "exp"), [pytest.param(p, e, id=i) for i, p, e in UDP_CASES if i in TCP_SAME]
)
def test_tcp_same_as_udp(server, packet: bytes, exp: Expect) -> None:
    wire = tcp_query(server.port, packet, timeout=3.0)
    check_reply(packet, wire, exp)


TCP_CASES: list[tuple[str, bytes, Expect]] = [
    ("axfr-over-tcp-refused", query(Z, AXFR), Expect(rcode=dns.rcode.REFUSED, an=0)),
    ("ixfr-over-tcp-refused", query(Z, IXFR), Expect(rcode=dns.rcode.REFUSED, an=0)),
    (
        "huge-whole-over-tcp",
        query("huge." + Z, opt=raw_opt(512)),
        Expect(rcode=0, tc=False, check=answer_count(100)),
    ),
    (
        "huge-whole-over-tcp-no-edns",
        query("huge." + Z),
        Expect(rcode=0, tc=False, check=answer_count(100)),
    ),
    ("big-over-tcp", query("big." + Z), Expect(rcode=0, tc=False, check=answer_count(40))),
]


@pytest.mark.parametrize(("packet", "exp"), [pytest.param(p, e, id=i) for i, p, e in TCP_CASES])
def test_tcp(server, packet: bytes, exp: Expect) -> None:
    wire = tcp_query(server.port, packet, timeout=3.0)
    check_reply(packet, wire, exp)


# --------------------------------------------------------------------------- TCP streams


def _framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def test_tcp_pipelining_three_in_one_write(server) -> None:
    packets = [
        query(WWW, A, qid=101),
        query("nonexistent." + Z, A, qid=102),
        query(Z, SOA, qid=103, opt=raw_opt()),
    ]
    with tcp_connect(server.port, timeout=3.0) as s:
        s.sendall(b"".join(_framed(p) for p in packets))
        replies = [tcp_read_message(s) for _ in packets]
    ids = [header_fields(r)["id"] for r in replies]
    assert ids == [101, 102, 103], f"replies out of order or missing: {ids}"
    rcodes = [dns.message.from_wire(r).rcode() for r in replies]
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR]


def test_tcp_sequential_queries_on_one_connection(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as s:
        for qid in (201, 202, 203, 204):
            s.sendall(_framed(query(qid=qid)))
            assert header_fields(tcp_read_message(s))["id"] == qid


def test_tcp_message_split_across_writes(server) -> None:
    packet = query(qid=301)
    framed = _framed(packet)
    with tcp_connect(server.port, timeout=3.0) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(framed)):
            s.sendall(framed[i : i + 1])
            time.sleep(0.002)
        assert header_fields(tcp_read_message(s))["id"] == 301


def test_tcp_half_sent_length_does_not_block_others(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as stuck:
        stuck.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        framed = _framed(query(qid=401))
        stuck.sendall(framed[:1])  # half of the length prefix
        time.sleep(0.2)
        t0 = time.monotonic()
        # another connection and UDP must be served meanwhile
        reply = tcp_query(server.port, query(qid=402), timeout=2.0)
        assert header_fields(reply)["id"] == 402
        assert udp_query(server.port, query(qid=403), timeout=2.0) is not None
        assert time.monotonic() - t0 < 2.0
        # the first connection can still finish its query
        stuck.sendall(framed[1:])
        assert header_fields(tcp_read_message(stuck))["id"] == 401


def test_tcp_half_sent_message_does_not_block_others(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as stuck:
        framed = _framed(query(qid=501))
        stuck.sendall(framed[:7])  # length prefix and part of the header
        time.sleep(0.2)
        reply = tcp_query(server.port, query(qid=502), timeout=2.0)
        assert header_fields(reply)["id"] == 502
        stuck.sendall(framed[7:])
        assert header_fields(tcp_read_message(stuck))["id"] == 501


def test_tcp_garbage_message_server_survives(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as s:
        s.sendall(_framed(b"\x01\x02\x03\x04\x05"))
        s.settimeout(1.0)
        try:
            data = s.recv(65535)
        except (TimeoutError, ConnectionError):
            data = b""
        assert data == b"", f"a 5-byte message must not be answered, got {data.hex()}"
    alive_check(server.port)
    assert header_fields(tcp_query(server.port, query(qid=601)))["id"] == 601


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``sock``, or None if still open after ``seconds``."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return None
    except ConnectionError:
        return time.monotonic() - t0
    assert data == b"", f"unexpected data from an idle connection: {data!r}"
    return time.monotonic() - t0


def test_tcp_idle_timeout(geodns_factory) -> None:
    srv = geodns_factory(ZONE_DIR, ("--tcp-idle-timeout", "1"))
    # an idle connection (nothing ever sent) is closed
    with tcp_connect(srv.port) as s:
        t = _closed_within(s, 4.0)
        assert t is not None, "idle TCP connection not closed within 4 s (timeout 1 s)"
        assert t >= 0.5, f"closed after {t:.2f} s, before the 1 s idle timeout"
    # a connection that was used is closed after its last answer
    with tcp_connect(srv.port) as s:
        time.sleep(0.5)
        s.sendall(_framed(query(qid=701)))  # activity resets the timer
        assert header_fields(tcp_read_message(s))["id"] == 701
        t = _closed_within(s, 4.0)
        assert t is not None, "TCP connection not closed 4 s after its last answer"
    # the server still works
    assert header_fields(tcp_query(srv.port, query(qid=702)))["id"] == 702


def test_tcp_default_idle_timeout_is_10s(server) -> None:
    # default 10 s: silent for 2 s the connection still answers; then closed ~10 s later
    with tcp_connect(server.port, timeout=5.0) as s:
        time.sleep(2.0)
        s.sendall(_framed(query(qid=801)))
        assert header_fields(tcp_read_message(s))["id"] == 801
        t = _closed_within(s, 14.0)
        assert t is not None, "idle connection still open 14 s after its last answer"
        assert 8.0 <= t <= 13.0, f"closed {t:.1f} s after the last answer, expected ~10 s"


def test_tcp_length_then_close_server_survives(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as s:
        s.sendall(struct.pack("!H", 300) + query()[:20])
    alive_check(server.port)


def test_ipv6_listener(geodns_factory) -> None:
    if not ipv6_available():
        pytest.skip("no IPv6 on the loopback interface")
    port6 = free_port("::1")
    srv = geodns_factory(ZONE_DIR, ("--listen", f"[::1]:{port6}"))
    wire = udp_query(port6, query(qid=901), host="::1")
    assert wire is not None and header_fields(wire)["id"] == 901
    assert dns.message.from_wire(wire).answer
    wire = tcp_query(port6, query(qid=902), host="::1")
    assert header_fields(wire)["id"] == 902
    # and IPv4 still works
    assert udp_query(srv.port, query(qid=903)) is not None


def test_many_udp_queries_in_a_burst(server) -> None:
    # 100 queries fired without waiting: all answered (loopback, no loss expected)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect(("127.0.0.1", server.port))
        for i in range(100):
            s.send(query(qid=1000 + i))
        s.settimeout(3.0)
        seen = set()
        try:
            while len(seen) < 100:
                data = s.recv(65535)
                seen.add(header_fields(data)["id"])
        except TimeoutError:
            pass
    assert len(seen) == 100, f"only {len(seen)} of 100 answered"


def test_tcp_client_that_never_reads_does_not_block_others(server) -> None:
    with tcp_connect(server.port, timeout=3.0) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(0.5)
        burst = b"".join(_framed(query("huge." + Z, qid=i)) for i in range(200))
        for _ in range(10):  # up to 2000 queries for ~1.6 kB answers, never read
            try:
                slow.sendall(burst)
            except (TimeoutError, ConnectionError):
                break  # the server stopped reading from us: fine
        t0 = time.monotonic()
        reply = tcp_query(server.port, query(qid=1101), timeout=3.0)
        assert header_fields(reply)["id"] == 1101
        assert udp_query(server.port, query(qid=1102), timeout=3.0) is not None
        assert time.monotonic() - t0 < 3.0
    alive_check(server.port)
