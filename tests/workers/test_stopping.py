"""A child that dies while the node stops is not a crash (Supervisor._node_stopping)."""

from __future__ import annotations

import asyncio
import signal
import time
from types import SimpleNamespace

from geodns.workers.supervisor import STOP_GRACE, Supervisor


def node_stopping(code: int | None, *, stopping: bool = False, told: bool = False,
                  signal_after: float | None = None) -> tuple[bool, float]:
    """(the verdict, how long it took) for a child that exited with ``code``."""
    async def main() -> tuple[bool, float]:
        node = SimpleNamespace(_stopping_children=told, stopping=asyncio.Event())
        if stopping:
            node.stopping.set()
        if signal_after is not None:  # our own SIGTERM handler runs a little later
            asyncio.get_running_loop().call_later(signal_after, node.stopping.set)
        t0 = time.monotonic()
        verdict = await Supervisor._node_stopping(node, code)  # type: ignore[arg-type]
        return verdict, time.monotonic() - t0
    return asyncio.run(main())


def test_a_crash_while_serving_is_a_crash_at_once() -> None:
    verdict, took = node_stopping(-signal.SIGKILL)
    assert verdict is False and took < 0.1
    assert node_stopping(1)[0] is False


def test_a_child_that_dies_after_our_sigterm_was_handled_is_no_crash() -> None:
    """The supervisor's handler ran (stopping set) but the children were not told yet:
    e.g. the prober, killed by the same group signal, is noticed first."""
    verdict, took = node_stopping(-signal.SIGTERM, stopping=True)
    assert verdict is True and took < 0.1
    assert node_stopping(0, told=True)[0] is True


def test_a_sigterm_death_waits_for_our_own_signal() -> None:
    verdict, took = node_stopping(-signal.SIGTERM, signal_after=0.1)
    assert verdict is True and 0.1 <= took < STOP_GRACE + 0.2
    verdict, took = node_stopping(-signal.SIGTERM)  # nobody stops us: a real crash
    assert verdict is False and took >= STOP_GRACE
