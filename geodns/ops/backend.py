"""A ready-made :class:`~geodns.ops.control.ControlBackend` over the running server.

The server keeps owning config, zones, health and reloads; this adapter only reads
them (duck-typed through :class:`ServerLike`, so the server need not import ops)
and forwards writes.  It also keeps the ops side-state the server should not care
about: the health change log, health gauges and the last reload result.

Wiring (in the server)::

    metrics = Metrics()
    backend = ServerBackend(server, metrics, monitor)   # monitor: HealthMonitor | None
    monitor.on_change = backend.on_health               # or call it from your own hook
    backend.on_reloaded(ok)                             # after EVERY reload attempt
    runner = await start_control(backend, host, port, token)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from geodns.config import Config
from geodns.health.snapshot import HealthSnapshot, key_label
from geodns.ops.metrics import Metrics
from geodns.ops.status import (
    ChangeLog,
    pool_status,
    pop_status,
    reload_status,
    zone_status,
)

__all__ = ["HealthHolderLike", "MonitorLike", "ServerBackend", "ServerLike"]

log = logging.getLogger("geodns.control")


class _StoreLike(Protocol):
    def serials(self) -> Mapping[str, int]: ...


class HealthHolderLike(Protocol):
    snapshot: HealthSnapshot


class ServerLike(Protocol):
    """What the adapter reads from the server (geodns.server.Server has all of it)."""

    config: Config
    last_reload_error: list[str]

    @property
    def health(self) -> HealthHolderLike: ...

    @property
    def store(self) -> _StoreLike: ...

    async def reload(self, reason: str) -> bool: ...


class MonitorLike(Protocol):
    """What the adapter uses of geodns.health.monitor.HealthMonitor."""

    async def set_override(self, pattern: str, state: str,
                           until: float | None = None) -> object: ...

    async def clear_override(self, pattern: str) -> bool: ...

    def status(self) -> dict[str, Any]: ...


class ServerBackend:
    """ControlBackend for a live server (and optionally its health monitor)."""

    def __init__(self, server: ServerLike, metrics: Metrics,
                 monitor: MonitorLike | None = None, *, changes: int = 100) -> None:
        self.server = server
        self.metrics = metrics
        self.monitor = monitor
        self.changes = ChangeLog(changes, metrics)
        self._snapshot = server.health.snapshot
        metrics.zone_serials = dict(server.store.serials())  # what startup loaded
        self.sync_health()

    # --- ControlBackend ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Zones, pools, POPs with real/forced/effective states, last reload, overrides."""
        srv = self.server
        m = self.metrics
        data: dict[str, Any] = {
            "zones": zone_status(srv.store.serials()),
            "pools": pool_status(srv.config),
            "pops": pop_status(srv.config, srv.health.snapshot),
            "last_reload": reload_status(m.last_reload_ok, m.last_reload_time,
                                         srv.last_reload_error),
        }
        if self.monitor is not None:
            mon = self.monitor.status()
            data["overrides"] = mon.get("overrides", {}).get("rules", [])
            data["override_errors"] = mon.get("overrides", {}).get("errors", [])
            data["checks"] = mon.get("targets", {})
        return data

    async def reload(self) -> tuple[bool, list[str]]:
        """Same reload as SIGHUP; problems are the file:line list of a failure."""
        ok = await self.server.reload("control API")
        return ok, [] if ok else list(self.server.last_reload_error)

    async def set_override(self, target: str, state: str, until: float | None) -> None:
        """Forward to the health monitor (OverrideError is a ValueError: a 400)."""
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        await self.monitor.set_override(target, state, until)

    async def clear_override(self, target: str) -> bool:
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        return await self.monitor.clear_override(target)

    def recent_changes(self) -> list[dict[str, Any]]:
        return self.changes.recent()

    # --- hooks for the server ------------------------------------------------------

    def on_health(self, snapshot: HealthSnapshot) -> None:
        """A new snapshot was published: log changes, refresh gauges.  The server must
        still install it (``server.health.snapshot = snapshot``) before or after."""
        old, self._snapshot = self._snapshot, snapshot
        self.changes.observe(self.server.config, old, snapshot)
        self.sync_health(snapshot)

    def on_reloaded(self, ok: bool = True) -> None:
        """A reload attempt finished (SIGHUP, file watch or API): call it for failures
        too."""
        serials = dict(self.server.store.serials()) if ok else None
        self.metrics.reloaded(ok, serials)
        if ok:
            self.sync_health()

    def sync_health(self, snapshot: HealthSnapshot | None = None) -> None:
        """Health gauges for every POP and address; latencies from the monitor."""
        snap = snapshot or self.server.health.snapshot
        config = self.server.config
        states: dict[str, str] = {}
        for name, pop in config.pops.items():
            states[name] = snap.state(name)
            for address in (*pop.ipv4, *pop.ipv6):
                states[key_label((name, address))] = snap.address_state(name, address)
        self.metrics.replace_health(states)
        if self.monitor is not None:
            for target, info in self.monitor.status().get("targets", {}).items():
                ms = info.get("latency_ms") if isinstance(info, dict) else None
                if ms is not None and target in states:
                    self.metrics.check_latency[target] = ms / 1000.0
