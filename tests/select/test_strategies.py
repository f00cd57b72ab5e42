"""One strategy, one place: the registry matches the config's, and each strategy's
rankings (no address, untailored, compiled or not) are what its users see."""

from __future__ import annotations

import pytest

from geodns.config import FALLBACK_STRATEGIES, STRATEGIES
from geodns.config.pools import STRATEGY_OPTIONS
from geodns.geoip.db import GeoDB
from geodns.health.snapshot import HealthSnapshot
from geodns.select import strategies
from geodns.select.selector import Selector
from tests.select.conftest import make_config
from tests.select.test_selector import GEO_POOLS, NEAREST_POOLS, ORDER_POOLS, WEIGHTED_POOLS

A = 1
UP = HealthSnapshot.all_up()


def test_every_configurable_strategy_has_one_class() -> None:
    """The config's strategies, their option keys and the ranking classes name the same
    set: adding a strategy in one place and not the other fails here."""
    assert set(STRATEGY_OPTIONS) == set(STRATEGIES)
    assert set(strategies.STRATEGIES) | {"latency"} == set(STRATEGIES)
    assert set(FALLBACK_STRATEGIES) <= set(strategies.STRATEGIES)
    assert all(name == s.name for name, s in strategies.STRATEGIES.items())


@pytest.mark.parametrize(
    ("pool", "strategy", "maps", "unknown_rule", "unknown_pops"),
    [
        ("geo", "geo", True, "default", ("gru", "iad")),
        ("near", "nearest", True, "no location: default list", ("iad", "fra")),
        ("fo", "failover", False, "fixed order", ("fra", "iad", "sin")),
        ("every", "all", False, "all POPs", ("iad", "fra", "gru")),
        ("canary", "weighted", False, "weighted hash of 0/0", None),
    ],
)
def test_strategy_rankings(tiny_db: GeoDB, pool: str, strategy: str, maps: bool,
                           unknown_rule: str, unknown_pops: tuple[str, ...] | None) -> None:
    s = Selector(make_config(GEO_POOLS + NEAREST_POOLS + ORDER_POOLS + WEIGHTED_POOLS), tiny_db)
    plan = s.plans[pool]
    assert plan.how is strategies.STRATEGIES[strategy]
    assert bool(plan.maps) == maps  # only geo and nearest compile a map of their own
    assert plan.unknown.rule == unknown_rule
    if unknown_pops is not None:
        assert plan.unknown.pops == unknown_pops
    # ECS source /0: the client opted out; every strategy answers with scope 0
    assert s.select(pool, A, "0.0.0.0", 0, UP).scope == 0


def test_weighted_is_the_only_hashed_strategy_and_explains_its_scope(tiny_db: GeoDB) -> None:
    s = Selector(make_config(WEIGHTED_POOLS + ORDER_POOLS), tiny_db)
    assert [n for n, st in strategies.STRATEGIES.items() if st.hashed] == ["weighted"]
    e = s.explain("canary", A, "2.1.1.1", 24, UP)
    assert e.rule == "weighted hash of 2.1.1.0/24"
    assert "scope /24: weighted pools hash the client's /24" in e.notes
    assert sorted(c.weight or 0.0 for c in e.candidates) == [5.0, 95.0]
    fo = s.explain("fo", A, "2.1.1.1", 24, UP)
    assert fo.rule == "fixed order" and all(c.weight is None for c in fo.candidates)
    assert "every client gets this answer (untailored): scope 0" in fo.notes
