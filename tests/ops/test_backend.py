"""ServerBackend: the ControlBackend adapter over a (fake) server and health monitor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from geodns.config import Check, Config, parse_config
from geodns.health.checks import ProbeResult
from geodns.health.monitor import ProbeSpec, ProbeView
from geodns.health.override_rules import OverrideError, OverrideRule
from geodns.health.snapshot import HealthKey, HealthSnapshot
from geodns.ops.backend import ServerBackend
from geodns.ops.metrics import Metrics
from geodns.ops.serving import ReloadOutcome, ServingView
from geodns.ops.status import NodeStatus, ProberStatus, WorkerStatus, to_json

CONFIG = """
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pools.www]
strategy = "failover"
pops = ["iad", "fra"]
"""


class Holder:
    def __init__(self) -> None:
        self.snapshot = HealthSnapshot.all_up()


class Store:
    def __init__(self) -> None:
        self.zones = {"example.com.": 7}

    def serials(self) -> dict[str, int]:
        return dict(self.zones)


class FakeServer:
    """Implements geodns.ops.serving.Serving, as the server does."""

    def __init__(self) -> None:
        self.config: Config = parse_config(CONFIG, "geodns.toml")
        self.health = Holder()
        self.store = Store()
        self.next_ok = True
        self.geo: Any = None
        self.node: NodeStatus | None = None
        self.refreshed = 0

    def view(self) -> ServingView:
        return ServingView(self.config, self.store.serials(), self.health.snapshot, self.geo,
                           self.node)

    async def refresh_stats(self) -> None:
        self.refreshed += 1

    async def request_reload(self, reason: str) -> ReloadOutcome:
        if self.next_ok:
            self.store.zones["example.com."] += 1
            return ReloadOutcome(True)
        return ReloadOutcome(False, ("zones/x.zone:3: bad",))


class FakeOverrides:
    def __init__(self) -> None:
        self.rules_by_pattern: dict[str, tuple[str, float | None]] = {}
        self.errors: list[str] = []

    @property
    def rules(self) -> list[OverrideRule]:
        return [OverrideRule(p, s, u, "api") for p, (s, u) in  # type: ignore[arg-type]
                self.rules_by_pattern.items()]

    def clock(self) -> float:
        return 0.0


class FakeMonitor:
    """What ServerBackend reads of the health monitor: the checked fra (down after a
    12 ms timeout) and the override rules."""

    def __init__(self) -> None:
        self.overrides = FakeOverrides()
        self.rules = self.overrides.rules_by_pattern
        self.snapshot = HealthSnapshot.all_up()

    def checked(self) -> list[tuple[HealthKey, ProbeView]]:
        spec = ProbeSpec(Check("web", "http"), "192.0.2.20", 80, ("fra",))
        return [("fra", ProbeView(spec, "down", 0, 3, 3, 2,
                                  ProbeResult(False, "timeout after 3.0s", 0.012),
                                  None, None, 3))]

    async def set_override(self, pattern: str, state: str,
                           until: Any = None, force: bool = False) -> Any:
        if state == "bogus":
            raise OverrideError(["unknown state 'bogus'"])
        self.rules[pattern] = (state, until)
        return None

    async def clear_override(self, pattern: str) -> bool:
        return self.rules.pop(pattern, None) is not None


def test_status_reload_overrides_and_health() -> None:
    server, monitor, metrics = FakeServer(), FakeMonitor(), Metrics()
    backend = ServerBackend(server, metrics, monitor)
    assert metrics.zone_serials == {"example.com.": 7}
    # The initial load is a reload: counted, and shown with its reason.
    assert metrics.reloads == {"success": 1, "failure": 0}
    assert to_json(backend.status())["last_reload"] == {
        "ok": True, "time": metrics.last_reload_time, "problems": [], "reason": "start"}
    assert metrics.health_states == {"iad": "up", "iad/192.0.2.10": "up", "fra": "up",
                                     "fra/192.0.2.20": "up"}
    assert metrics.check_latency == {"fra": 0.012}

    async def go() -> None:
        assert await backend.reload() == (True, [])
        backend.on_reloaded(True, "SIGHUP")
        server.next_ok = False
        assert await backend.reload() == (False, ["zones/x.zone:3: bad"])
        backend.on_reloaded(False, "files changed", ["zones/x.zone:3: bad"])
        await backend.set_override("fra", "drain", None)
        with pytest.raises(ValueError, match="bogus"):
            await backend.set_override("fra", "bogus", None)
        assert await backend.clear_override("fra") is True
        assert await backend.clear_override("fra") is False

    asyncio.run(go())
    assert metrics.reloads == {"success": 2, "failure": 1}
    assert metrics.zone_serials == {"example.com.": 8}
    st = to_json(backend.status())
    assert st["last_reload"]["ok"] is False
    assert st["last_reload"]["problems"] == ["zones/x.zone:3: bad"]
    assert st["last_reload"]["reason"] == "files changed"
    assert [z["serial"] for z in st["zones"]] == [8]
    assert [p["name"] for p in st["pools"]] == ["www"]

    new = server.health.snapshot.with_real("fra", "down")
    server.health.snapshot = new
    backend.on_health(new)
    assert to_json(backend.changes.recent())[0]["target"] == "fra"
    # The change says why: the check's last result (what /status has under checks).
    assert to_json(backend.changes.recent())[0]["reason"] == "check web: timeout after 3.0s"
    assert metrics.health_states["fra"] == "down"
    assert metrics.health_changes[("fra", "down")] == 1
    pops = {p["name"]: p for p in to_json(backend.status())["pops"]}
    assert pops["fra"]["state"] == "down" and pops["fra"]["real"] == "down"


def test_without_monitor_overrides_are_refused() -> None:
    backend = ServerBackend(FakeServer(), Metrics())

    async def go() -> None:
        with pytest.raises(ValueError, match="not available"):
            await backend.set_override("fra", "down", None)

    asyncio.run(go())
    assert "overrides" not in to_json(backend.status())


def test_forced_change_names_the_override() -> None:
    server, monitor = FakeServer(), FakeMonitor()
    backend = ServerBackend(server, Metrics(), monitor)
    monitor.rules["fra"] = ("drain", None)
    new = server.health.snapshot.evolve(real={}, overrides={"fra": "drain"})
    server.health.snapshot = new
    backend.on_health(new)
    change = to_json(backend.changes.recent())[0]
    assert (change["target"], change["to"], change["forced"]) == ("fra", "drain", True)
    assert change["reason"].startswith("operator override fra drain")
    cleared = new.evolve(real={}, overrides={})
    server.health.snapshot = cleared
    backend.on_health(cleared)
    assert to_json(backend.changes.recent())[0]["reason"] == "operator override removed"


def test_status_names_version_host_and_uptime() -> None:
    metrics = Metrics(version="9.9.9")
    st = to_json(ServerBackend(FakeServer(), metrics).status())
    assert st["server"]["version"] == "9.9.9"
    assert st["server"]["host"]
    assert st["server"]["uptime_seconds"] >= 0
    assert st["server"]["config"] == "geodns.toml"


class FakeGeo:
    def __init__(self, built: int) -> None:
        from pathlib import Path

        self.path = Path("/var/lib/GeoIP/GeoLite2-City.mmdb")
        self.database_type = "GeoLite2-City"
        self.build_epoch = built


def test_geoip_database_is_logged_exposed_and_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    import time

    server = FakeServer()
    server.geo = FakeGeo(int(time.time()) - 400 * 86400)
    metrics = Metrics(process=False)
    caplog.set_level("INFO")
    backend = ServerBackend(server, metrics)
    geo = to_json(backend.status())["geoip"]
    assert (geo["type"], geo["age_days"], geo["max_age_days"], geo["stale"]) == (
        "GeoLite2-City", 400, 45, True)
    assert metrics.geoip is not None and metrics.geoip[0] == "GeoLite2-City"
    assert any("GeoLite2-City built" in r.getMessage() for r in caplog.records)
    assert any(r.levelname == "WARNING" and "400 days old" in r.getMessage()
               for r in caplog.records)
    # A reload that keeps the same database says nothing new; a new one is logged.
    caplog.clear()
    backend.on_reloaded(True, "SIGHUP")
    assert not any("geoip" in r.name for r in caplog.records)
    server.geo = FakeGeo(int(time.time()) - 86400)
    backend.on_reloaded(True, "files changed")
    assert to_json(backend.status())["geoip"]["stale"] is False
    assert [r.levelname for r in caplog.records if r.name == "geodns.geoip"] == ["INFO"]


def test_a_dnstap_change_at_reload_is_flagged_as_needing_a_restart(
        caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()
    backend = ServerBackend(server, Metrics(process=False))
    backend.on_reloaded(True, "SIGHUP")
    assert "dnstap" not in caplog.text
    server.config = parse_config(CONFIG + '\n[dnstap]\nfile = "/tmp/x.dnstap"\n',
                                 "geodns.toml")
    backend.on_reloaded(True, "SIGHUP")
    assert "[dnstap] changed; it takes effect at the next restart" in caplog.text


def sample_node() -> NodeStatus:
    return NodeStatus(7, 12, ProberStatus(4242, True), (
        WorkerStatus(0, 4300, True, 7, True, (), 0, 12, 0.31, 1500, 2.5, 200 << 20, 61.0, 2),
        WorkerStatus(1, 4301, True, 6, False, ("zones/x.zone:3: bad",), 2, 11, None, 7,
                     0.4, 100 << 20, None, 2)))


def test_status_carries_a_supervisors_node_section() -> None:
    """The workers' table (geodns/workers) reaches /status through the typed view, with
    the field names tests/workers and operators read; a single process has none."""
    server = FakeServer()
    backend = ServerBackend(server, Metrics(process=False))
    assert "node" not in to_json(backend.status())
    server.node = sample_node()
    node = to_json(backend.status())["node"]
    assert node["generation"] == 7 and node["health_generation"] == 12
    assert node["prober"] == {"pid": 4242, "running": True}
    assert node["workers"][0] == {
        "index": 0, "pid": 4300, "ready": True, "generation": 7, "current": True,
        "problems": [], "restarts": 0, "health_generation": 12, "health_lag_ms": 0.31,
        "queries": 1500, "cpu_seconds": 2.5, "rss_bytes": 200 << 20,
        "uptime_seconds": 61.0, "sockets": 2}
    assert node["workers"][1]["problems"] == ["zones/x.zone:3: bad"]
    assert node["workers"][1]["uptime_seconds"] is None


def test_refresh_asks_the_server_for_fresh_counters() -> None:
    server = FakeServer()
    backend = ServerBackend(server, Metrics(process=False))
    asyncio.run(backend.refresh())
    assert server.refreshed == 1
