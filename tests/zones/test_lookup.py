"""RFC 1034/2308/4592 answers, table-driven, through the in-process handler."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from geodns.generation import Generation
from geodns.handler import Handler
from geodns.zones.store import build_store, read_zone_dir
from tests.helpers.wirecheck import dnslib_check

DATA = Path(__file__).resolve().parent.parent / "data" / "lookup"


@pytest.fixture(scope="module")
def handler() -> Handler:
    return Handler(Generation(build_store(read_zone_dir(str(DATA)))))


def ask(handler: Handler, qname: str, qtype: str, **kw: object) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **kw)  # type: ignore[arg-type]
    wire = handler.handle(q.to_wire(), "127.0.0.1", True)
    assert wire is not None
    dnslib_check(wire)
    return dns.message.from_wire(wire)


def rrs(section: list) -> set[str]:  # type: ignore[type-arg]
    return {f"{r.name.to_text().lower()} {r.ttl} {dns.rdatatype.to_text(r.rdtype)} {rd}"
            for r in section for rd in r}


NEG = "lookup.test. 300 SOA ns1.lookup.test. hostmaster.lookup.test. 42 7200 3600 1209600 600"

# (qname, qtype, rcode, aa, answer, authority)
CASES = [
    ("www.lookup.test.", "A", "NOERROR", True, {"www.lookup.test. 3600 A 192.0.2.10"}, set()),
    ("WwW.LOOKUP.test.", "AAAA", "NOERROR", True, {"www.lookup.test. 3600 AAAA 2001:db8::10"},
     set()),
    ("www.lookup.test.", "MX", "NOERROR", True, set(), {NEG}),  # NODATA
    ("nope.lookup.test.", "A", "NXDOMAIN", True, set(), {NEG}),
    ("b.c.lookup.test.", "A", "NOERROR", True, set(), {NEG}),  # empty non-terminal
    ("c.lookup.test.", "TXT", "NOERROR", True, set(), {NEG}),
    ("under.a.b.c.lookup.test.", "A", "NXDOMAIN", True, set(), {NEG}),
    # RFC 4592: synthesis from the closest encloser's wildcard, owner = qname
    ("foo.wild.lookup.test.", "A", "NOERROR", True, {"foo.wild.lookup.test. 3600 A 192.0.2.12"},
     set()),
    ("a.b.wild.lookup.test.", "TXT", "NOERROR", True,
     {'a.b.wild.lookup.test. 3600 TXT "wild"'}, set()),
    ("foo.wild.lookup.test.", "AAAA", "NOERROR", True, set(), {NEG}),
    ("exists.wild.lookup.test.", "A", "NOERROR", True, set(), {NEG}),  # node blocks wildcard
    ("z.exists.wild.lookup.test.", "A", "NXDOMAIN", True, set(), {NEG}),  # encloser: exists
    ("y.ent.lookup.test.", "A", "NOERROR", True, set(), {NEG}),  # ENT blocks *.ent
    ("q.y.ent.lookup.test.", "A", "NXDOMAIN", True, set(), {NEG}),
    ("other.ent.lookup.test.", "A", "NOERROR", True, {"other.ent.lookup.test. 3600 A 192.0.2.13"},
     set()),
    # CNAME chains
    ("c1.lookup.test.", "A", "NOERROR", True,
     {"c1.lookup.test. 3600 CNAME c2.lookup.test.", "c2.lookup.test. 3600 CNAME www.lookup.test.",
      "www.lookup.test. 3600 A 192.0.2.10"}, set()),
    ("c1.lookup.test.", "CNAME", "NOERROR", True, {"c1.lookup.test. 3600 CNAME c2.lookup.test."},
     set()),
    ("cnx.lookup.test.", "A", "NXDOMAIN", True,
     {"cnx.lookup.test. 3600 CNAME missing.lookup.test."}, {NEG}),
    ("loop1.lookup.test.", "A", "NOERROR", True,
     {"loop1.lookup.test. 3600 CNAME loop2.lookup.test.",
      "loop2.lookup.test. 3600 CNAME loop1.lookup.test."}, set()),
    ("cw.lookup.test.", "A", "NOERROR", True,
     {"cw.lookup.test. 3600 CNAME foo.wild.lookup.test.",
      "foo.wild.lookup.test. 3600 A 192.0.2.12"}, set()),
    ("x.cw2.lookup.test.", "A", "NOERROR", True,
     {"x.cw2.lookup.test. 3600 CNAME www.lookup.test.", "www.lookup.test. 3600 A 192.0.2.10"},
     set()),
    ("out.lookup.test.", "A", "NOERROR", True, {"out.lookup.test. 3600 CNAME www.example.org."},
     set()),
    # delegations: AA clear, NS in authority; DS at the cut answered by the parent
    ("host.sub.lookup.test.", "A", "NOERROR", False, set(),
     {"sub.lookup.test. 3600 NS ns.sub.lookup.test.",
      "sub.lookup.test. 3600 NS ns.elsewhere.example."}),
    ("sub.lookup.test.", "NS", "NOERROR", False, set(),
     {"sub.lookup.test. 3600 NS ns.sub.lookup.test.",
      "sub.lookup.test. 3600 NS ns.elsewhere.example."}),
    ("sub.lookup.test.", "DS", "NOERROR", True,
     {"sub.lookup.test. 3600 DS 12345 8 2 "
      "49fd46e6c4b45c55d4ac69cbd3cd34ac1afe51de9b6d3f0f4e1b5b7a8c9d0e1f"}, set()),
    ("nods.lookup.test.", "DS", "NOERROR", True, set(), {NEG}),
    # outside every zone
    ("www.example.org.", "A", "REFUSED", False, set(), set()),
]


@pytest.mark.parametrize(("qname", "qtype", "rcode", "aa", "answer", "authority"), CASES,
                         ids=[f"{c[0]}/{c[1]}" for c in CASES])
def test_lookup(handler: Handler, qname: str, qtype: str, rcode: str, aa: bool,
                answer: set[str], authority: set[str]) -> None:
    m = ask(handler, qname, qtype)
    assert dns.rcode.to_text(m.rcode()) == rcode
    assert bool(m.flags & dns.flags.AA) == aa
    assert rrs(m.answer) == answer
    assert rrs(m.authority) == authority


def test_referral_carries_in_bailiwick_glue(handler: Handler) -> None:
    m = ask(handler, "host.sub.lookup.test.", "A")
    assert rrs(m.additional) == {"ns.sub.lookup.test. 3600 A 192.0.2.53"}


def test_any_is_minimal(handler: Handler) -> None:
    m = ask(handler, "www.lookup.test.", "ANY")
    assert len(m.answer) == 1  # RFC 8482: one RRset, not everything


def test_question_case_is_echoed(handler: Handler) -> None:
    m = ask(handler, "wWw.LoOkUp.TeSt.", "A")
    assert m.question[0].name.to_text() == "wWw.LoOkUp.TeSt."


@pytest.mark.parametrize(("edns", "payload", "tcp", "tc"), [
    (-1, 0, False, True),  # no EDNS: 512 bytes
    (0, 1232, False, False),
    (0, 4096, False, False),  # our own limit (1232) still fits this answer
    (0, 100, False, True),  # below 512 is treated as 512
    (-1, 0, True, False),  # TCP returns it whole
])
def test_truncation(handler: Handler, edns: int, payload: int, tcp: bool, tc: bool) -> None:
    q = dns.message.make_query("big.lookup.test.", "TXT", use_edns=edns, payload=payload)
    wire = handler.handle(q.to_wire(), "127.0.0.1", tcp)
    assert wire is not None
    dnslib_check(wire)
    m = dns.message.from_wire(wire)
    assert bool(m.flags & dns.flags.TC) == tc
    if tc:
        assert len(wire) <= 512 and not m.answer and not m.authority
        assert (m.edns >= 0) == (edns >= 0)
    else:
        assert sum(len(r) for r in m.answer) == 15
