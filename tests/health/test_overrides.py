"""Overrides in force (geodns.health.overrides): the admin file watched, expiry, the API
(with and without a file), and what the health monitor publishes from them."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from geodns.config import Config
from geodns.health.monitor import HealthMonitor
from geodns.health.override_rules import (
    MAX_AHEAD,
    MAX_API_RULES,
    MAX_PATTERN,
    OverrideError,
    OverrideRule,
)
from geodns.health.overrides import Overrides
from geodns.health.snapshot import key_label
from tests.health.backends import config_from, eventually, run_async
from tests.health.overrides_data import CONFIG, POLL

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def config() -> Config:
    return config_from(CONFIG)


# --------------------------------------------------------------------------- watching


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_is_watched_bad_file_keeps_previous_delete_clears(
        tmp_path: Path, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="geodns.health")
    path = tmp_path / "admin.state"

    async def main() -> None:
        changes = 0

        def changed() -> None:
            nonlocal changes
            changes += 1

        ov = Overrides(path, changed, poll_interval=POLL)
        await ov.start()  # no file yet: nothing forced, no error
        try:
            assert ov.rules == [] and ov.errors == []
            write(path, "fra down\nsin/* drain\n")
            await eventually(lambda: ov.resolve(config.pops) == {
                "fra": "down", ("sin", "192.0.2.30"): "drain"}, 2.0)
            assert changes == 1

            write(path, "fra up\nsin dwn\n# fine\nsyd down until yesterday\n")
            await eventually(lambda: bool(ov.errors), 2.0)
            assert ov.errors == [
                f"{path}:2: unknown state 'dwn' (expected up, down or drain)",
                f"{path}:4: bad time 'yesterday' (e.g. 2026-12-01T10:00:00Z or +30m)",
            ]
            assert ov.resolve(config.pops)["fra"] == "down", "previous rules stay"
            assert changes == 1

            write(path, "fra drain\n")
            await eventually(lambda: ov.resolve(config.pops) == {"fra": "drain"}, 2.0)
            assert ov.errors == []

            path.unlink()
            await eventually(lambda: ov.rules == [], 2.0)
            assert ov.resolve(config.pops) == {}
            assert changes == 3
        finally:
            await ov.stop()

    run_async(main())
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{path}:2: unknown state 'dwn' (expected up, down or drain)" in logged
    assert any(m.startswith(f"health overrides: rejected {path} (2 problems); keeping the "
                            "previous 2 rules") for m in logged), logged


def test_not_utf8_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "admin.state"
    path.write_bytes(b"fra down\nsin \xff down\n")

    async def main() -> list[str]:
        ov = Overrides(path, poll_interval=POLL)
        await ov.start()
        await ov.stop()
        return ov.errors

    assert run_async(main()) == [f"{path}:2: not valid UTF-8"]


def test_expiry_is_honoured_at_the_expiry_time(tmp_path: Path, config: Config) -> None:
    """A rule running out is re-evaluated at that moment, not at the next file change."""
    path = tmp_path / "admin.state"

    async def main() -> float:
        until = datetime.now(UTC) + timedelta(seconds=0.8)
        write(path, f"fra down until {until.isoformat()}\nsin drain\n")
        published: list[dict[str | tuple[str, str], str]] = []
        monitor = HealthMonitor(config, on_change=lambda s: published.append(dict(s.overrides)),
                                state_file=path, override_poll_interval=5.0)
        await monitor.start()
        try:
            assert dict(monitor.snapshot.overrides) == {"fra": "down", "sin": "drain"}
            took = await eventually(lambda: "fra" not in monitor.snapshot.overrides, 3.0)
            lateness = time.time() - until.timestamp()
            assert dict(monitor.snapshot.overrides) == {"sin": "drain"}
            assert published[-1] == {"sin": "drain"}
            assert took > 0.5
            return lateness
        finally:
            await monitor.stop()

    lateness = run_async(main())
    assert lateness < 0.3, f"expiry applied {lateness:.2f}s late (poll interval is 5 s)"


# --------------------------------------------------------------------------- API


def test_api_without_a_file(config: Config) -> None:
    async def main() -> None:
        ov = Overrides(None, poll_interval=POLL)
        await ov.start()
        try:
            rule = await ov.set_override("fra/*", "drain")
            assert rule == OverrideRule("fra/*", "drain", None, "api")
            await ov.set_override("fra", "down")
            await ov.set_override("fra/*", "up")  # replaces, and now comes last
            assert [r.pattern for r in ov.rules] == ["fra", "fra/*"]
            soon = time.time() + 0.4
            await ov.set_override("sin", "down", until=soon)
            assert ov.resolve(config.pops)["sin"] == "down"
            await eventually(lambda: "sin" not in ov.resolve(config.pops), 2.0)
            await eventually(lambda: len(ov.rules) == 2, 1.0)  # expired API rules are pruned
            assert await ov.clear_override("fra") is True
            assert await ov.clear_override("fra") is False
            with pytest.raises(OverrideError, match="unknown state 'sideways'"):
                await ov.set_override("fra", "sideways")
            with pytest.raises(OverrideError, match="is not an IP address"):
                await ov.set_override("fra/300.1.1.1", "down")
            with pytest.raises(OverrideError, match="in the past"):
                await ov.set_override("fra", "down", until="2020-01-01T00:00:00Z")
        finally:
            await ov.stop()

    run_async(main())


def test_api_bounds_times_patterns_and_rule_count() -> None:
    async def main() -> None:
        ov = Overrides(None, poll_interval=POLL)
        for until in ("+367d", "+9999999w", time.time() + MAX_AHEAD + 60, float("inf"),
                      datetime(9999, 12, 31, tzinfo=UTC)):
            with pytest.raises(OverrideError, match="days ahead"):
                await ov.set_override("fra", "down", until=until)
        with pytest.raises(OverrideError, match=f"at most {MAX_PATTERN}"):
            await ov.set_override("f" * (MAX_PATTERN + 1), "down")
        assert ov.rules == []
        for i in range(MAX_API_RULES):
            await ov.set_override(f"pop{i}", "down")
        with pytest.raises(OverrideError, match=f"at most {MAX_API_RULES}"):
            await ov.set_override("one-more", "down")
        await ov.set_override("pop7", "up")  # replacing one is still fine
        assert len(ov.rules) == MAX_API_RULES and ov.rules[-1].state == "up"

    run_async(main())


def test_concurrent_api_edits_of_the_state_file_all_land(tmp_path: Path) -> None:
    path = tmp_path / "admin.state"
    path.write_text("syd down\n")
    path.chmod(0o640)
    names = [f"pop{i}" for i in range(20)]

    async def main() -> None:
        ov = Overrides(path, poll_interval=POLL)
        await ov.start()
        try:
            await asyncio.gather(*(ov.set_override(n, "drain") for n in names))
            await asyncio.gather(*(ov.clear_override(n) for n in names[::2]))
            assert [r.pattern for r in ov.rules] == ["syd", *names[1::2]]
        finally:
            await ov.stop()

    run_async(main())
    assert path.read_text().splitlines() == ["syd down", *(f"{n} drain" for n in names[1::2])]
    assert path.stat().st_mode & 0o777 == 0o640  # the operator's permissions are kept
    assert [p.name for p in tmp_path.iterdir()] == ["admin.state"]


def test_api_persists_to_the_state_file(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "admin.state"
    path.write_text("# maintenance log\nsyd down   # ticket 7\nfra/* drain\n")

    async def main() -> None:
        monitor = HealthMonitor(config, state_file=path, override_poll_interval=POLL)
        await monitor.start()
        try:
            until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
            until_text = until.strftime("%Y-%m-%dT%H:%M:%SZ")
            await monitor.set_override("fra/*", "up", until=until)
            await monitor.set_override("*/192.0.2.30", "down")
            assert path.read_text() == (
                "# maintenance log\nsyd down   # ticket 7\n"
                f"fra/* up until {until_text}\n*/192.0.2.30 down\n")
            assert monitor.snapshot.forced(("sin", "192.0.2.30")) == "down"
            assert monitor.snapshot.forced(("fra", "192.0.2.21")) == "up"
            assert await monitor.clear_override("syd") is True
            assert "syd" not in path.read_text()
            assert "# maintenance log" in path.read_text()
            assert monitor.snapshot.forced("syd") is None

            write(path, "syd dwn\n")  # a broken file blocks API edits until fixed
            await eventually(lambda: bool(monitor.overrides.errors), 2.0)
            with pytest.raises(OverrideError, match="has errors; fix it first"):
                await monitor.set_override("fra", "down")
            assert path.read_text() == "syd dwn\n"
        finally:
            await monitor.stop()

    run_async(main())


def test_snapshot_overrides_are_keyed_like_real_states(
        tmp_path: Path, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="geodns.health")
    path = tmp_path / "admin.state"
    path.write_text("fra drain\n*/192.0.2.30 down\n")

    async def main() -> dict[str, object]:
        monitor = HealthMonitor(config, state_file=path, override_poll_interval=POLL)
        await monitor.start()
        try:
            snap = monitor.snapshot
            assert dict(snap.overrides) == {"fra": "drain", ("sin", "192.0.2.30"): "down"}
            assert snap.state("fra") == "drain"
            assert not snap.usable("sin", "192.0.2.30")
            assert snap.usable("syd", "192.0.2.50")
            return {"forced": {key_label(k): s for k, s in snap.overrides.items()}}
        finally:
            await monitor.stop()

    status = run_async(main())
    assert status["forced"] == {"fra": "drain", "sin/192.0.2.30": "down"}
    messages = [r.getMessage() for r in caplog.records]
    assert ('health override target=fra old=none new=drain real=unchecked '
            f'rule="fra drain" source={path}:1') in messages


def test_overrides_without_loop_idle() -> None:
    """Stopping twice and stopping before start are harmless."""
    async def main() -> None:
        ov = Overrides(None)
        await ov.stop()
        await ov.start()
        await ov.stop()
        await ov.stop()
        await asyncio.sleep(0)

    run_async(main())


def test_config_reload_can_move_the_state_file(tmp_path: Path) -> None:
    (tmp_path / "a.state").write_text("fra down\n")
    (tmp_path / "b.state").write_text("sin drain\n")
    first = config_from('[admin]\nstate_file = "a.state"\n' + CONFIG, tmp_path / "g.toml")
    second = config_from('[admin]\nstate_file = "b.state"\n' + CONFIG, tmp_path / "g.toml")

    async def main() -> None:
        monitor = HealthMonitor(first, override_poll_interval=POLL)
        await monitor.start()
        try:
            assert dict(monitor.snapshot.overrides) == {"fra": "down"}
            monitor.update_config(second)
            await eventually(lambda: dict(monitor.snapshot.overrides) == {"sin": "drain"}, 2.0)
            assert str(monitor.overrides.path) == str(tmp_path / "b.state")
        finally:
            await monitor.stop()

    run_async(main())
