"""Weighted rendezvous hashing: stable, proportional, minimally disruptive."""

from __future__ import annotations

from geodns.select.hrw import hrw_rank, pop_seed

POPS = [("a", 70.0, pop_seed("a")), ("b", 20.0, pop_seed("b")), ("c", 10.0, pop_seed("c"))]


def test_rankings_are_pinned() -> None:
    """Golden values: blake2b seeds and splitmix64, never Python's randomized hash(), so
    every server and every restart sends a client prefix to the same POP."""
    assert pop_seed("fra") == 0x3BFE93CE9AE876F5
    assert [hrw_rank(x, POPS) for x in (0, 1, 2, 3, 0x510245)] == [
        ("a", "c", "b"), ("a", "c", "b"), ("c", "a", "b"), ("a", "b", "c"), ("c", "a", "b")]


def test_shares_follow_weights() -> None:
    wins = {"a": 0, "b": 0, "c": 0}
    n = 30_000
    for prefix in range(n):
        wins[hrw_rank(prefix, POPS)[0]] += 1
    assert abs(wins["a"] / n - 0.70) < 0.02
    assert abs(wins["b"] / n - 0.20) < 0.02
    assert abs(wins["c"] / n - 0.10) < 0.02


def test_removing_a_pop_only_moves_its_clients() -> None:
    without_c = [p for p in POPS if p[0] != "c"]
    for prefix in range(5000):
        full = hrw_rank(prefix, POPS)
        reduced = hrw_rank(prefix, without_c)
        assert reduced == tuple(x for x in full if x != "c")


def test_zero_weight_pops_rank_last() -> None:
    pops = [("z", 0.0, pop_seed("z")), *POPS]
    for prefix in range(200):
        assert hrw_rank(prefix, pops)[-1] == "z"
