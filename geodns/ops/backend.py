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
import os
import socket
import time
from collections.abc import Mapping
from typing import Any, Protocol

from geodns.config import Config
from geodns.health.overrides import match_targets
from geodns.health.snapshot import HealthKey, HealthSnapshot, key_label
from geodns.logs import event
from geodns.ops import dnstap as dnstap_status
from geodns.ops.dnstap import Dnstap
from geodns.ops.geoip import GeoInfo, geo_info, log_geo_info
from geodns.ops.metrics import Metrics
from geodns.ops.status import (
    ChangeLog,
    health_changes,
    pool_status,
    pop_status,
    reload_status,
    zone_status,
)
from geodns.traffic.steering import Steering

__all__ = ["HealthHolderLike", "MonitorLike", "ServerBackend", "ServerLike"]

log = logging.getLogger("geodns.control")
server_log = logging.getLogger("geodns")


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
                           until: float | None = None, force: bool = False) -> object: ...

    async def clear_override(self, pattern: str) -> bool: ...

    def status(self) -> dict[str, Any]: ...


class ServerBackend:
    """ControlBackend for a live server (and optionally its health monitor)."""

    def __init__(self, server: ServerLike, metrics: Metrics,
                 monitor: MonitorLike | None = None, *, changes: int = 100,
                 dnstap: Dnstap | None = None, steering: Steering | None = None) -> None:
        self.server = server
        self.metrics = metrics
        self.monitor = monitor
        self.dnstap = dnstap
        self.steering = steering  # issue 12: loads, spill, latency maps, mix, guards
        self.changes = ChangeLog(changes, metrics)
        self._snapshot = server.health.snapshot
        self.last_reason: str | None = None
        self.geo: GeoInfo | None = None
        self._geo_db: object = None
        self.host = socket.gethostname()
        self.started = metrics.started
        self._dnstap_config = server.config.dnstap  # what the writer was started with
        # The initial load is the first reload: counted, shown, and its GeoIP database
        # logged, like every later one.
        self.on_reloaded(True, "start")

    # --- ControlBackend ----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Zones, pools, POPs with real/forced/effective states, last reload, overrides."""
        srv = self.server
        m = self.metrics
        now = time.time()
        source = srv.config.source
        data: dict[str, Any] = {
            "server": {"version": m.version, "host": self.host, "pid": os.getpid(),
                       "started": self.started, "uptime_seconds": max(0.0, now - self.started),
                       "config": str(source) if source is not None else None},
            "zones": zone_status(srv.store.serials()),
            "pools": pool_status(srv.config),
            "pops": pop_status(srv.config, srv.health.snapshot),
            "last_reload": reload_status(m.last_reload_ok, m.last_reload_time,
                                         srv.last_reload_error, self.last_reason),
            "geoip": self.geo.as_dict(now) if self.geo is not None else None,
            "dnstap": dnstap_status.status(self.dnstap),
        }
        if self.monitor is not None:
            mon = self.monitor.status()
            data["overrides"] = mon.get("overrides", {}).get("rules", [])
            data["override_errors"] = mon.get("overrides", {}).get("errors", [])
            data["checks"] = mon.get("targets", {})
        node = getattr(srv, "workers_status", None)  # geodns/workers: one line per worker
        if node is not None:
            data["node"] = node()
        if self.steering is not None:
            steering = self.steering.status()
            data["steering"] = steering
            for pop in data["pops"]:
                figures = steering["pops"].get(pop["name"]) or {}
                pop["load"] = figures.get("load")
                pop["utilisation"] = figures.get("utilisation")
                pop["load_stale"] = figures.get("stale")
        return data

    async def refresh(self) -> None:
        """Before /metrics and /status: the workers' counters as of now."""
        refresh = getattr(self.server, "refresh_stats", None)
        if refresh is not None:
            await refresh()

    async def reload(self) -> tuple[bool, list[str]]:
        """Same reload as SIGHUP; problems are the file:line list of a failure."""
        ok = await self.server.reload("control API")
        return ok, [] if ok else list(self.server.last_reload_error)

    async def set_override(self, target: str, state: str, until: float | None,
                           force: bool = False) -> None:
        """Forward to the health monitor (OverrideError is a ValueError: a 400)."""
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        await self.monitor.set_override(target, state, until, force)

    def dry_run(self, target: str, state: str, until: float | None,
                force: bool = False) -> dict[str, Any]:
        """What the override would do to the recent traffic mix, changing nothing."""
        overrides = getattr(self.monitor, "overrides", None)
        if self.steering is None or overrides is None:
            raise ValueError("dry runs need the health monitor and the answer mix")
        rules = overrides.proposed(target, state, until, force)
        result = self.steering.predict(rules, f"{target} {state}")
        report = result.as_dict()
        _, covered = self.steering.mix.entries()
        report["window_seconds"] = covered
        return report

    def traffic_mix(self) -> dict[str, Any]:
        """The recent answer mix, health, loads and spill shares (simulate --from)."""
        if self.steering is None:
            return {"entries": [], "window_seconds": 0.0}
        return self.steering.mix_doc()

    async def clear_override(self, target: str) -> bool:
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        return await self.monitor.clear_override(target)

    def recent_changes(self) -> list[dict[str, Any]]:
        return self.changes.recent()

    # --- hooks for the server ------------------------------------------------------

    def on_health(self, snapshot: HealthSnapshot) -> None:
        """A new snapshot was published: log changes (with why), refresh gauges.  The
        server must still install it (``server.health.snapshot = snapshot``)."""
        old, self._snapshot = self._snapshot, snapshot
        changes = health_changes(self.server.config, old, snapshot)
        if changes:
            checks = self._checks()
            for target, before, after, forced in changes:
                reason = self._reason(target, after, forced, old, snapshot, checks)
                self.changes.record(target, before, after, reason=reason, forced=forced)
        self.sync_health(snapshot)

    def _checks(self) -> Mapping[str, Any]:
        if self.monitor is None:
            return {}
        targets = self.monitor.status().get("targets", {})
        return targets if isinstance(targets, Mapping) else {}

    def _reason(self, target: str, after: str, forced: bool, old: HealthSnapshot,
                new: HealthSnapshot, checks: Mapping[str, Any]) -> str | None:
        """Why a target changed: the override that forced it, or its check's last word."""
        key: HealthKey = target
        if "/" in target:
            pop, address = target.split("/", 1)
            key = (pop, address)
        if forced:
            now_forced = new.forced(key)
            if now_forced is None:
                return "operator override removed"
            return self._override_reason(key, now_forced)
        info = checks.get(target)
        if not isinstance(info, Mapping) and isinstance(key, str):
            # A POP checked per address: the reasons of its addresses that changed too.
            prefix = target + "/"
            info = next((v for k, v in checks.items() if k.startswith(prefix)
                         and isinstance(v, Mapping) and v.get("state") == after), None)
        if isinstance(info, Mapping) and info.get("reason"):
            return f"check {info.get('check')}: {info.get('reason')}"
        return None

    def _override_reason(self, key: HealthKey, state: str) -> str:
        if self.monitor is not None:
            rules = self.monitor.status().get("overrides", {}).get("rules", [])
            pops = [(name, [*pop.ipv4, *pop.ipv6])
                    for name, pop in self.server.config.pops.items()]
            for rule in reversed(rules):
                if not rule.get("active", True) or rule.get("state") != state:
                    continue
                if key in set(match_targets(str(rule.get("pattern")), pops)):
                    until = rule.get("until")
                    return (f"operator override {rule.get('pattern')} {state} "
                            f"({rule.get('source')}{', until ' + until if until else ''})")
        return f"operator override: {state}"

    def on_reloaded(self, ok: bool = True, reason: str | None = None) -> None:
        """A reload attempt finished (SIGHUP, file watch or API; "start" for the initial
        load): count it, log one ``reload`` event, note a new GeoIP database."""
        srv = self.server
        serials = dict(srv.store.serials()) if ok else None
        self.metrics.reloaded(ok, serials)
        self.last_reason = reason
        what = "load" if reason == "start" else "reload"
        if ok:
            assert serials is not None
            text = ", ".join(f"{z} {s}" for z, s in sorted(serials.items()))
            server_log.info("%s (%s): serving %d zones: %s", what, reason, len(serials), text,
                     extra=event("reload", ok=True, reason=reason, zones=serials))
            self.sync_health()
            self._geo_changed()
            if srv.config.dnstap != self._dnstap_config:
                log.warning("reload: [dnstap] changed; it takes effect at the next restart")
        else:
            problems = list(srv.last_reload_error)
            server_log.error("%s (%s) failed; still serving the previous zones and config",
                             what, reason, extra=event("reload", ok=False, reason=reason,
                                                       problems=problems))

    def _geo_changed(self) -> None:
        """Log (and expose) the GeoIP database when it is new: at start and on change."""
        runtime = getattr(self.server, "runtime", None)
        db = getattr(runtime, "geo", None)
        if db is None or db is self._geo_db:
            return
        self._geo_db = db
        max_age = self.server.config.geoip.max_age_days
        self.geo = geo_info(db, max_age)
        self.metrics.geoip = (self.geo.type, self.geo.path, float(self.geo.build_epoch))
        log_geo_info(self.geo)

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
