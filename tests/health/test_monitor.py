"""The monitor with real loopback backends: failover, recovery, dedupe, isolation, reloads.

Intervals are short (0.3 s, timeout 0.2 s) so the whole file runs in a few seconds;
every test runs under ``run_async`` (bounded) and stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable

import pytest

from geodns.config import Check
from geodns.health.checks import ProbeResult
from geodns.health.monitor import HealthMonitor, plan_probes
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.status import to_json
from geodns.ops.status_build import check_status
from tests.health.backends import (
    HttpBackend,
    TcpBackend,
    config_from,
    eventually,
    run_async,
)

pytestmark = pytest.mark.timeout(60)

INTERVAL = 0.3
TIMEOUT = 0.2
FALL = 2
RISE = 2
SLACK = 0.5  # scheduling noise allowed on top of the computed bound

POPS = {"iad": "192.0.2.10", "fra": "192.0.2.20", "sin": "192.0.2.30", "gru": "192.0.2.40"}


def check_toml(name: str, port: int, *, address: str | None = "127.0.0.1",
               kind: str = "http", extra: str = "") -> str:
    addr = f'address = "{address}"\n' if address else ""
    body = 'path = "/health"\nexpect_body = "healthy"\n' if kind == "http" else ""
    return (f"[checks.{name}]\ntype = \"{kind}\"\ninterval = {INTERVAL}\ntimeout = {TIMEOUT}\n"
            f"fall = {FALL}\nrise = {RISE}\nport = {port}\n{addr}{body}{extra}\n")


def pop_toml(name: str, health: str | None, ipv4: Iterable[str] | None = None) -> str:
    addrs = ", ".join(f'"{a}"' for a in (ipv4 or [POPS[name]]))
    line = f'health = "{health}"\n' if health else ""
    return f"[pops.{name}]\nlat = 1.0\nlon = 2.0\nipv4 = [{addrs}]\n{line}\n"


class Recorder:
    """on_change callback that keeps every published snapshot."""

    def __init__(self) -> None:
        self.snapshots: list[HealthSnapshot] = []

    def __call__(self, snap: HealthSnapshot) -> None:
        self.snapshots.append(snap)


def state_of(monitor: HealthMonitor, key: str | tuple[str, str]) -> str:
    return monitor.snapshot.real_state(key)


def test_failover_and_recovery_times(caplog: pytest.LogCaptureFixture) -> None:
    """Dead backend: down within interval*fall + timeout; back: up after rise successes."""
    caplog.set_level(logging.INFO, logger="geodns.health")

    async def main() -> dict[str, float]:
        backend = await HttpBackend().start()
        config = config_from(check_toml("fra_web", backend.port) + pop_toml("fra", "fra_web"))
        rec = Recorder()
        monitor = HealthMonitor(config, on_change=rec)
        times: dict[str, float] = {}
        try:
            await monitor.start()
            assert rec.snapshots, "start() publishes the initial snapshot"
            await eventually(lambda: backend.requests >= 1, 1.0)  # first probe runs at once
            assert state_of(monitor, "fra") == "up"

            await backend.kill()
            times["failover"] = await eventually(
                lambda: state_of(monitor, "fra") == "down", 5.0)
            await backend.revive()
            times["recovery"] = await eventually(
                lambda: state_of(monitor, "fra") == "up", 5.0)

            # a hanging backend (accepts, never answers) costs its timeout, then goes down
            backend.hang()
            await eventually(lambda: state_of(monitor, "fra") == "down", 5.0)
            assert check_status(monitor)["fra"].reason == f"timeout after {TIMEOUT}s"
            await backend.revive()
            await eventually(lambda: state_of(monitor, "fra") == "up", 5.0)
        finally:
            await monitor.stop()
            await backend.stop()
        gens = [s.generation for s in rec.snapshots]
        assert gens == sorted(gens) and len(set(gens)) == len(gens)
        return times

    times = run_async(main())
    print(f"\nfailover {times['failover']:.2f}s, recovery {times['recovery']:.2f}s "
          f"(interval {INTERVAL}s, timeout {TIMEOUT}s, fall {FALL}, rise {RISE})")
    assert times["failover"] <= INTERVAL * 1.1 * FALL + TIMEOUT + SLACK
    assert times["recovery"] <= INTERVAL * 1.1 * RISE + SLACK

    lines = [r.getMessage() for r in caplog.records if r.name == "geodns.health"]
    down = [m for m in lines if m.startswith("health state change target=fra old=up new=down")]
    assert down, lines
    assert re.fullmatch(r'health state change target=fra old=up new=down '
                        r'reason="connection refused" latency_ms=\d+ check=fra_web '
                        r'probe=127\.0\.0\.1:\d+', down[0]), down[0]
    assert any('new=down reason="timeout after 0.2s" latency_ms=2' in m for m in down), down


def test_hanging_check_does_not_delay_other_checks_or_the_loop() -> None:
    async def main() -> tuple[int, float, str]:
        stuck = await HttpBackend().start()
        fine = await HttpBackend().start()
        stuck.hang()
        config = config_from(
            check_toml("stuck", stuck.port)
            + check_toml("fine", fine.port).replace(f"interval = {INTERVAL}", "interval = 0.1")
                                           .replace(f"timeout = {TIMEOUT}", "timeout = 0.05")
            + pop_toml("fra", "stuck") + pop_toml("sin", "fine"))
        monitor = HealthMonitor(config)
        lag = 0.0
        try:
            await monitor.start()
            start = time.monotonic()
            while time.monotonic() - start < 1.0:
                t0 = time.monotonic()
                await asyncio.sleep(0.01)
                lag = max(lag, time.monotonic() - t0 - 0.01)
            return fine.requests, lag, state_of(monitor, "fra")
        finally:
            await monitor.stop()
            await stuck.stop()
            await fine.stop()

    fine_requests, lag, stuck_state = run_async(main())
    assert fine_requests >= 8, f"the quick check ran only {fine_requests} times in 1 s"
    assert lag < 0.1, f"event loop stalled for {lag:.3f}s"
    assert stuck_state == "down"


def test_one_probe_per_target_per_interval_however_many_pops_share_it() -> None:
    """Four POPs (and two pools over them) share one check endpoint: one request/interval."""
    async def main() -> tuple[int, int, HealthSnapshot]:
        backend = await HttpBackend().start()
        pools = ('[pools.a]\nstrategy = "failover"\npops = ["iad", "fra", "sin", "gru"]\n\n'
                 '[pools.b]\nstrategy = "all"\npops = ["fra", "sin"]\n')
        config = config_from(check_toml("shared", backend.port)
                             + "".join(pop_toml(p, "shared") for p in POPS) + pools)
        assert len(plan_probes(config)) == 1
        monitor = HealthMonitor(config, jitter=0.0)
        try:
            await monitor.start()
            await asyncio.sleep(INTERVAL * 4 - 0.15)  # probes at 0, .3, .6, .9
            count = backend.requests
            return count, len(list(monitor.probes())), monitor.snapshot
        finally:
            await monitor.stop()
            await backend.stop()

    count, probes, snap = run_async(main())
    assert probes == 1
    assert count == 4, f"{count} requests in 4 intervals for 4 POPs sharing one endpoint"
    assert dict(snap.real) == dict.fromkeys(POPS, "up")


def test_address_targets_are_checked_one_by_one() -> None:
    """target = "address": one probe per POP address, keyed (pop, address)."""
    async def main() -> HealthMonitor:
        one = await TcpBackend("127.0.0.1").start()
        two = await TcpBackend("127.0.0.2", port=one.port).start()
        config = config_from(
            check_toml("edge", one.port, address=None, kind="tcp",
                       extra='target = "address"\n')
            + pop_toml("fra", "edge", ["127.0.0.1", "127.0.0.2"]))
        monitor = HealthMonitor(config)
        try:
            await monitor.start()
            await eventually(lambda: one.connections > 0 and two.connections > 0, 1.0)
            await two.kill()
            await eventually(lambda: state_of(monitor, ("fra", "127.0.0.2")) == "down", 3.0)
            assert state_of(monitor, ("fra", "127.0.0.1")) == "up"
            assert monitor.snapshot.state("fra") == "up"
            assert not monitor.snapshot.usable("fra", "127.0.0.2")
            assert monitor.snapshot.usable("fra", "127.0.0.1")
            return monitor
        finally:
            await monitor.stop()
            await one.stop()
            await two.stop()

    monitor = run_async(main())
    targets = to_json(check_status(monitor))
    assert set(targets) == {"fra/127.0.0.1", "fra/127.0.0.2"}
    assert targets["fra/127.0.0.2"]["state"] == "down"
    assert targets["fra/127.0.0.2"]["address"] == "127.0.0.2"


def test_update_config_keeps_unchanged_targets_and_swaps_changed_ones() -> None:
    async def main() -> None:
        a, b, c = [await HttpBackend().start() for _ in range(3)]
        rec = Recorder()
        checks = check_toml("a", a.port) + check_toml("b", b.port) + check_toml("c", c.port)
        config = config_from(checks + pop_toml("fra", "a") + pop_toml("sin", "b"))
        monitor = HealthMonitor(config, on_change=rec)
        try:
            await monitor.start()
            a.mode = "500"
            await eventually(lambda: state_of(monitor, "fra") == "down", 3.0)
            await eventually(lambda: b.requests >= 1, 1.0)

            # fra unchanged, sin removed, gru added
            new = config_from(checks + pop_toml("fra", "a") + pop_toml("gru", "c"))
            monitor.update_config(new)
            assert state_of(monitor, "fra") == "down", "unchanged target kept its state"
            assert "sin" not in monitor.snapshot.real
            assert monitor.snapshot.real_state("gru") == "up"  # initial, until probed
            await asyncio.sleep(0.05)
            b_before = b.requests
            await eventually(lambda: c.requests >= 2, 2.0)
            assert b.requests == b_before, "removed target is still probed"

            # fra's check changes (path): restarted, state carried until the first result
            a.mode = "ok"
            changed = new.checks["a"]
            assert isinstance(changed, Check)
            newer = config_from(checks.replace('path = "/health"', 'path = "/v2"', 1)
                                + pop_toml("fra", "a") + pop_toml("gru", "c"))
            assert newer.checks["a"] != changed
            monitor.update_config(newer)
            assert state_of(monitor, "fra") == "down"
            await eventually(lambda: state_of(monitor, "fra") == "up", 2.0)
            assert a.seen[-1][1] == "/v2"
        finally:
            await monitor.stop()
            for backend in (a, b, c):
                await backend.stop()

    run_async(main())


def test_stop_cancels_everything() -> None:
    async def main() -> None:
        backend = await HttpBackend().start()
        backend.hang()  # a probe is in flight when we stop
        config = config_from(check_toml("web", backend.port) + pop_toml("fra", "web"))
        before = asyncio.all_tasks()
        monitor = HealthMonitor(config)
        await monitor.start()
        await eventually(lambda: backend.requests >= 1, 1.0)
        await monitor.stop()
        leftover = [t for t in asyncio.all_tasks() - before  # the backend's own are fine
                    if not t.done() and "aiohttp/web" not in _code_file(t)]
        assert not leftover, leftover
        count = backend.requests
        await asyncio.sleep(INTERVAL * 2)
        assert backend.requests == count
        await backend.stop()

    run_async(main())


def test_probe_concurrency_is_bounded() -> None:
    in_flight = 0
    peak = 0

    async def fake_probe(check: Check, address: str | None) -> ProbeResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return ProbeResult(True, "fake", 0.05)

    async def main() -> int:
        text = "".join(check_toml(f"c{i}", 1000 + i) for i in range(12))
        text += "".join(
            f'[pops.p{i}]\nlat = 0\nlon = 0\nipv4 = ["192.0.2.{i + 1}"]\nhealth = "c{i}"\n'
            for i in range(12))
        monitor = HealthMonitor(config_from(text), max_concurrency=3, probe=fake_probe)
        await monitor.start()
        await asyncio.sleep(0.5)
        runs = sum(t.probes for t in check_status(monitor).values())
        await monitor.stop()
        return runs

    runs = run_async(main())
    assert peak == 3
    assert runs >= 12  # every probe ran at least once despite the bound


def test_misbehaving_probe_is_cut_off_and_reported() -> None:
    async def stuck_probe(check: Check, address: str | None) -> ProbeResult:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def main() -> dict[str, object]:
        config = config_from(check_toml("web", 9) + pop_toml("fra", "web"))
        monitor = HealthMonitor(config, probe=stuck_probe)
        await monitor.start()
        await eventually(lambda: state_of(monitor, "fra") == "down", 2.0)
        status = to_json(check_status(monitor))["fra"]
        await monitor.stop()
        return status

    status = run_async(main())
    assert status["reason"] == f"timeout after {TIMEOUT}s"
    assert status["ok"] is False


def test_initial_down_and_status_fields() -> None:
    async def main() -> tuple[HealthSnapshot, dict[str, object], HealthSnapshot]:
        backend = await TcpBackend().start()
        config = config_from(
            check_toml("web", backend.port, kind="tcp", extra='initial = "down"\n')
            + pop_toml("fra", "web") + pop_toml("sin", None))
        monitor = HealthMonitor(config)
        before = monitor.snapshot
        try:
            await monitor.start()
            await eventually(lambda: state_of(monitor, "fra") == "up", 1.0)
            return before, {"targets": to_json(check_status(monitor))}, monitor.snapshot
        finally:
            await monitor.stop()
            await backend.stop()

    before, status, after = run_async(main())
    assert before.real_state("fra") == "down"
    assert after.real_state("fra") == "up"
    assert "sin" not in after.real  # no health check: never in real states, always up
    targets = status["targets"]
    assert isinstance(targets, dict)
    fra = targets["fra"]
    assert fra["state"] == "up" and fra["effective"] == "up" and fra["forced"] is None
    assert fra["check"] == "web" and fra["type"] == "tcp" and fra["reason"] == "connected"
    assert fra["probe"].startswith("127.0.0.1:")
    assert fra["successes"] >= 1 and fra["failures"] == 0 and fra["last_change"] is not None
    assert isinstance(fra["latency_ms"], int)


def _code_file(task: asyncio.Task[object]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename if code is not None else ""
