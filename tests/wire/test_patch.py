"""Edits to built responses: an option appended to OPT, truncation to header + question."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode

from geodns.generation import Generation
from geodns.handler import Handler
from geodns.wire.patch import opt_offset, question_end, truncated, with_option
from geodns.zones.store import build_store, read_zone_dir
from tests.helpers.paths import DATA_DIR, REPO_ROOT
from tests.helpers.wirecheck import dnslib_check

STORE = build_store(read_zone_dir(str(REPO_ROOT / "zones")))
BIG = build_store(read_zone_dir(str(DATA_DIR / "lookup")))
COOKIE = bytes(range(24))


def respond(store: object, name: str, qtype: str = "A", **kw: object) -> bytes:
    q = dns.message.make_query(name, qtype, **kw)  # type: ignore[arg-type]
    resp = Handler(Generation(store)).handle(q.to_wire(), "127.0.0.1", True)  # type: ignore[arg-type]
    assert resp is not None
    return resp


def cookie_of(resp: bytes) -> bytes | None:
    msg = dnslib_check(resp)
    for opt in msg.options:
        if opt.otype == 10:
            return opt.to_wire()  # type: ignore[no-any-return]
    return None


def test_option_appended_to_every_kind_of_answer() -> None:
    cases = [
        respond(STORE, "static.example.com.", use_edns=0),
        respond(STORE, "nothere.example.com.", use_edns=0),  # NXDOMAIN, SOA in authority
        respond(STORE, "example.com.", "NS", use_edns=0),  # additional records before OPT
        respond(STORE, "static.example.com.", use_edns=0,
                options=[dns.edns.ECSOption("81.2.69.0", 24)]),  # ECS echo kept
        respond(STORE, "outside.test.", use_edns=0),  # REFUSED
    ]
    for resp in cases:
        out = with_option(resp, question_end(resp), 10, COOKIE)
        assert cookie_of(out) == COOKIE
        before, after = dns.message.from_wire(resp), dns.message.from_wire(out)
        assert (before.rcode(), before.answer, before.authority, before.additional) == \
            (after.rcode(), after.answer, after.authority, after.additional)
        assert [o for o in before.options] == [o for o in after.options if o.otype != 10]


def test_without_opt_nothing_changes() -> None:
    resp = respond(STORE, "static.example.com.")
    assert opt_offset(resp, question_end(resp)) == -1
    assert with_option(resp, question_end(resp), 10, COOKIE) == resp


def test_option_that_no_longer_fits_truncates() -> None:
    resp = respond(BIG, "big.lookup.test.", "TXT", use_edns=0, payload=4096)
    size = len(resp)
    out = with_option(resp, question_end(resp), 10, COOKIE, limit=size + 27)
    msg = dnslib_check(out)
    assert msg.flags & dns.flags.TC and not msg.answer and cookie_of(out) == COOKIE
    fits = with_option(resp, question_end(resp), 10, COOKIE, limit=size + 28)
    assert not dnslib_check(fits).flags & dns.flags.TC


def test_truncated_keeps_rcode_flags_question_and_opt() -> None:
    resp = respond(STORE, "nothere.example.com.", use_edns=0, want_dnssec=True)
    out = truncated(resp, question_end(resp))
    msg = dnslib_check(out)
    assert msg.flags & dns.flags.TC and msg.flags & dns.flags.AA
    assert msg.rcode() == dns.rcode.NXDOMAIN and msg.edns == 0 and msg.ednsflags & dns.flags.DO
    assert not msg.answer and not msg.authority
    assert str(msg.question[0].name) == "nothere.example.com."
    plain = respond(STORE, "static.example.com.")
    assert dnslib_check(truncated(plain, question_end(plain))).edns == -1


def test_question_end_of_a_reply_without_question() -> None:
    head = b"\x12\x34\x80\x01" + bytes(8)  # FORMERR, QDCOUNT 0
    assert question_end(head) == 12
    assert truncated(head, 12)[:4] == b"\x12\x34\x82\x01"


def test_a_wrong_rdlen_hint_falls_back_to_the_walk() -> None:
    resp = respond(STORE, "static.example.com.", use_edns=0,
                   options=[dns.edns.ECSOption("81.2.69.0", 24)])
    qend = question_end(resp)
    right = with_option(resp, qend, 10, COOKIE, rdlen_hint=11)  # ECS option: 4 + 7
    for hint in (-1, 0, 3, 11, 500):
        assert with_option(resp, qend, 10, COOKIE, rdlen_hint=hint) == right
    assert cookie_of(right) == COOKIE
