"""A ready-made :class:`~geodns.ops.control.ControlBackend` over a running server.

The server keeps owning config, zones, health and reloads; this adapter only reads
frozen views of them (:class:`~geodns.ops.serving.Serving`: ``view()``) and asks for
reloads through ``request_reload()``.  It also keeps the ops side-state the server
should not care about: the health change log, health gauges and the last reload
result.

Wiring (in the server)::

    metrics = Metrics()
    backend = ServerBackend(server, metrics, monitor)   # monitor: HealthMonitor | None
    monitor.on_change = backend.on_health               # or call it from your own hook
    backend.on_reloaded(ok, reason, problems)           # after EVERY reload attempt
    runner = await start_control(backend, host, port, token)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from geodns.config import Config
from geodns.health.override_rules import OverrideRule, format_time, rule_for
from geodns.health.snapshot import HealthKey, HealthSnapshot, key_label, parse_key
from geodns.logs import event
from geodns.ops.changes import ChangeLog, health_changes
from geodns.ops.dnstap import Dnstap
from geodns.ops.geoip import GeoInfo, geo_info, log_geo_info
from geodns.ops.metrics import Metrics
from geodns.ops.serving import Serving
from geodns.ops.status import CheckStatus, ServerInfo, Status, TrafficMix
from geodns.ops.status_build import (
    HealthSource,
    build_status,
    check_status,
    reload_status,
    traffic_mix,
)
from geodns.traffic.steering import Steering

__all__ = ["MonitorLike", "ServerBackend"]

log = logging.getLogger("geodns.control")
server_log = logging.getLogger("geodns")


class MonitorLike(HealthSource, Protocol):
    """What the adapter uses of :class:`geodns.health.monitor.HealthMonitor`."""

    async def set_override(self, pattern: str, state: str,
                           until: datetime | float | str | None = None,
                           force: bool = False) -> OverrideRule: ...

    async def clear_override(self, pattern: str) -> bool: ...


class ServerBackend:
    """ControlBackend for a live server (and optionally its health monitor)."""

    def __init__(self, server: Serving, metrics: Metrics,
                 monitor: MonitorLike | None = None, *, changes: int = 100,
                 dnstap: Dnstap | None = None, steering: Steering | None = None) -> None:
        self.server = server
        self.metrics = metrics
        self.monitor = monitor
        self.dnstap = dnstap
        self.steering = steering  # issue 12: loads, spill, latency maps, mix, guards
        self.changes = ChangeLog(changes, metrics)
        view = server.view()
        self._snapshot = view.health
        self.last_reason: str | None = None
        self.last_problems: tuple[str, ...] = ()
        self.geo: GeoInfo | None = None
        self._geo_db: object = None
        self.host = socket.gethostname()
        self.started = metrics.started
        self._dnstap_config = view.config.dnstap  # what the writer was started with
        # The initial load is the first reload: counted, shown, and its GeoIP database
        # logged, like every later one.
        self.on_reloaded(True, "start")

    # --- ControlBackend ----------------------------------------------------------

    def status(self, now: float | None = None) -> Status:
        """Everything /status and the page show, built once from what is served."""
        view = self.server.view()
        m = self.metrics
        now = time.time() if now is None else now
        source = view.config.source
        info = ServerInfo(m.version, self.host, os.getpid(), self.started,
                          max(0.0, now - self.started),
                          str(source) if source is not None else None)
        return build_status(
            view, metrics=m, now=now, server=info,
            last_reload=reload_status(m.last_reload_ok, m.last_reload_time,
                                      self.last_problems, self.last_reason),
            geo=self.geo, dnstap=self.dnstap, monitor=self.monitor, steering=self.steering,
            changes=self.changes.recent())

    async def refresh(self) -> None:
        """Before /metrics and /status: the workers' counters as of now."""
        await self.server.refresh_stats()

    async def reload(self) -> tuple[bool, list[str]]:
        """Same reload as SIGHUP; problems are the file:line list of a failure."""
        outcome = await self.server.request_reload("control API")
        return outcome.ok, list(outcome.problems)

    async def set_override(self, target: str, state: str, until: float | None,
                           force: bool = False) -> None:
        """Forward to the health monitor (OverrideError is a ValueError: a 400)."""
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        await self.monitor.set_override(target, state, until, force)

    def dry_run(self, target: str, state: str, until: float | None,
                force: bool = False) -> dict[str, Any]:
        """What the override would do to the recent traffic mix, changing nothing."""
        if self.steering is None or self.monitor is None:
            raise ValueError("dry runs need the health monitor and the answer mix")
        rules = self.monitor.overrides.proposed(target, state, until, force)
        result = self.steering.predict(rules, f"{target} {state}")
        report = result.as_dict()
        _, covered = self.steering.mix.entries()
        report["window_seconds"] = covered
        return report

    def traffic_mix(self) -> TrafficMix:
        """The recent answer mix, health, loads and spill shares (simulate --from)."""
        return traffic_mix(self.steering)

    async def clear_override(self, target: str) -> bool:
        if self.monitor is None:
            raise ValueError("health overrides are not available (no health monitor)")
        return await self.monitor.clear_override(target)

    # --- hooks for the server ------------------------------------------------------

    def on_health(self, snapshot: HealthSnapshot) -> None:
        """A new snapshot was published: log changes (with why), refresh gauges.  The
        server must still install it (``server.health.snapshot = snapshot``)."""
        old, self._snapshot = self._snapshot, snapshot
        view = self.server.view()
        changes = health_changes(view.config, old, snapshot)
        if changes:
            checks = self._checks()
            for target, before, after, forced in changes:
                reason = self._reason(target, after, forced, snapshot, checks, view.config)
                self.changes.record(target, before, after, reason=reason, forced=forced)
        self.sync_health(snapshot)

    def _checks(self) -> Mapping[str, CheckStatus]:
        return check_status(self.monitor) if self.monitor is not None else {}

    def _reason(self, target: str, after: str, forced: bool, new: HealthSnapshot,
                checks: Mapping[str, CheckStatus], config: Config) -> str | None:
        """Why a target changed: the override that forced it, or its check's last word."""
        key = parse_key(target)
        if forced:
            now_forced = new.forced(key)
            if now_forced is None:
                return "operator override removed"
            return self._override_reason(key, now_forced, config)
        info = checks.get(target)
        if info is None and isinstance(key, str):
            # A POP checked per address: the reasons of its addresses that changed too.
            prefix = target + "/"
            info = next((v for k, v in checks.items() if k.startswith(prefix)
                         and v.state == after), None)
        if info is not None and info.reason:
            return f"check {info.check}: {info.reason}"
        return None

    def _override_reason(self, key: HealthKey, state: str, config: Config) -> str:
        if self.monitor is not None:
            overrides = self.monitor.overrides
            rule = rule_for(overrides.rules, key, state, config.pops, overrides.clock())
            if rule is not None:
                until = format_time(rule.until) if rule.until is not None else None
                return (f"operator override {rule.pattern} {state} "
                        f"({rule.source}{', until ' + until if until else ''})")
        return f"operator override: {state}"

    def on_reloaded(self, ok: bool = True, reason: str | None = None,
                    problems: Sequence[str] = ()) -> None:
        """A reload attempt finished (SIGHUP, file watch or API; "start" for the initial
        load): count it, log one ``reload`` event, note a new GeoIP database.
        ``problems``: a failed reload's ``FILE:LINE: problem`` lines."""
        view = self.server.view()
        serials = dict(view.serials) if ok else None
        self.metrics.reloaded(ok, serials)
        self.last_reason = reason
        self.last_problems = () if ok else tuple(problems)
        what = "load" if reason == "start" else "reload"
        if ok:
            assert serials is not None
            text = ", ".join(f"{z} {s}" for z, s in sorted(serials.items()))
            server_log.info("%s (%s): serving %d zones: %s", what, reason, len(serials), text,
                            extra=event("reload", ok=True, reason=reason, zones=serials))
            self.sync_health()
            self._geo_changed(view.geo, view.config.geoip.max_age_days)
            if view.config.dnstap != self._dnstap_config:
                log.warning("reload: [dnstap] changed; it takes effect at the next restart")
        else:
            server_log.error("%s (%s) failed; still serving the previous zones and config",
                             what, reason, extra=event("reload", ok=False, reason=reason,
                                                       problems=list(problems)))

    def _geo_changed(self, db: Any, max_age: int) -> None:
        """Log (and expose) the GeoIP database when it is new: at start and on change."""
        if db is None or db is self._geo_db:
            return
        self._geo_db = db
        self.geo = geo_info(db, max_age)
        self.metrics.geoip = (self.geo.type, self.geo.path, float(self.geo.build_epoch))
        log_geo_info(self.geo)

    def sync_health(self, snapshot: HealthSnapshot | None = None) -> None:
        """Health gauges for every POP and address; latencies from the monitor."""
        view = self.server.view()
        snap = snapshot or view.health
        states: dict[str, str] = {}
        for name, pop in view.config.pops.items():
            states[name] = snap.state(name)
            for address in (*pop.ipv4, *pop.ipv6):
                states[key_label((name, address))] = snap.address_state(name, address)
        self.metrics.replace_health(states)
        for target, info in self._checks().items():
            if info.latency_ms is not None and target in states:
                self.metrics.check_latency[target] = info.latency_ms / 1000.0

