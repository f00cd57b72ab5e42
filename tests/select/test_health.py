"""HealthSnapshot: effective state = override, else checked state, else up."""

from __future__ import annotations

import pytest

from geodns.health.snapshot import HealthSnapshot


def test_all_up() -> None:
    h = HealthSnapshot.all_up(generation=7)
    assert h.generation == 7
    assert h.state("anything") == "up"
    assert h.address_state("p", "192.0.2.1") == "up"
    assert h.usable("p", "192.0.2.1")
    assert h.forced("p") is None and h.real_state("p") == "up"
    assert list(h.not_up()) == []


def test_overrides_win_over_real_states() -> None:
    h = HealthSnapshot.build(
        real={"fra": "down", "iad": "down", ("sin", "192.0.2.30"): "down"},
        overrides={"iad": "up", "syd": "drain", ("sin", "192.0.2.31"): "down"},
        generation=4,
    )
    assert h.state("fra") == "down"
    assert h.state("iad") == "up"  # forced up although checked down
    assert (h.real_state("iad"), h.forced("iad")) == ("down", "up")
    assert h.state("syd") == "drain"
    assert h.address_state("sin", "192.0.2.30") == "down"
    assert h.address_state("sin", "192.0.2.31") == "down"
    assert h.state("sin") == "up"
    assert not h.usable("sin", "192.0.2.30") and h.usable("sin", "192.0.2.32")
    assert not h.usable("syd", "192.0.2.50")  # drained POP: no new answers
    assert dict(h.not_up()) == {"fra": "down", "syd": "drain", ("sin", "192.0.2.30"): "down",
                                ("sin", "192.0.2.31"): "down"}


def test_evolve_bumps_generation_only_on_change() -> None:
    h0 = HealthSnapshot.all_up()
    assert h0.with_override("fra", None) is h0
    h1 = h0.with_real("fra", "down")
    assert h1.generation == 1 and h1.state("fra") == "down"
    assert h1.with_real("fra", "down") is h1
    h2 = h1.with_override("fra", "up")
    assert h2.generation == 2 and h2.state("fra") == "up"
    h3 = h2.with_override("fra", None)
    assert h3.generation == 3 and h3.state("fra") == "down"
    # immutability: the old snapshots did not move
    assert h0.state("fra") == "up" and h1.forced("fra") is None


def test_cache_token_reflects_content() -> None:
    a = HealthSnapshot.build(overrides={"fra": "down"}, generation=5)
    b = HealthSnapshot.build(real={"fra": "down"}, generation=5)
    c = HealthSnapshot.build(overrides={"fra": "drain"}, generation=5)
    assert a.cache_token == b.cache_token  # same effective states
    assert a.cache_token != c.cache_token
    assert HealthSnapshot.all_up(1).cache_token != HealthSnapshot.all_up(2).cache_token
    # "up" entries are the default and do not change the effective view
    assert HealthSnapshot.build(real={"x": "up"}).cache_token == HealthSnapshot.all_up().cache_token


def test_snapshot_is_immutable() -> None:
    h = HealthSnapshot.build(overrides={"fra": "down"})
    with pytest.raises(AttributeError):
        h.generation = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        h.overrides["fra"] = "up"  # type: ignore[index]


@pytest.mark.parametrize("bad", [{"fra": "sick"}, {3: "down"}, {("a", "b", "c"): "down"}])
def test_rejects_bad_states(bad: dict[object, object]) -> None:
    with pytest.raises(ValueError):
        HealthSnapshot.build(overrides=bad)  # type: ignore[arg-type]
