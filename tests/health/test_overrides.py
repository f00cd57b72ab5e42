"""Admin overrides: file syntax (exact FILE:LINE problems), resolution, watching, expiry, API."""

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
from geodns.health.overrides import (
    MAX_AHEAD,
    MAX_API_RULES,
    MAX_PATTERN,
    OverrideError,
    OverrideRule,
    Overrides,
    format_time,
    next_expiry,
    parse_overrides,
    resolve,
)
from tests.health.backends import config_from, eventually, run_async

pytestmark = pytest.mark.timeout(60)

BASE = 1_800_000_000.0  # a fixed "file mtime" for relative times
DEC1 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
POLL = 0.1

CONFIG = """
[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20", "192.0.2.21"]
ipv6 = ["2001:db8::20"]

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]

[pops.syd]
lat = -33.9
lon = 151.2
ipv4 = ["192.0.2.50"]
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return config_from(CONFIG)


# --------------------------------------------------------------------------- parsing

GOOD = [
    ("fra down", ("fra", "down", None)),
    ("fra/* drain", ("fra/*", "drain", None)),
    ("sin up until 2026-12-01T10:00:00Z", ("sin", "up", DEC1)),
    ("sin up until 2026-12-01T11:00:00+01:00", ("sin", "up", DEC1)),
    ("*/192.0.2.20 down until +30m", ("*/192.0.2.20", "down", BASE + 1800)),
    ("fra down until +1h30m", ("fra", "down", BASE + 5400)),
    ("fra down until +2d", ("fra", "down", BASE + 2 * 86400)),
    ("fra down until +90s", ("fra", "down", BASE + 90)),
    ("  fra   DOWN   # drill, ticket 42", ("fra", "down", None)),
    ("fra/2001:DB8:0::20 down", ("fra/2001:db8::20", "down", None)),
    ("[fs]*/192.0.2.* drain", ("[fs]*/192.0.2.*", "drain", None)),
    ("s?n down UNTIL 2026-12-01T10:00:00Z", ("s?n", "down", DEC1)),
]


@pytest.mark.parametrize(("line", "want"), GOOD, ids=[g[0] for g in GOOD])
def test_good_lines(line: str, want: tuple[str, str, float | None]) -> None:
    rules, _ = parse_overrides(f"# header\n\n{line}\n", "admin.state", base_time=BASE)
    assert [(r.pattern, r.state, r.until) for r in rules] == [want]
    assert rules[0].source == "admin.state:3"


BAD = [
    ("fra", 'missing the state: expected "PATTERN STATE [until TIME] [force]"'),
    ("fra dwn", "unknown state 'dwn' (expected up, down or drain)"),
    ("fra down til +30m", "expected 'until TIME' after the state, got 'til'"),
    ("fra down until", "missing the time after 'until' (e.g. 2026-12-01T10:00:00Z or +30m)"),
    ("fra down until +30m now", "unexpected text after the time: 'now'"),
    ("fra down until tomorrow", "bad time 'tomorrow' (e.g. 2026-12-01T10:00:00Z or +30m)"),
    ("fra down until 2026-12-01T10:00:00",
     "time '2026-12-01T10:00:00' has no timezone (add Z or +HH:MM)"),
    ("fra down until +30x", "bad relative time '+30x' (e.g. +90s, +30m, +1h30m, +2d)"),
    ("fra down until +", "bad relative time '+' (e.g. +90s, +30m, +1h30m, +2d)"),
    ("fra down until +0m", "relative time '+0m' must be positive"),
    ("fra/1.2.3 down", "bad pattern 'fra/1.2.3': '1.2.3' is not an IP address"),
    ("/192.0.2.1 down", "bad pattern '/192.0.2.1': empty POP part (use */ADDRESS for any POP)"),
    ("fra/ down", "bad pattern 'fra/': empty address part (use fra/* for every address)"),
    ("a/b/c down", "bad pattern 'a/b/c': at most one '/' (POP/ADDRESS)"),
    ("fr@ down", "bad pattern 'fr@': POP part may only hold letters, digits, '_', '-', '.' "
                 "and glob characters * ? [ ]"),
    ("fra/192.0.2.x* down", "bad pattern 'fra/192.0.2.x*': address glob may only hold hex "
                            "digits, '.', ':' and glob characters * ? [ ]"),
    ("fra down until +367d", "until '+367d' is more than 366 days ahead (leave until out for "
                             "an override that stays until removed)"),
    ("fra down until 9999-12-31T23:59:59Z", "until '9999-12-31T23:59:59Z' is more than 366 "
     "days ahead (leave until out for an override that stays until removed)"),
    ("fra down until +9999999999w", "bad relative time '+9999999999w' (e.g. +90s, +30m, "
                                    "+1h30m, +2d)"),
    ("f" + "*" * 128 + " down", "pattern 'f" + "*" * 39 + "'... is 129 characters long "
                                "(at most 128)"),
]


@pytest.mark.parametrize(("line", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_lines(line: str, problem: str) -> None:
    with pytest.raises(OverrideError) as err:
        parse_overrides(f"fra up\n{line}\n", "/etc/geodns/admin.state", base_time=BASE)
    assert err.value.problems == [f"/etc/geodns/admin.state:2: {problem}"]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = "fra down\nsin dwn\n# ok\nsyd down until soon\nfra/* drain\n"
    with pytest.raises(OverrideError) as err:
        parse_overrides(text, "a.state", base_time=BASE)
    assert err.value.problems == [
        "a.state:2: unknown state 'dwn' (expected up, down or drain)",
        "a.state:4: bad time 'soon' (e.g. 2026-12-01T10:00:00Z or +30m)",
    ]


def test_relative_times_count_from_when_the_line_first_appeared() -> None:
    text = "fra down until +30m\n"
    rules, anchors = parse_overrides(text, "a", base_time=BASE)
    assert rules[0].until == BASE + 1800
    # another line added an hour later: the old line keeps its anchor, the new one is fresh
    later = BASE + 3600
    rules2, anchors2 = parse_overrides(text + "sin down until +30m  # new\n", "a",
                                       base_time=later, anchors=anchors)
    assert [r.until for r in rules2] == [BASE + 1800, later + 1800]
    # editing the line itself restarts its clock
    rules3, _ = parse_overrides("fra down until +45m\n", "a", base_time=later, anchors=anchors2)
    assert rules3[0].until == later + 2700


# --------------------------------------------------------------------------- resolution


def rules_of(text: str) -> list[OverrideRule]:
    return parse_overrides(text, "t", base_time=BASE)[0]


def test_resolve_keys_globs_and_later_lines_win(config: Config) -> None:
    rules = rules_of("""
        * drain
        fra down
        sin up
        fra/* drain
        */192.0.2.21 up
        */192.0.2.5? down
        nope down
    """)
    assert resolve(rules, config.pops, BASE) == {
        "fra": "down", "sin": "up", "syd": "drain",
        ("fra", "192.0.2.20"): "drain", ("fra", "192.0.2.21"): "up",
        ("fra", "2001:db8::20"): "drain",
        ("syd", "192.0.2.50"): "down",
    }


def test_expired_rules_do_not_apply(config: Config) -> None:
    rules = rules_of("fra down until +10s\nsin drain until 2020-01-01T00:00:00Z\nsyd down\n")
    assert resolve(rules, config.pops, BASE + 5) == {"fra": "down", "syd": "down"}
    assert resolve(rules, config.pops, BASE + 10) == {"syd": "down"}
    assert next_expiry(rules, BASE + 5) == BASE + 10
    assert next_expiry(rules, BASE + 10) is None


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
            return monitor.status()
        finally:
            await monitor.stop()

    status = run_async(main())
    assert status["forced"] == {"fra": "drain", "sin/192.0.2.30": "down"}
    messages = [r.getMessage() for r in caplog.records]
    assert ('health override target=fra old=none new=drain real=unchecked '
            f'rule="fra drain" source={path}:1') in messages


def test_format_time() -> None:
    assert format_time(DEC1) == "2026-12-01T10:00:00Z"


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


def test_shipped_example_file_parses(config: Config) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "demo" / "admin.state.example"
    written = DEC1 - 7200  # two hours before the absolute expiry in the file
    rules, _ = parse_overrides(example.read_text(), str(example), base_time=written)
    assert [(r.pattern, r.state) for r in rules] == [
        ("fra/*", "drain"), ("sin", "up"), ("*/192.0.2.50", "down")]
    assert resolve(rules, config.pops, written + 60) == {
        ("fra", "192.0.2.20"): "drain", ("fra", "192.0.2.21"): "drain",
        ("fra", "2001:db8::20"): "drain", "sin": "up", ("syd", "192.0.2.50"): "down"}


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
            assert monitor.status()["overrides"]["file"] == str(tmp_path / "b.state")
        finally:
            await monitor.stop()

    run_async(main())
