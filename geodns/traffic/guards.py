"""Guards for drills: would this override leave a pool with too few POPs, or push one POP
past its share of the pool or past its capacity?

Pure logic: callers (the control API, ``geodns simulate``) predict per-POP qps and
states with the selector and the recent traffic mix, and ask here for the verdict.  A
change is refused only for what it makes worse: a pool that is already below a guard
may still be helped by an override that does not deepen the breach.  ``force`` (break
glass) turns refusals into warnings the caller logs and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from geodns.config import Pool
from geodns.health.snapshot import State

__all__ = [
    "GuardVerdict",
    "Guards",
    "PopFigures",
    "Violation",
    "check_capacity",
    "check_guards",
    "combine",
    "format_qps",
]

_EPS: Final = 1e-9
GuardName = Literal["min_up", "max_share", "capacity"]


@dataclass(frozen=True, slots=True)
class Guards:
    """A pool's guards (``pools.NAME.min_up``, ``.max_share``); None = not set."""

    min_up: int | None = None
    max_share: float | None = None

    @classmethod
    def of(cls, pool: Pool) -> Guards:
        """The guards a pool declares."""
        return cls(pool.min_up, pool.max_share)

    @property
    def active(self) -> bool:
        """Is there anything to check?"""
        return self.min_up is not None or self.max_share is not None


@dataclass(frozen=True, slots=True)
class PopFigures:
    """One POP of a pool now and as predicted under the change."""

    now_qps: float = 0.0
    predicted_qps: float = 0.0
    now_state: State = "up"
    predicted_state: State = "up"


@dataclass(frozen=True, slots=True)
class Violation:
    """A guard (or capacity) the change would break, with the figures that break it.

    ``now``/``predicted``/``limit`` are POPs serving (min_up), a share (max_share) or
    qps (capacity).
    """

    guard: GuardName
    pool: str | None  # None for capacity: a POP-wide limit over every pool
    pop: str | None  # None for min_up: a pool-wide count
    limit: float
    now: float
    predicted: float
    message: str


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guards say about one change."""

    violations: tuple[Violation, ...] = ()  # refuse the change
    forced: tuple[Violation, ...] = ()  # broken, but let through by force: log and count
    notes: tuple[str, ...] = ()  # not refusals: breaches the change does not worsen, gaps

    @property
    def allowed(self) -> bool:
        """May the change go ahead?"""
        return not self.violations

    def messages(self) -> list[str]:
        """Every refusal, then every forced breach (``forced: ...``), then notes."""
        return ([v.message for v in self.violations]
                + [f"forced: {v.message}" for v in self.forced] + list(self.notes))


def combine(verdicts: Iterable[GuardVerdict]) -> GuardVerdict:
    """One verdict over several pools (and capacity)."""
    vs: list[Violation] = []
    fs: list[Violation] = []
    ns: list[str] = []
    for verdict in verdicts:
        vs += verdict.violations
        fs += verdict.forced
        ns += verdict.notes
    return GuardVerdict(tuple(vs), tuple(fs), tuple(ns))


def format_qps(qps: float) -> str:
    """``950``, ``2.5``, ``12.3k``, ``1.2M``: short enough for a one-line refusal."""
    if qps >= 999_950:
        return f"{qps / 1e6:.1f}M"
    if qps >= 1000:
        return f"{qps / 1e3:.1f}k"
    if qps >= 10 or qps == int(qps):
        return f"{qps:.0f}"
    return f"{qps:.1f}"


def _verdict(found: list[Violation], notes: list[str], force: bool) -> GuardVerdict:
    if force:
        return GuardVerdict(forced=tuple(found), notes=tuple(notes))
    return GuardVerdict(violations=tuple(found), notes=tuple(notes))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_guards(pool: str, guards: Guards, figures: Mapping[str, PopFigures], *,
                 force: bool = False) -> GuardVerdict:
    """Check one pool's guards against ``figures`` (every POP of the pool)."""
    found: list[Violation] = []
    notes: list[str] = []
    if guards.min_up is not None:
        limit = guards.min_up
        now_up = [p for p, f in figures.items() if f.now_state == "up"]
        then_up = [p for p, f in figures.items() if f.predicted_state == "up"]
        if len(then_up) < limit:
            out = sorted(p for p, f in figures.items() if f.predicted_state != "up")
            text = (f"min_up {limit}: pool {pool} predicted {_plural(len(then_up), 'POP')} "
                    f"serving ({', '.join(then_up) or 'none'}), now {len(now_up)}; down or "
                    f"drained: {', '.join(out)}")
            if len(then_up) < len(now_up):
                found.append(Violation("min_up", pool, None, limit, len(now_up),
                                       len(then_up), text))
            else:
                notes.append(f"{text} (already so before this change)")
    if guards.max_share is not None:
        limit_share = guards.max_share
        total_now = sum(f.now_qps for f in figures.values())
        total = sum(f.predicted_qps for f in figures.values())
        if total <= 0:
            notes.append(f"max_share {limit_share:g}: pool {pool} has no recent traffic; "
                         "not evaluated")
        else:
            for pop in sorted(figures):
                f = figures[pop]
                share = f.predicted_qps / total
                if share <= limit_share + _EPS:
                    continue
                now_share = f.now_qps / total_now if total_now > 0 else 0.0
                text = (f"max_share {limit_share:g}: {pop} predicted {share:.2f} of pool "
                        f"{pool} ({format_qps(f.predicted_qps)} of {format_qps(total)} qps), "
                        f"now {now_share:.2f}")
                if share > now_share + _EPS:
                    found.append(Violation("max_share", pool, pop, limit_share, now_share,
                                           share, text))
                else:
                    notes.append(f"{text} (already so before this change)")
    return _verdict(found, notes, force)


def check_capacity(now_qps: Mapping[str, float], predicted_qps: Mapping[str, float],
                   capacity: Mapping[str, float | None], *,
                   force: bool = False, unit: str = " qps") -> GuardVerdict:
    """POPs the change pushes past ``capacity`` (qps over every pool, or loads: any unit
    the capacity is in, named by ``unit``)."""
    found: list[Violation] = []
    notes: list[str] = []
    for pop in sorted(predicted_qps):
        cap = capacity.get(pop)
        then, now = predicted_qps[pop], now_qps.get(pop, 0.0)
        if cap is None or then <= cap + _EPS:
            continue
        text = (f"capacity: {pop} predicted {format_qps(then)}{unit}, {then / cap:.0%} of its "
                f"{format_qps(cap)} (now {format_qps(now)}, {now / cap:.0%})")
        if then > now + _EPS:
            found.append(Violation("capacity", None, pop, cap, now, then, text))
        else:
            notes.append(f"{text} (already so before this change)")
    return _verdict(found, notes, force)
