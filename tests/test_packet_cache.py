"""The packet cache may only replay answers that the query bytes alone determine."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message

from geodns.config import load_config
from geodns.generation import Generation
from geodns.handler import Handler
from geodns.runtime import Runtime
from geodns.zones.store import build_store, read_zone_dir
from tests.helpers.paths import REPO_ROOT
from tests.helpers.wirecheck import dnslib_check


def make_handler() -> tuple[Handler, Runtime]:
    config = load_config(REPO_ROOT / "geodns.toml")
    runtime = Runtime.load(config)
    store = build_store(read_zone_dir(str(REPO_ROOT / "zones")))
    return Handler(Generation(store, runtime=runtime)), runtime


def answer(h: Handler, wire: bytes, client: str) -> list[str]:
    resp = h.handle(wire, client, False)
    assert resp is not None
    dnslib_check(resp)
    return [rd.to_text() for r in dns.message.from_wire(resp).answer for rd in r]


def test_steered_answer_without_ecs_depends_on_the_source_address() -> None:
    h, _ = make_handler()
    wire = dns.message.make_query("www.example.com.", "A").to_wire()
    assert answer(h, wire, "81.2.69.1") == ["192.0.2.20"]  # London: fra
    assert answer(h, wire, "1.1.1.1") == ["192.0.2.50"]  # same bytes, Australia: syd
    assert answer(h, wire, "81.2.69.1") == ["192.0.2.20"]


def test_ecs_answers_are_replayed_and_forgotten_on_health_change() -> None:
    h, _ = make_handler()
    q = dns.message.make_query("www.example.com.", "A",
                               options=[dns.edns.ECSOption("81.2.69.0", 24)])
    wire = q.to_wire()
    assert answer(h, wire, "127.0.0.1") == ["192.0.2.20"]
    hits = h.generation.hits
    again = h.handle(b"\x12\x34" + wire[2:], "127.0.0.1", False)
    assert again is not None and again[:2] == b"\x12\x34"  # the client's own ID
    assert h.generation.hits == hits + 1
    h.health.snapshot = h.health.snapshot.with_override("fra", "down")
    h.health_changed()
    assert answer(h, wire, "127.0.0.1") == ["192.0.2.10"]  # next nearest: iad


def test_udp_and_tcp_are_cached_apart() -> None:
    store = build_store(read_zone_dir(str(REPO_ROOT / "tests" / "data" / "lookup")))
    h = Handler(Generation(store))
    wire = dns.message.make_query("big.lookup.test.", "TXT").to_wire()  # no EDNS: 512 bytes
    for _ in range(2):  # the second round is served from the packet cache
        udp = h.handle(wire, "127.0.0.1", False)
        tcp = h.handle(wire, "127.0.0.1", True)
        assert udp is not None and tcp is not None
        assert dns.message.from_wire(udp).flags & dns.flags.TC
        assert len(dns.message.from_wire(tcp).answer[0]) == 15
