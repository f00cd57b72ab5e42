"""Log lines a stranger can cause (spoofed UDP NOTIFY, badly signed queries): at most
one per kind every few seconds, with a count of those held back, so a flood cannot
fill the log."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

EVERY = 10.0  # seconds between two lines of the same kind


class Quiet:
    """One logger; ``warning(kind, ...)`` prints the first line of a kind at once."""

    def __init__(self, log: logging.Logger, every: float = EVERY) -> None:
        self.log = log
        self.every = every
        self.last: dict[str, tuple[float, int]] = {}  # kind -> (logged at, held back since)

    def warning(self, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        at, held = self.last.get(kind, (-math.inf, 0))
        if now - at < self.every:
            self.last[kind] = (at, held + 1)
            return
        if held:
            msg += f" ({held} more like it in the last {self.every:g} s not logged)"
        self.log.warning(msg, *args)
        self.last[kind] = (now, 0)
