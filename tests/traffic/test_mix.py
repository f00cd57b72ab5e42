"""The recent answer mix: bounded, unbiased enough to predict with, and cheap to feed."""

from __future__ import annotations

import random

import dns.edns
import pytest

from geodns.traffic.mix import MixSampler
from tests.helpers.queries import make_query


def _ecs(prefix: str, plen: int, qtype: str = "A") -> bytes:
    return make_query("www.example.com", qtype,
                      options=[dns.edns.ECSOption(prefix, plen)]).to_wire()


class Clock:
    def __init__(self) -> None:
        self.t = 6000.0

    def __call__(self) -> float:
        return self.t


def feed(m: MixSampler, queries: list[tuple[str, bytes, str]]) -> int:
    """Like the handler: hand over 1 in ``every``; returns how many were handed."""
    left = 1
    handed = 0
    for pool, data, client in queries:
        left -= 1
        if left <= 0:
            left = m.take(pool, data, client)
            handed += 1
    return handed


def test_ecs_and_source_clients_and_qps() -> None:
    clock = Clock()
    m = MixSampler(size=100, clock=clock)
    q1 = _ecs("81.2.69.0", 24)
    q2 = make_query("www.example.com", "AAAA").to_wire()
    feed(m, [("www", q1, "127.0.0.1")] * 30 + [("api", q2, "192.0.2.7")] * 10)
    clock.t += 20
    entries, covered = m.entries()
    assert covered == 20
    got = {(e.pool, e.qtype, e.client, e.prefix): e.qps for e in entries}
    assert got == {("www", 1, "81.2.69.0", 24): 1.5, ("api", 28, "192.0.2.7", None): 0.5}
    assert entries[0].as_dict() == {"pool": "www", "qtype": 1, "client": "81.2.69.0",
                                    "prefix": 24, "qps": 1.5}


def test_bounded_per_minute_and_the_rate_sets_every() -> None:
    """A busy minute keeps ``size`` samples that still add up to the queries seen, and
    looks at fewer answers as it goes; the next minute hands over about ``size``."""
    clock = Clock()
    m = MixSampler(size=200, clock=clock, seed=7)
    rnd = random.Random(1)
    clients = [_ecs(f"10.{i}.0.0", 24) for i in range(50)]
    weights = [i + 1 for i in range(50)]  # client i asks (i + 1) times as often
    queries = [("www", c, "127.0.0.1") for c in rnd.choices(clients, weights, k=20_000)]
    handed = feed(m, queries)  # every answer at first, then every 2nd, 4th, ...
    assert 400 < handed < 2000 and m.every >= 16
    assert sum(len(mi.kept) for mi in m._minutes) == 200
    clock.t += 60
    handed = feed(m, queries)
    assert 98 <= m.every <= 100 and 195 <= handed <= 205  # 20,000 a minute / 200
    clock.t += 30
    entries, covered = m.entries()
    assert covered == 90
    total = sum(e.qps for e in entries) * covered
    assert total == pytest.approx(40_000, rel=0.01)
    # the busiest client's estimate is close to its real share (50 / 1275 of queries)
    busiest = next(e for e in entries if e.client == "10.49.0.0")
    assert busiest.qps * covered / total == pytest.approx(50 / 1275, rel=0.35)


def test_old_minutes_fall_out_and_bad_queries_are_ignored() -> None:
    clock = Clock()
    m = MixSampler(size=10, minutes=5, clock=clock)
    feed(m, [("www", _ecs("10.0.0.0", 24), "127.0.0.1")] * 5)
    clock.t += 6 * 60
    feed(m, [("www", b"\x00\x01garbage", "127.0.0.1")] * 3)
    clock.t += 1
    entries, _ = m.entries()
    assert entries == []
