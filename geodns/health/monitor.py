"""The health monitor: schedule probes, track states, publish health snapshots.

Runs entirely on the server's event loop.  Each probe target has its own task, so
a hanging backend costs only its own ``timeout`` and never delays other checks or
DNS answers; a semaphore bounds how many probes are in flight at once.

Targets are deduplicated by (check name, probe address, port): POPs that share a
check and an endpoint are probed once per interval, and every health key fed by
that probe gets its state.  Keys are a POP name (``target = "pop"``) or
``(pop, address)`` (``target = "address"``), exactly as in :class:`HealthSnapshot`.

Every state change is logged on logger ``geodns.health`` as one structured line::

    health state change target=fra old=up new=down reason="timeout after 3.0s" latency_ms=3001

and published as a new snapshot: ``monitor.snapshot`` and ``on_change(snapshot)``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp

from geodns.config import Check, Config, Pop
from geodns.health.checks import ProbeResult, check_port, make_session, run_check
from geodns.health.overrides import OverrideRule, Overrides
from geodns.health.snapshot import HealthKey, HealthSnapshot, State, key_label
from geodns.health.tracker import Tracker
from geodns.logs import event

__all__ = [
    "JITTER",
    "MAX_CONCURRENT_PROBES",
    "HealthMonitor",
    "ProbeFn",
    "ProbeKey",
    "ProbeSpec",
    "key_label",
    "plan_probes",
]

log = logging.getLogger("geodns.health")

MAX_CONCURRENT_PROBES: Final = 64
JITTER: Final = 0.1  # each interval is stretched or shrunk by up to 10 %
_GRACE: Final = 0.5  # an injected probe that ignores its timeout is cut off after this more

ProbeKey = tuple[str, str | None, int | None]  # (check name, probe address, port)
ProbeFn = Callable[[Check, str | None], Awaitable[ProbeResult]]
OnChange = Callable[[HealthSnapshot], None]



def _hostport(address: str | None, port: int | None) -> str:
    if address is None:
        return "-"
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One deduplicated probe: what to run, where, and which health keys it feeds."""

    check: Check
    address: str | None
    port: int | None
    keys: tuple[HealthKey, ...]

    @property
    def key(self) -> ProbeKey:
        """Dedupe identity."""
        return (self.check.name, self.address, self.port)


def _pop_address(check: Check, pop: Pop) -> str | None:
    if check.address is not None:
        return check.address
    if pop.ipv4:
        return pop.ipv4[0]
    if pop.ipv6:
        return pop.ipv6[0]
    return None


def plan_probes(config: Config, warn: bool = True) -> dict[ProbeKey, ProbeSpec]:
    """Every probe the config needs, deduplicated by (check, address, port)."""
    keys: dict[ProbeKey, list[HealthKey]] = {}
    checks: dict[ProbeKey, Check] = {}
    for pop in config.pops.values():
        if pop.health is None:
            continue
        check = config.checks.get(pop.health)
        if check is None:
            continue
        port = check_port(check)
        wanted: list[tuple[HealthKey, str | None]]
        if check.target == "address":
            wanted = [((pop.name, a), a) for a in (*pop.ipv4, *pop.ipv6)]
            if not wanted and warn:
                log.warning("health: POP %s has no addresses for check %s (target = "
                            "\"address\"); nothing to probe", pop.name, check.name)
        else:
            address = _pop_address(check, pop)
            if address is None and check.type != "external":
                if warn:
                    log.warning("health: POP %s has no address to probe for check %s "
                                "(set checks.%s.address); it stays up", pop.name,
                                check.name, check.name)
                continue
            wanted = [(pop.name, address)]
        for key, address in wanted:
            pkey: ProbeKey = (check.name, address, port)
            keys.setdefault(pkey, []).append(key)
            checks[pkey] = check
    return {k: ProbeSpec(checks[k], k[1], k[2], tuple(v)) for k, v in keys.items()}


@dataclass(eq=False, slots=True)
class _Probe:
    """A running probe and everything status() reports about it."""

    spec: ProbeSpec
    tracker: Tracker
    task: asyncio.Task[None] | None = None
    last: ProbeResult | None = None
    last_check: float | None = None  # wall clock
    last_change: float | None = None  # wall clock
    runs: int = 0
    keys: tuple[HealthKey, ...] = field(default=())


class ProbeSkipped(Exception):
    """Raised by a probe function that cannot probe now (not a failure of the target)."""


class HealthMonitor:
    """Runs every configured check and publishes the resulting :class:`HealthSnapshot`.

    ``on_change(snapshot)`` is called once by :meth:`start` and then on every change
    (checked state or override); ``monitor.snapshot`` is always the latest.
    ``state_file`` defaults to ``config.admin.state_file``.
    """

    def __init__(self, config: Config, on_change: OnChange | None = None,
                 state_file: str | Path | None = None, *,
                 max_concurrency: int = MAX_CONCURRENT_PROBES, jitter: float = JITTER,
                 probe: ProbeFn | None = None,
                 override_poll_interval: float = 1.0) -> None:
        self.config = config
        self.on_change = on_change
        self.jitter = jitter
        self._explicit_state_file = state_file is not None
        path = state_file if state_file is not None else config.admin.state_file
        self.overrides = Overrides(path, self._overrides_changed,
                                   poll_interval=override_poll_interval)
        self._sem = asyncio.Semaphore(max_concurrency)
        self._probe_fn = probe
        self._session: aiohttp.ClientSession | None = None
        self._probes: dict[ProbeKey, _Probe] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._forced: dict[HealthKey, State] = {}
        self._running = False
        self._apply_plan(plan_probes(config, warn=False))
        self.snapshot = HealthSnapshot.build(real=self._real(), generation=1)

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Load overrides, start every probe (the first one runs at once), publish."""
        if self._running:
            return
        self._running = True
        if self._probe_fn is None:
            self._session = make_session()
        plan = plan_probes(self.config)  # again, now logging what cannot be probed
        self._apply_plan(plan)
        await self.overrides.start()
        for probe in self._probes.values():
            self._launch(probe)
        log.info("health: monitoring %d target%s with %d probe%s", self._key_count(),
                 "" if self._key_count() == 1 else "s", len(self._probes),
                 "" if len(self._probes) == 1 else "s")
        self._publish(force_notify=True)

    async def stop(self) -> None:
        """Cancel every probe and the override watcher; close the HTTP client."""
        self._running = False
        tasks = [p.task for p in self._probes.values() if p.task is not None]
        tasks += list(self._retired)
        for probe in self._probes.values():
            probe.task = None
        self._retired.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.overrides.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def update_config(self, config: Config) -> None:
        """Config reload: unchanged probes keep their state and schedule; changed ones
        restart (keeping their last state until the first new result); removed ones stop."""
        old_pops = self.config.pops
        self.config = config
        self._apply_plan(plan_probes(config, warn=self._running))
        if not self._explicit_state_file and config.admin.state_file != self.overrides.path:
            if self._running:
                self._spawn(self.overrides.set_path(config.admin.state_file))
            else:
                self.overrides.retarget(config.admin.state_file)
        if self._running or old_pops != config.pops:
            self._publish()

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _apply_plan(self, plan: Mapping[ProbeKey, ProbeSpec]) -> None:
        old = self._probes
        new: dict[ProbeKey, _Probe] = {}
        for pkey, spec in plan.items():
            prev = old.get(pkey)
            if prev is not None and prev.spec.check == spec.check:
                prev.spec = spec
                prev.keys = spec.keys
                new[pkey] = prev
                continue
            check = spec.check
            tracker = Tracker(fall=check.fall, rise=check.rise, state=check.initial)
            probe = _Probe(spec, tracker, keys=spec.keys)
            if prev is not None:  # same target, new definition: carry the state over
                tracker.state = prev.tracker.state
                probe.last_change = prev.last_change
                self._retire(prev)
            new[pkey] = probe
            if self._running:
                self._launch(probe)
        for pkey, prev in old.items():
            if pkey not in new:
                self._retire(prev)
        self._probes = new

    def _retire(self, probe: _Probe) -> None:
        task, probe.task = probe.task, None
        if task is not None:
            task.cancel()
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    def _launch(self, probe: _Probe) -> None:
        if probe.task is None:
            name = f"geodns-health-{probe.spec.check.name}-{_hostport(*probe.spec.key[1:])}"
            probe.task = asyncio.get_running_loop().create_task(self._run(probe), name=name)

    # --- probing ------------------------------------------------------------------

    async def _run(self, probe: _Probe) -> None:
        """Probe now, then every interval (± jitter), measured from each start."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            async with self._sem:
                result = await self._probe_once(probe.spec)
            if probe.task is not asyncio.current_task():
                return  # retired while probing: its result is stale
            if result is not None:
                self._record(probe, result)
            check = probe.spec.check
            stretch = 1.0 + random.uniform(-self.jitter, self.jitter)
            next_at = max(started + check.interval * stretch, loop.time())

    async def _probe_once(self, spec: ProbeSpec) -> ProbeResult | None:
        """The result, or None when the probe could not run at all (the prober process
        is being restarted): no result, so the state stays what it was."""
        check = spec.check
        start = time.monotonic()
        try:
            async with asyncio.timeout(check.timeout + _GRACE):
                if self._probe_fn is not None:
                    return await self._probe_fn(check, spec.address)
                return await run_check(check, spec.address, session=self._session)
        except ProbeSkipped:
            return None
        except TimeoutError:
            return ProbeResult(False, f"timeout after {check.timeout}s",
                               time.monotonic() - start)
        except Exception as exc:  # an injected probe misbehaving
            return ProbeResult(False, f"probe error: {type(exc).__name__}: {exc}",
                               time.monotonic() - start)

    def _record(self, probe: _Probe, result: ProbeResult) -> None:
        """Feed one result to the tracker; log and publish if the state changed."""
        now = time.time()
        probe.last = result
        probe.last_check = now
        probe.runs += 1
        old = probe.tracker.state
        changed = probe.tracker.observe(result.ok)
        spec = probe.spec
        if not result.ok:
            log.debug("health probe failed check=%s probe=%s reason=%s latency_ms=%d",
                      spec.check.name, _hostport(spec.address, spec.port),
                      _quote(result.reason), result.latency_ms)
        if not changed:
            return
        probe.last_change = now
        new = probe.tracker.state
        level = logging.WARNING if new == "down" else logging.INFO
        for key in probe.keys:
            log.log(level, "health state change target=%s old=%s new=%s reason=%s "
                    "latency_ms=%d check=%s probe=%s", key_label(key), old, new,
                    _quote(result.reason), result.latency_ms, spec.check.name,
                    _hostport(spec.address, spec.port),
                    extra=event("health_change", target=key_label(key), old=old, new=new,
                                reason=result.reason, latency_ms=result.latency_ms,
                                check=spec.check.name,
                                probe=_hostport(spec.address, spec.port)))
        self._publish()

    # --- publishing ---------------------------------------------------------------

    def _real(self) -> dict[HealthKey, State]:
        return {key: p.tracker.state for p in self._probes.values() for key in p.keys}

    def _key_count(self) -> int:
        return sum(len(p.keys) for p in self._probes.values())

    def _overrides_changed(self) -> None:
        self._publish()

    def _publish(self, force_notify: bool = False) -> None:
        forced = self.overrides.resolve(self.config.pops)
        self._log_forced(forced)
        new = self.snapshot.evolve(real=self._real(), overrides=forced)
        changed = new is not self.snapshot
        self.snapshot = new
        if (changed or force_notify) and self.on_change is not None:
            try:
                self.on_change(new)
            except Exception:
                log.exception("health: on_change callback failed")

    def _log_forced(self, forced: Mapping[HealthKey, State]) -> None:
        old = self._forced
        for key in sorted({*old, *forced}, key=key_label):
            before, after = old.get(key), forced.get(key)
            if before == after:
                continue
            rule = self._rule_for(key, after)
            log.info("health override target=%s old=%s new=%s real=%s%s", key_label(key),
                     before or "none", after or "none", self._real_of(key),
                     f" rule={_quote(rule.describe())} source={rule.source}" if rule else "",
                     extra=event("health_override", target=key_label(key),
                                 old=before, new=after, real=self._real_of(key),
                                 rule=rule.describe() if rule else None,
                                 source=rule.source if rule else None))
        self._forced = dict(forced)

    def _rule_for(self, key: HealthKey, state: State | None) -> OverrideRule | None:
        if state is None:
            return None
        now = self.overrides.clock()
        pops = {k: p for k, p in self.config.pops.items()
                if k == (key if isinstance(key, str) else key[0])}
        for rule in reversed(self.overrides.rules):
            if rule.active(now) and key in set(rule.matches(pops)):
                return rule
        return None

    def _real_of(self, key: HealthKey) -> str:
        for p in self._probes.values():
            if key in p.keys:
                return p.tracker.state
        return "unchecked"

    # --- overrides API ------------------------------------------------------------

    async def set_override(self, pattern: str, state: str,
                           until: datetime | float | str | None = None,
                           force: bool = False) -> OverrideRule:
        """Force ``pattern`` (``fra``, ``fra/*``, ``*/192.0.2.20``) to up/down/drain.

        Takes effect at once; persisted to the admin-state file when there is one.
        Raises :class:`geodns.health.overrides.OverrideError` on bad input (and its
        GuardRefused when a guard refuses it; ``force`` breaks the glass).
        """
        return await self.overrides.set_override(pattern, state, until, force)

    async def clear_override(self, pattern: str) -> bool:
        """Drop the override(s) with exactly this pattern; True if one existed."""
        return await self.overrides.clear_override(pattern)

    # --- status -------------------------------------------------------------------

    def target_status(self, key: HealthKey) -> dict[str, Any] | None:
        """What explain and the control API say about one key (None: not checked)."""
        for probe in self._probes.values():
            if key in probe.keys:
                return self._describe(probe, key)
        return None

    def status(self) -> dict[str, Any]:
        """Plain data for the control API, metrics and explain.

        ``targets`` maps ``fra`` / ``fra/192.0.2.20`` to the checked state, the last
        result and the consecutive counts; ``forced`` maps keys to override states;
        ``overrides`` lists the rules and the last admin-file problems.
        """
        targets = {key_label(key): self._describe(p, key)
                   for p in self._probes.values() for key in p.keys}
        return {
            "generation": self.snapshot.generation,
            "targets": dict(sorted(targets.items())),
            "forced": {key_label(k): s for k, s in self.snapshot.overrides.items()},
            "overrides": self.overrides.status(),
        }

    def _describe(self, probe: _Probe, key: HealthKey) -> dict[str, Any]:
        spec, tracker, last = probe.spec, probe.tracker, probe.last
        snap = self.snapshot
        return {
            "target": key_label(key),
            "pop": key if isinstance(key, str) else key[0],
            "address": None if isinstance(key, str) else key[1],
            "check": spec.check.name,
            "type": spec.check.type,
            "probe": _hostport(spec.address, spec.port),
            "state": tracker.state,
            "forced": snap.forced(key),
            "effective": snap.effective.get(key, "up"),
            "ok": last.ok if last is not None else None,
            "reason": last.reason if last is not None else None,
            "latency_ms": last.latency_ms if last is not None else None,
            "last_check": probe.last_check,
            "last_change": probe.last_change,
            "successes": tracker.successes,
            "failures": tracker.failures,
            "probes": probe.runs,
            "interval": spec.check.interval,
            "timeout": spec.check.timeout,
            "fall": tracker.fall,
            "rise": tracker.rise,
        }

    def probes(self) -> Iterable[ProbeSpec]:
        """The deduplicated probes currently scheduled."""
        return [p.spec for p in self._probes.values()]
