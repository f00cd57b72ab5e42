"""The decoder never raises, whatever the bytes; valid queries decode exactly."""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.generation import Generation
from geodns.handler import Handler
from geodns.wire import decode as wd
from geodns.zones.store import ZoneStore
from tests.helpers.packets import ecs_option
from tests.helpers.wirecheck import dnslib_check

HANDLER = Handler(Generation(ZoneStore([])))


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    q = wd.decode(data)
    if len(data) < 12 or data[2] & 0x80:
        assert q is None
    resp = HANDLER.handle(data, "127.0.0.1", False)
    if resp is not None:
        dnslib_check(resp)
        assert resp[:2] == data[:2]


names = st.lists(st.text("abcXYZ-09", min_size=1, max_size=20), min_size=1, max_size=5).map(
    lambda labels: ".".join(labels) + ".")


@settings(max_examples=500, deadline=None)
@given(names, st.integers(0, 65535), st.booleans(), st.integers(0, 65535), st.booleans(),
       st.integers(0, 24))
def test_valid_queries_decode(name: str, qtype: int, edns: bool, payload: int, do: bool,
                              source: int) -> None:
    options = []
    if edns and source:
        options.append(dns.edns.ECSOption("198.51.100.0", source))
    m = dns.message.make_query(name, qtype, use_edns=0 if edns else -1, payload=payload,
                               want_dnssec=do and edns, options=options)
    wire = m.to_wire()
    q = wd.decode(wire)
    assert q is not None and q.error == 0
    assert q.qname == dns.message.from_wire(wire).question[0].name.to_wire().lower()
    assert q.qtype == qtype
    assert q.edns == edns
    if edns:
        assert q.payload == max(512, payload)
        assert q.do == do
        if source:
            assert q.ecs_source == source and q.ecs_family == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_mutated_query_tails_never_raise(tail: bytes) -> None:
    """The decoder itself (not Handler.handle, which turns any exception into SERVFAIL)."""
    base = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
    for cut in (len(base) - 1, len(base) - 5, 20):
        data = base[:cut] + tail
        q = wd.decode(data)
        assert q is not None  # a 12-byte header with QR=0 is never dropped
        assert q.error in (0, wd.FORMERR, wd.NOTIMP, wd.BADVERS)


def ecs_query(family: int, source: int, scope: int, addr: bytes) -> bytes:
    opt_data = struct.pack("!HH", 8, 4 + len(addr)) + struct.pack("!HBB", family, source,
                                                                 scope) + addr
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(opt_data)) + opt_data
    head = struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 1)
    return head + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01" + opt


def test_ecs_validation() -> None:
    assert wd.decode(ecs_query(1, 24, 0, bytes([81, 2, 69]))).error == 0  # type: ignore[union-attr]
    bad = [
        ecs_query(3, 24, 0, bytes([81, 2, 69])),  # unknown family
        ecs_query(1, 33, 0, bytes([81, 2, 69, 1, 0])),  # prefix too long
        ecs_query(1, 24, 0, bytes([81, 2, 69, 0])),  # more address bytes than needed
        ecs_query(1, 23, 0, bytes([81, 2, 69])),  # bits beyond the prefix are set
        ecs_query(1, 24, 24, bytes([81, 2, 69])),  # scope must be 0 in queries
        ecs_query(2, 129, 0, bytes(17)),
    ]
    for data in bad:
        q = wd.decode(data)
        assert q is not None and q.error == wd.FORMERR, data


def cookie_query(*options: tuple[int, bytes]) -> bytes:
    rdata = b"".join(struct.pack("!HH", code, len(d)) + d for code, d in options)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(rdata)) + rdata
    head = struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 1)
    return head + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01" + opt


@pytest.mark.parametrize("length", [8, 16, 24, 40])
def test_cookie_option_is_decoded(length: int) -> None:
    data = bytes(range(length))
    q = wd.decode(cookie_query((10, data), ecs_option(1, 24, 0, bytes([81, 2, 69]))))
    assert q is not None and q.error == 0 and q.cookie == data and q.ecs is not None


@pytest.mark.parametrize("options", [
    [(10, b"")], [(10, bytes(7))], [(10, bytes(9))], [(10, bytes(15))], [(10, bytes(41))],
    [(10, bytes(8)), (10, bytes(8))],  # twice
], ids=["empty", "7", "9", "15", "41", "twice"])
def test_malformed_cookie_option_is_formerr(options: list[tuple[int, bytes]]) -> None:
    q = wd.decode(cookie_query(*options))
    assert q is not None and q.error == wd.FORMERR  # RFC 7873 5.2.2


def test_cookie_option_longer_than_the_opt_rdata_is_formerr() -> None:
    data = cookie_query((10, bytes(8)))
    lying = data[:-12] + struct.pack("!HH", 10, 16) + bytes(8)  # says 16, has 8
    q = wd.decode(lying)
    assert q is not None and q.error == wd.FORMERR and q.cookie is None


def test_no_cookie_without_the_option() -> None:
    q = wd.decode(cookie_query())
    assert q is not None and q.error == 0 and q.cookie is None


def test_every_prefix_of_a_query_decodes_without_raising() -> None:
    """Truncated packets: the fast path for the usual shape must bounds-check too."""
    import dns.edns
    import dns.message

    from geodns.wire.decode import decode

    for opts in ([], [dns.edns.ECSOption("81.2.69.0", 24)]):
        wire = dns.message.make_query("www.example.com.", "A", use_edns=0,
                                      options=opts).to_wire()
        for n in range(len(wire) + 1):
            q = decode(wire[:n])
            assert q is None or n == len(wire) or q.error or q.qend <= n
