"""Guards: table tests of what a change may do to a pool, with the messages operators see."""

from __future__ import annotations

import pytest

from geodns.config import parse_config
from geodns.traffic.guards import (
    Guards,
    PopFigures,
    check_capacity,
    check_guards,
    combine,
    format_qps,
)
from tests.select.conftest import POPS_TOML

F = PopFigures


def drain_fra() -> dict[str, PopFigures]:
    """www: iad, fra, sin; draining fra moves its traffic mostly to iad."""
    return {
        "iad": F(now_qps=6800, predicted_qps=12_300, now_state="up", predicted_state="up"),
        "fra": F(now_qps=6000, predicted_qps=0, now_state="up", predicted_state="drain"),
        "sin": F(now_qps=3800, predicted_qps=4300, now_state="up", predicted_state="up"),
    }


@pytest.mark.parametrize(("guards", "figures", "refused", "notes"), [
    # nothing set: nothing to say
    (Guards(), drain_fra(), [], []),
    # the brief's example: iad would take 0.74 of the pool
    (Guards(max_share=0.6), drain_fra(),
     ["max_share 0.6: iad predicted 0.74 of pool www (12.3k of 16.6k qps), now 0.41"], []),
    (Guards(max_share=0.8), drain_fra(), [], []),
    (Guards(min_up=3), drain_fra(),
     ["min_up 3: pool www predicted 2 POPs serving (iad, sin), now 3; down or drained: fra"],
     []),
    (Guards(min_up=2), drain_fra(), [], []),
    # both at once, in a stable order
    (Guards(min_up=3, max_share=0.6), drain_fra(),
     ["min_up 3: pool www predicted 2 POPs serving (iad, sin), now 3; down or drained: fra",
      "max_share 0.6: iad predicted 0.74 of pool www (12.3k of 16.6k qps), now 0.41"], []),
    # already below min_up and the change does not make it worse (undrain elsewhere): allowed
    (Guards(min_up=2), {
        "iad": F(5000, 5000, "up", "up"), "fra": F(0, 0, "down", "down"),
        "sin": F(0, 0, "drain", "down")},
     [], ["min_up 2: pool www predicted 1 POP serving (iad), now 1; down or drained: fra, sin "
          "(already so before this change)"]),
    # already over max_share; a change that lowers the share is allowed, noted
    (Guards(max_share=0.5), {
        "iad": F(9000, 7000), "fra": F(1000, 3000)},
     [], ["max_share 0.5: iad predicted 0.70 of pool www (7.0k of 10.0k qps), now 0.90 "
          "(already so before this change)"]),
    # the last POP going down: min_up 1
    (Guards(min_up=1), {"iad": F(100, 0, "up", "down")},
     ["min_up 1: pool www predicted 0 POPs serving (none), now 1; down or drained: iad"], []),
    # no traffic: max_share cannot be judged
    (Guards(max_share=0.5), {"iad": F(), "fra": F()},
     [], ["max_share 0.5: pool www has no recent traffic; not evaluated"]),
])
def test_check_guards(guards: Guards, figures: dict[str, PopFigures], refused: list[str],
                      notes: list[str]) -> None:
    verdict = check_guards("www", guards, figures)
    assert [v.message for v in verdict.violations] == refused
    assert list(verdict.notes) == notes
    assert verdict.allowed == (not refused)


def test_violation_carries_the_figures() -> None:
    (v,) = check_guards("www", Guards(max_share=0.6), drain_fra()).violations
    assert (v.guard, v.pool, v.pop, v.limit) == ("max_share", "www", "iad", 0.6)
    assert v.now == pytest.approx(6800 / 16600) and v.predicted == pytest.approx(12300 / 16600)
    (m,) = check_guards("www", Guards(min_up=3), drain_fra()).violations
    assert (m.guard, m.pop, m.limit, m.now, m.predicted) == ("min_up", None, 3, 3, 2)


def test_force_turns_refusals_into_warnings() -> None:
    verdict = check_guards("www", Guards(min_up=3, max_share=0.6), drain_fra(), force=True)
    assert verdict.allowed and not verdict.violations
    assert [v.guard for v in verdict.forced] == ["min_up", "max_share"]
    assert verdict.messages()[1] == ("forced: max_share 0.6: iad predicted 0.74 of pool www "
                                     "(12.3k of 16.6k qps), now 0.41")


@pytest.mark.parametrize(("now", "then", "cap", "refused", "notes"), [
    ({"iad": 8100}, {"iad": 12_300}, {"iad": 10_000},
     ["capacity: iad predicted 12.3k qps, 123% of its 10.0k (now 8.1k, 81%)"], []),
    ({"iad": 8100}, {"iad": 9_999}, {"iad": 10_000}, [], []),
    ({"iad": 8100}, {"iad": 12_300}, {"iad": None}, [], []),  # no capacity: no verdict
    ({"iad": 13_000}, {"iad": 12_300}, {"iad": 10_000}, [],
     ["capacity: iad predicted 12.3k qps, 123% of its 10.0k (now 13.0k, 130%) (already so "
      "before this change)"]),
    ({}, {"gru": 950, "syd": 2.5}, {"gru": 900, "syd": 2}, [
        "capacity: gru predicted 950 qps, 106% of its 900 (now 0, 0%)",
        "capacity: syd predicted 2.5 qps, 125% of its 2 (now 0, 0%)"], []),
])
def test_check_capacity(now: dict[str, float], then: dict[str, float],
                        cap: dict[str, float | None], refused: list[str],
                        notes: list[str]) -> None:
    verdict = check_capacity(now, then, cap)
    assert [v.message for v in verdict.violations] == refused
    assert list(verdict.notes) == notes


def test_combine_keeps_every_pools_verdict() -> None:
    a = check_guards("www", Guards(max_share=0.6), drain_fra())
    b = check_capacity({"iad": 8100}, {"iad": 12_300}, {"iad": 10_000}, force=True)
    c = combine([a, b])
    assert not c.allowed
    assert [v.guard for v in c.violations] == ["max_share"]
    assert [v.guard for v in c.forced] == ["capacity"]


def test_guards_of_a_pool() -> None:
    cfg = parse_config(POPS_TOML + '[pools.www]\nstrategy = "nearest"\nmin_up = 2\n'
                       'max_share = 0.6\n[pools.api]\nstrategy = "nearest"\n', "t.toml")
    assert Guards.of(cfg.pools["www"]) == Guards(2, 0.6) and Guards.of(cfg.pools["www"]).active
    assert not Guards.of(cfg.pools["api"]).active


@pytest.mark.parametrize(("qps", "text"), [
    (0, "0"), (2.5, "2.5"), (12, "12"), (950, "950"), (999.4, "999"), (1000, "1.0k"),
    (16_600, "16.6k"), (999_949, "999.9k"), (1_250_000, "1.2M"),
])
def test_format_qps(qps: float, text: str) -> None:
    assert format_qps(qps) == text
