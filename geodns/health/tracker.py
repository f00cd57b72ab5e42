"""Turn a stream of pass/fail probe results into an up/down state, without flapping.

Pure and synchronous, so the hysteresis rules are unit-tested without sockets:

* before any result the state is the check's ``initial`` (``up`` unless told);
* the first result decides at once (a dead backend at boot is not served for
  ``fall`` intervals, and ``initial = "down"`` keeps a new POP out until it passes);
* afterwards it takes ``fall`` consecutive failures to go down and ``rise``
  consecutive successes to come back up, so a target alternating pass/fail never
  changes state once ``fall`` and ``rise`` are above 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RealState", "Tracker"]

RealState = Literal["up", "down"]


@dataclass(slots=True)
class Tracker:
    """Anti-flap state machine for one probe target."""

    fall: int = 3
    rise: int = 2
    state: RealState = "up"
    successes: int = 0  # consecutive, reset by a failure
    failures: int = 0  # consecutive, reset by a success
    observed: int = 0  # results seen so far

    def __post_init__(self) -> None:
        if self.fall < 1 or self.rise < 1:
            raise ValueError("fall and rise must be at least 1")

    def observe(self, ok: bool) -> bool:
        """Feed one result; True when the state changed."""
        first = self.observed == 0
        self.observed += 1
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
        old = self.state
        if first:
            self.state = "up" if ok else "down"
        elif old == "up" and self.failures >= self.fall:
            self.state = "down"
        elif old == "down" and self.successes >= self.rise:
            self.state = "up"
        return self.state != old
