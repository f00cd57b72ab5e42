"""Tracker hysteresis: fall/rise, first result decides, alternating results never flip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodns.health.tracker import Tracker


def feed(tracker: Tracker, results: str) -> str:
    """Feed 'P'/'F' results; return the state after each one ('u'/'d')."""
    out = ""
    for r in results:
        tracker.observe(r == "P")
        out += tracker.state[0]
    return out


@pytest.mark.parametrize(
    ("initial", "fall", "rise", "results", "states"),
    [
        # first result decides at once, from either initial state
        ("up", 3, 2, "F", "d"),
        ("down", 3, 2, "P", "u"),
        ("up", 3, 2, "P", "u"),
        ("down", 3, 2, "F", "d"),
        # then fall consecutive failures to go down ...
        ("up", 3, 2, "PFFF", "uuud"),
        ("up", 3, 2, "PFFPFFF", "uuuuuud"),
        # ... and rise consecutive successes to come back
        ("up", 3, 2, "PFFFPP", "uuuddu"),
        ("up", 3, 2, "PFFFPFPP", "uuuddddu"),
        # fall = rise = 1: every result counts
        ("up", 1, 1, "PFPF", "udud"),
        # staying down with more failures, up with more successes
        ("up", 2, 2, "FFFFPPPP", "ddddduuu"),
    ],
)
def test_transitions(initial: str, fall: int, rise: int, results: str, states: str) -> None:
    tracker = Tracker(fall=fall, rise=rise, state=initial)  # type: ignore[arg-type]
    assert feed(tracker, results) == states


def test_initial_state_holds_until_the_first_result() -> None:
    assert Tracker(state="down").state == "down"
    assert Tracker().state == "up"


def test_observe_reports_changes_and_counts() -> None:
    t = Tracker(fall=2, rise=2)
    assert t.observe(True) is False
    assert t.observe(False) is False
    assert (t.failures, t.successes) == (1, 0)
    assert t.observe(False) is True
    assert t.state == "down"
    assert t.observe(False) is False
    assert (t.failures, t.successes, t.observed) == (3, 0, 4)


def test_rejects_bad_thresholds() -> None:
    with pytest.raises(ValueError):
        Tracker(fall=0)


@given(fall=st.integers(2, 10), rise=st.integers(2, 10), initial=st.sampled_from(["up", "down"]),
       first=st.booleans(), n=st.integers(1, 200))
def test_alternating_results_never_flip(fall: int, rise: int, initial: str, first: bool,
                                        n: int) -> None:
    """Once the first result has set the state, pass/fail/pass/... never changes it."""
    t = Tracker(fall=fall, rise=rise, state=initial)  # type: ignore[arg-type]
    t.observe(first)
    settled = t.state
    ok = not first
    for _ in range(n):
        assert t.observe(ok) is False
        assert t.state == settled
        ok = not ok


@given(fall=st.integers(1, 6), rise=st.integers(1, 6),
       results=st.lists(st.booleans(), min_size=1, max_size=60))
def test_state_changes_only_after_enough_consecutive_results(
        fall: int, rise: int, results: list[bool]) -> None:
    t = Tracker(fall=fall, rise=rise)
    for i, ok in enumerate(results):
        before = t.state
        changed = t.observe(ok)
        assert changed == (t.state != before)
        if changed and i > 0:
            tail = results[: i + 1]
            need = fall if t.state == "down" else rise
            assert all(r == ok for r in tail[-need:])
            assert len(tail) >= need
