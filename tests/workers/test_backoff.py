"""Children that cannot start or keep crashing are started again ever more slowly
(Supervisor._keep_prober, next_backoff); one that ran steadily comes back at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from geodns.workers import supervisor
from geodns.workers.supervisor import FIRST_BACKOFF, MAX_BACKOFF, STEADY, Supervisor, next_backoff


def test_next_backoff_doubles_up_to_the_cap_and_resets_after_steady_running() -> None:
    waits, backoff = [], FIRST_BACKOFF
    for _ in range(10):
        backoff = next_backoff(0.2, backoff)
        waits.append(backoff)
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and waits[-1] == MAX_BACKOFF
    assert next_backoff(STEADY + 1, MAX_BACKOFF) == FIRST_BACKOFF


def test_a_prober_that_cannot_start_is_retried_ever_more_slowly(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """E.g. the interpreter cannot be executed: a start that failed ran 0 s (before, it
    counted as hours of steady running since the clock's zero, and was retried every
    half second forever, with a traceback each time)."""
    async def refuse(self: Any) -> None:
        raise PermissionError(13, "Permission denied")

    waits: list[float] = []

    async def main() -> None:
        node = SimpleNamespace(_stopping_children=False, prober=None,
                               probe=SimpleNamespace(channel=None))
        node._child_args = lambda index: []

        async def not_stopping(code: int | None) -> bool:
            return False

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 6:
                node._stopping_children = True

        node._node_stopping = not_stopping
        monkeypatch.setattr(supervisor.asyncio, "sleep", sleep)
        await Supervisor._keep_prober(node)  # type: ignore[arg-type]

    monkeypatch.setattr(supervisor.Child, "start", refuse)
    asyncio.run(main())
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert "prober: could not start" in caplog.text
    assert "after 0 s" in caplog.text
