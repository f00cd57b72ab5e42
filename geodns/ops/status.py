"""Plain-data views of config and health for ``/status`` and the status page.

The server owns the live objects; these helpers turn them into the JSON shapes the
control API documents (so every backend reports the same thing), and remember
recent health changes for the page without the server keeping its own history.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from geodns.config import Config
from geodns.health.snapshot import HealthKey, HealthSnapshot
from geodns.ops.metrics import Metrics

__all__ = [
    "ChangeLog",
    "health_changes",
    "pool_status",
    "pop_status",
    "reload_status",
    "zone_status",
]



def pop_status(config: Config, health: HealthSnapshot) -> list[dict[str, Any]]:
    """Every POP (config order) with real, forced and effective state, and its addresses."""
    out: list[dict[str, Any]] = []
    for name, pop in config.pops.items():
        addrs = []
        for address in (*pop.ipv4, *pop.ipv6):
            key = (name, address)
            addrs.append({"address": address, "state": health.address_state(name, address),
                          "real": health.real_state(key), "forced": health.forced(key)})
        out.append({
            "name": name, "state": health.state(name), "real": health.real_state(name),
            "forced": health.forced(name), "capacity": pop.capacity, "weight": pop.weight,
            "check": pop.health, "lat": pop.lat, "lon": pop.lon, "cname": pop.cname,
            "addresses": addrs,
        })
    return out


def pool_status(config: Config) -> list[dict[str, Any]]:
    """Every pool: name, strategy, TTLs, the POPs it can answer with, and its
    data-driven options (spill, guards, latency map)."""
    return [{"name": name, "strategy": pool.strategy, "ttl": pool.ttl,
             "ttl_on_failure": pool.ttl_on_failure, "all_down": pool.all_down,
             "pops": list(pool.referenced_pops()), "spill": pool.spill,
             "min_up": pool.min_up, "max_share": pool.max_share,
             "map": str(pool.map) if pool.map is not None else None,
             "fallback": pool.fallback}
            for name, pool in config.pools.items()]


def zone_status(serials: Mapping[str, int]) -> list[dict[str, Any]]:
    """Zones sorted by name with their serials."""
    return [{"name": z, "serial": s} for z, s in sorted(serials.items())]


def reload_status(ok: bool | None, when: float | None, problems: Iterable[str] = (),
                  reason: str | None = None) -> dict[str, Any] | None:
    """``last_reload`` for /status (None before the first attempt; the initial load
    counts, with reason ``start``)."""
    if ok is None:
        return None
    return {"ok": ok, "time": when, "problems": list(problems), "reason": reason}


def _effective(config: Config, health: HealthSnapshot) -> dict[str, str]:
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
    before, after = _effective(config, old), _effective(config, new)
    out = []
    for target, state in after.items():
        if before.get(target, "up") != state:
            key: HealthKey = target
            if "/" in target:
                pop, address = target.split("/", 1)
                key = (pop, address)
            out.append((target, before.get(target, "up"), state,
                        new.forced(key) is not None or old.forced(key) is not None))
    return out


class ChangeLog:
    """The last ``size`` health state changes, newest first (for ``recent_changes``).

    Also counts each change in ``metrics`` (``geodns_health_state_changes_total``).
    """

    def __init__(self, size: int = 100, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=size)
        self.metrics = metrics
        self.clock = clock

    def record(self, target: str, old: str, new: str, *, reason: str | None = None,
               forced: bool = False) -> None:
        """One target changed its effective state."""
        self.entries.appendleft({"time": self.clock(), "target": target, "from": old,
                                 "to": new, "forced": forced, "reason": reason})
        if self.metrics is not None:
            self.metrics.health_changed(target, new)

    def observe(self, config: Config, old: HealthSnapshot, new: HealthSnapshot,
                reason: str | None = None) -> int:
        """Record every change between two snapshots; returns how many."""
        changes = health_changes(config, old, new)
        for target, before, after, forced in changes:
            self.record(target, before, after, reason=reason, forced=forced)
        return len(changes)

    def recent(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        items = list(self.entries)
        return items if limit is None else items[:limit]
