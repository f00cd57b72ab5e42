"""Recent health state changes, remembered for ``/status`` and the page (the server
keeps no history of its own)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

from geodns.config import Config
from geodns.health.snapshot import HealthSnapshot, parse_key
from geodns.ops.metrics import Metrics
from geodns.ops.status import HealthChange

__all__ = ["ChangeLog", "effective_states", "health_changes"]

DEFAULT_SIZE: Final = 100


def effective_states(config: Config, health: HealthSnapshot) -> dict[str, str]:
    """The effective state of every POP and address, by target label."""
    out: dict[str, str] = {}
    for name, pop in config.pops.items():
        out[name] = health.state(name)
        for address in (*pop.ipv4, *pop.ipv6):
            out[f"{name}/{address}"] = health.address_state(name, address)
    return out


def health_changes(config: Config, old: HealthSnapshot,
                   new: HealthSnapshot) -> list[tuple[str, str, str, bool]]:
    """Effective state changes between two snapshots: (target, old, new, forced)."""
    if old is new:
        return []
    before, after = effective_states(config, old), effective_states(config, new)
    out = []
    for target, state in after.items():
        if before.get(target, "up") != state:
            key = parse_key(target)
            out.append((target, before.get(target, "up"), state,
                        new.forced(key) is not None or old.forced(key) is not None))
    return out


class ChangeLog:
    """The last ``size`` health state changes, newest first (for ``recent_changes``).

    Also counts each change in ``metrics`` (``geodns_health_state_changes_total``).
    """

    def __init__(self, size: int = DEFAULT_SIZE, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.entries: deque[HealthChange] = deque(maxlen=size)
        self.metrics = metrics
        self.clock = clock

    def record(self, target: str, old: str, new: str, *, reason: str | None = None,
               forced: bool = False) -> None:
        """One target changed its effective state."""
        self.entries.appendleft(HealthChange(self.clock(), target, old, new, forced, reason))
        if self.metrics is not None:
            self.metrics.health_changed(target, new)

    def observe(self, config: Config, old: HealthSnapshot, new: HealthSnapshot,
                reason: str | None = None) -> int:
        """Record every change between two snapshots; returns how many."""
        changes = health_changes(config, old, new)
        for target, before, after, forced in changes:
            self.record(target, before, after, reason=reason, forced=forced)
        return len(changes)

    def recent(self, limit: int | None = None) -> list[HealthChange]:
        """Newest first."""
        items = list(self.entries)
        return items if limit is None else items[:limit]
