"""The answer path's caches: what they keep, what they never keep, and that every shortcut
answers exactly like the long way."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import pytest

from geodns.config import load_config
from geodns.generation import GenCache, Generation
from geodns.handler import Handler
from geodns.ops.metrics import Metrics
from geodns.runtime import Runtime
from geodns.zones.loader import ZoneLoader
from tests.helpers.paths import REPO_ROOT
from tests.helpers.wirecheck import dnslib_check


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime.load(load_config(REPO_ROOT / "geodns.toml"))


def handler(runtime: Runtime) -> Handler:
    return Handler(Generation(ZoneLoader(str(REPO_ROOT / "zones")).load(), runtime=runtime))


def ecs_query(client: str, prefix: int, name: str = "www.example.com.", qtype: str = "A",
              payload: int = 1232, want_dnssec: bool = False, rd: bool = True) -> bytes:
    q = dns.message.make_query(name, qtype, use_edns=0, payload=payload,
                               want_dnssec=want_dnssec,
                               options=[dns.edns.ECSOption(client, prefix)])
    if not rd:
        q.flags &= ~dns.flags.RD
    q.id = random.getrandbits(16)
    return q.to_wire()


def test_gen_cache_is_bounded_and_keeps_what_is_used() -> None:
    c = GenCache(1000, doorkeeper=1 << 10)
    c.put(b"hot", 1, 100)
    for i in range(100):  # a flood of one-off entries, 100 bytes each
        c.put(b"k%d" % i, i, 100)
        assert c.get(b"hot") == 1  # asked all along: promoted, never dropped
        assert c.size <= 1000
    assert len(c) <= 21  # two generations of at most ten entries
    assert c.get(b"k0") is None


def test_admission_on_second_sighting() -> None:
    c = GenCache(1 << 20, doorkeeper=1 << 10)
    assert not c.admit(b"a")
    assert c.admit(b"a")
    assert not c.admit(b"b")


class NoCache(GenCache):
    def admit(self, key: bytes) -> bool:
        return False


def _long_way(runtime: Runtime) -> Handler:
    """A handler whose shortcuts are off: no packet cache, no query shapes."""
    h = handler(runtime)
    h.generation.packets = (NoCache(0), NoCache(0))
    h._learn_shape = lambda *a: None  # type: ignore[method-assign]
    return h


def _same(a: bytes | None, b: bytes | None) -> None:
    assert a is not None and b is not None
    assert a[2:] == b[2:]  # IDs differ only if the queries' do
    dnslib_check(a)


def test_query_shapes_answer_like_the_long_way(runtime: Runtime) -> None:
    """Random clients through a warm handler (shapes and packet cache learned) and a
    handler that decodes everything: byte-identical answers, v4 and v6, every option."""
    fast, slow = handler(runtime), _long_way(runtime)
    rnd = random.Random(7)
    variants = [dict(), dict(want_dnssec=True), dict(rd=False), dict(payload=512),
                dict(qtype="AAAA"), dict(name="WwW.ExAmPlE.cOm."), dict(name="api.example.com.")]
    clients = []
    for _ in range(300):
        clients.append((str(ipaddress.IPv4Address(rnd.getrandbits(32))), rnd.choice([24, 16, 32])))
        clients.append((str(ipaddress.IPv6Address(rnd.getrandbits(128))),
                        rnd.choice([56, 48, 64])))
    for kw in variants:
        for client, prefix in clients:
            net = ipaddress.ip_network(f"{client}/{prefix}", strict=False)
            wire = ecs_query(str(net.network_address), prefix, **kw)  # type: ignore[arg-type]
            _same(fast.handle(wire, "127.0.0.1", False), slow.handle(wire, "127.0.0.1", False))
            _same(fast.handle(wire, "127.0.0.1", True), slow.handle(wire, "127.0.0.1", True))
    assert fast.generation.shape_lens  # the shortcut was taken
    assert fast.generation.hits > len(variants) * len(clients)


def test_shapes_follow_health_changes(runtime: Runtime) -> None:
    h = handler(runtime)
    london = ecs_query("81.2.69.0", 24)
    for _ in range(3):
        assert "192.0.2.20" in str(dns.message.from_wire(h.handle(london, "127.0.0.1", False)
                                                         or b"").answer)
    other = ecs_query("81.2.68.0", 24)  # same shape, another address
    h.health.snapshot = h.health.snapshot.with_override("fra", "down")
    for wire in (london, other):
        got = dns.message.from_wire(h.handle(wire, "127.0.0.1", False) or b"")
        assert "192.0.2.20" not in str(got.answer), "a cached answer outlived the health"


def test_query_log_keeps_the_packet_cache(runtime: Runtime, tmp_path: Path) -> None:
    """Issue 8: turning on the query log must not turn off the packet cache."""
    class Log:
        def __init__(self) -> None:
            self.lines: list[tuple[object, ...]] = []

        def sampled(self) -> bool:
            return True

        def log(self, *args: object) -> bool:
            self.lines.append(args)
            return True

    h = handler(runtime)
    h.qlog = Log()  # type: ignore[assignment]
    static = dns.message.make_query("static.example.com.", "A").to_wire()
    steered = ecs_query("81.2.69.0", 24)
    for _ in range(5):
        h.handle(static, "127.0.0.1", False)
        h.handle(steered, "127.0.0.1", False)
    assert h.generation.hits >= 6  # served from the caches ...
    lines = h.qlog.lines  # type: ignore[attr-defined]
    assert len(lines) == 10  # ... and every query logged, cached or not
    pools = {line[6] for line in lines}
    assert pools == {None, "www"}
    assert all(line[8] for line in lines if line[6] == "www")  # the scope is logged too


COUNTING_CONFIG = """\
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pops.lhr]
lat = 51.5
lon = -0.1
ipv4 = ["192.0.2.30"]

[pools.www]
strategy = "nearest"
pops = ["iad", "fra", "lhr"]

[pools.api]
strategy = "all"
pops = ["iad", "fra"]

[fences.gb-only]
countries = ["GB"]
pops = ["lhr"]
on_empty = "servfail"
pools = ["www", "api"]
"""


def test_shortcuts_count_like_the_long_way(tmp_path: Path) -> None:
    """The query and answer counters (by rcode, POP and fence) say the same whether an
    answer took a shortcut (query shape, packet cache) or was decoded the long way."""
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(COUNTING_CONFIG)
    runtime = Runtime.load(load_config(cfg))
    fast, slow = handler(runtime), _long_way(runtime)
    fast.metrics, slow.metrics = Metrics(process=False), Metrics(process=False)
    rnd = random.Random(3)
    # British clients are fenced: www answers lhr, api (no lhr in it) SERVFAIL
    clients = ["81.2.69.0", "81.2.68.0"] + [
        str(ipaddress.IPv4Address(rnd.getrandbits(24) << 8)) for _ in range(200)]
    for name in ("www.example.com.", "api.example.com."):
        for client in clients + clients[:50]:  # some asked twice: packet-cache replays
            wire = ecs_query(client, 24, name=name)
            _same(fast.handle(wire, "127.0.0.1", False), slow.handle(wire, "127.0.0.1", False))
    assert fast.generation.shape_lens and fast.generation.hits > 100  # shortcuts taken
    for table in ("queries", "answers", "fenced"):
        assert dict(getattr(fast.metrics, table)) == dict(getattr(slow.metrics, table)), table
    answers = fast.metrics.answers
    assert answers[("api", "iad", "")] == answers[("api", "fra", "")] > 0  # both POPs
    assert fast.metrics.queries[("udp", 1, 2)] > 0  # the fenced api SERVFAILs
    assert fast.metrics.fenced[("gb-only", "www", "answered")] > 0
