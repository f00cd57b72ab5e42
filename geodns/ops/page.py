"""The status page: one server-rendered HTML document an operator reads at a glance.

A jinja2 template (``templates/status.html``, autoescaped) over the same typed
:class:`~geodns.ops.status.Status` that ``GET /status`` serialises, so page and API
never disagree.  No external assets: inline CSS, and a few lines of inline JS that
re-fetch the page every few seconds and swap in the new ``#content`` (keeping the
scroll position, unlike a meta refresh); a banner turns red when the server stops
answering.  Without JS the ``<noscript>`` meta refresh does the same job, coarser.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Final

import jinja2

from geodns.ops.status import Status

__all__ = ["REFRESH_SECONDS", "render_page"]

REFRESH_SECONDS: Final = 5
STATES: Final = ("up", "drain", "down")
_SPARK_W, _SPARK_H = 90, 18


def ago(ts: float | None, now: float) -> str:
    """``10s ago``, ``3m ago``, ``2h 5m ago``, ``4d ago`` (``never`` for None)."""
    if ts is None:
        return "never"
    d = max(0, int(now - ts))
    if d < 60:
        return f"{d}s ago"
    if d < 3600:
        return f"{d // 60}m ago"
    if d < 86400:
        return f"{d // 3600}h {d % 3600 // 60}m ago"
    return f"{d // 86400}d ago"


def clock(ts: float | None) -> str:
    """``10:00:00 UTC`` (``-`` for None)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def uptime(seconds: float) -> str:
    d = max(0, int(seconds))
    if d < 3600:
        return f"{d // 60}m {d % 60}s"
    if d < 86400:
        return f"{d // 3600}h {d % 3600 // 60}m"
    return f"{d // 86400}d {d % 86400 // 3600}h"


def state_class(value: object) -> str:
    """A state's CSS class: up, drain, down, or none for anything else."""
    return str(value) if value in STATES else "none"


def spark_points(series: Sequence[int]) -> str:
    """The polyline of a sparkline of per-minute answers (oldest left)."""
    top = max(series) or 1
    step = _SPARK_W / (len(series) - 1)
    return " ".join(f"{i * step:.1f},{_SPARK_H - 1 - (v / top) * (_SPARK_H - 2):.1f}"
                    for i, v in enumerate(series))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("geodns.ops", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(ago=ago, clock=clock, uptime=uptime, state=state_class,
                       spark_points=spark_points, fmt=format)
    return env


def render_page(status: Status, *, now: float | None = None,
                refresh: int = REFRESH_SECONDS) -> str:
    """The whole status page for a :class:`Status`."""
    now = time.time() if now is None else now
    counts = [(s, sum(1 for p in status.pops if state_class(p.state) == s)) for s in STATES]
    states = {p.name: state_class(p.state) for p in status.pops}
    shares = status.steering.spill.shares if status.steering is not None else {}
    return _environment().get_template("status.html").render(
        status=status, now=now, refresh=refresh, counts=counts, states=states, shares=shares)
