"""LoadSnapshot: what a decision may read, and when caches must notice."""

from __future__ import annotations

from geodns.traffic.loads import LoadSample, LoadSnapshot


def test_fresh_and_stale_values() -> None:
    snap = LoadSnapshot(3, {
        "fra": LoadSample("fra", 800.0, "edge", 100.0, False, 1000.0),
        "iad": LoadSample("iad", 50.0, "edge", 10.0, True, 1000.0),
        "sin": LoadSample("sin", 5.0, "edge", 100.0, False, None),
    }, 110.0)
    assert snap.load("fra") == 800.0 and snap.utilisation("fra") == 0.8
    assert snap.load("iad") is None and snap.utilisation("iad") is None  # stale: ignored
    assert snap.sample("iad") is not None and snap.sample("iad").value == 50.0  # but shown
    assert snap.load("sin") == 5.0 and snap.utilisation("sin") is None  # no capacity
    assert snap.load("gru") is None and snap.sample("gru") is None  # no feed
    assert snap.sample("fra").age(130.0) == 30.0  # type: ignore[union-attr]


def test_cache_token_ignores_timestamps_only() -> None:
    a = LoadSnapshot(1, {"fra": LoadSample("fra", 800.0, "edge", 100.0, False, 1000.0)})
    b = LoadSnapshot(2, {"fra": LoadSample("fra", 800.0, "edge", 160.0, False, 1000.0)})
    c = LoadSnapshot(3, {"fra": LoadSample("fra", 801.0, "edge", 160.0, False, 1000.0)})
    d = LoadSnapshot(4, {"fra": LoadSample("fra", 801.0, "edge", 160.0, True, 1000.0)})
    assert a.cache_token == b.cache_token
    assert len({b.cache_token, c.cache_token, d.cache_token}) == 3
    assert not a.same_content(b) and b.same_content(LoadSnapshot(9, dict(b.samples)))


def test_empty_and_immutable() -> None:
    snap = LoadSnapshot.empty()
    assert snap.generation == 0 and dict(snap.samples) == {} and snap.load("fra") is None
    samples = {"fra": LoadSample("fra", 1.0, "edge", 1.0, False)}
    snap = LoadSnapshot(1, samples)
    samples.clear()
    assert snap.load("fra") == 1.0  # a copy, not a view of the caller's dict
