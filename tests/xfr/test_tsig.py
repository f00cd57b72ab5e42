"""TSIG on ordinary queries (a secondary's signed SOA check): verified, answered by
the normal path, and the answer signed; bad signatures get NOTAUTH with the TSIG
error of RFC 8945 5.2 (BADKEY and BADSIG unsigned, BADTIME signed)."""

from __future__ import annotations

import time

import dns.message
import dns.name
import dns.rcode
import dns.tsig
import pytest

from geodns.config import Config, parse_config
from geodns.generation import Generation
from geodns.handler import Handler
from geodns.xfr.service import XfrService
from tests.xfr.zones import ORIGIN, store

SECRET = "l8uyAXzRkSBIePfhdq6Am5jEaJGp3tXAlq3lT/eFCzQ="
KEY = dns.tsig.Key("xfr-key.", SECRET, "hmac-sha256")
WRONG = dns.tsig.Key("xfr-key.", "3w9cdJtmXKFYnUZ2pQe8uJfFhDhQ8n2bSxMbq5a1Ki4=", "hmac-sha256")
UNKNOWN = dns.tsig.Key("nobody.", SECRET, "hmac-sha256")


def config() -> Config:
    return parse_config(f'[tsig.xfr-key]\nalgorithm = "hmac-sha256"\nsecret = "{SECRET}"\n',
                        "/nonexistent/geodns.toml")


@pytest.fixture
def handler() -> Handler:
    h = Handler(Generation(store(1)))
    service = XfrService(config(), install=lambda zones: [])
    h.signed_query = service.signed_query
    h.other_opcode = service.other_opcode
    return h


def soa_query(key: dns.tsig.Key | None, edns: bool = False) -> dns.message.Message:
    q = dns.message.make_query(ORIGIN, "SOA", use_edns=0 if edns else None)
    if key is not None:
        q.use_tsig(key)
    return q


@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize("edns", [False, True])
def test_signed_query_gets_a_signed_answer(handler: Handler, tcp: bool, edns: bool) -> None:
    q = soa_query(KEY, edns)
    wire = handler.handle(q.to_wire(), "127.0.0.1", tcp)
    assert wire is not None
    r = dns.message.from_wire(wire, keyring={KEY.name: KEY}, request_mac=q.mac)
    assert r.had_tsig and r.rcode() == dns.rcode.NOERROR
    assert r.answer[0][0].serial == 1
    assert (r.edns >= 0) is edns
    assert not any(handler.generation.packets)  # never packet-cached


@pytest.mark.parametrize(("key", "error"), [(WRONG, dns.rcode.BADSIG),
                                             (UNKNOWN, dns.rcode.BADKEY)])
def test_bad_signature_or_unknown_key_is_notauth_unsigned(
        handler: Handler, key: dns.tsig.Key, error: int) -> None:
    q = soa_query(key)
    wire = handler.handle(q.to_wire(), "127.0.0.1", False)
    assert wire is not None
    r = dns.message.from_wire(wire, keyring=False)
    assert r.rcode() == dns.rcode.NOTAUTH
    assert r.tsig is not None and r.tsig[0].error == error and r.tsig[0].mac == b""
    assert not r.answer


def test_badtime_is_signed_with_our_time(handler: Handler,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    q = soa_query(KEY)
    then = time.time() - 3600
    with monkeypatch.context() as m:
        m.setattr(dns.message.time, "time", lambda: then)
        wire = q.to_wire()
    out = handler.handle(wire, "127.0.0.1", False)
    assert out is not None
    r = dns.message.from_wire(out, keyring=False)
    assert r.rcode() == dns.rcode.NOTAUTH and r.tsig[0].error == dns.rcode.BADTIME
    assert len(r.tsig[0].mac) == 32 and len(r.tsig[0].other) == 6
    # ... and the signature verifies (dnspython reports the peer's BADTIME)
    with pytest.raises(dns.tsig.PeerBadTime):
        dns.message.from_wire(out, keyring={KEY.name: KEY}, request_mac=q.mac)


def test_plain_queries_do_not_take_the_signed_path(handler: Handler) -> None:
    calls = []
    inner = handler.signed_query
    assert inner is not None
    handler.signed_query = lambda *a: calls.append(a) or inner(*a)  # type: ignore[misc]
    for edns in (False, True):
        q = soa_query(None, edns)
        for _ in range(2):  # the packet cache admits a query on its second sighting
            wire = handler.handle(q.to_wire(), "127.0.0.1", False)
            assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.NOERROR
    assert calls == []
    assert handler.generation.packets[0]  # cached as before
