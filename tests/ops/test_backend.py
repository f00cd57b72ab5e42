"""ServerBackend: the ControlBackend adapter over a (fake) server and health monitor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from geodns.config import Config, parse_config
from geodns.health.overrides import OverrideError
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.backend import ServerBackend
from geodns.ops.metrics import Metrics

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
    def __init__(self) -> None:
        self.config: Config = parse_config(CONFIG, "geodns.toml")
        self.health = Holder()
        self.last_reload_error: list[str] = []
        self.store = Store()
        self.next_ok = True

    async def reload(self, reason: str) -> bool:
        self.last_reload_error = [] if self.next_ok else ["zones/x.zone:3: bad"]
        if self.next_ok:
            self.store.zones["example.com."] += 1
        return self.next_ok


class FakeMonitor:
    def __init__(self) -> None:
        self.rules: dict[str, tuple[str, float | None]] = {}

    async def set_override(self, pattern: str, state: str,
                           until: float | None = None, force: bool = False) -> object:
        if state == "bogus":
            raise OverrideError(["unknown state 'bogus'"])
        self.rules[pattern] = (state, until)
        return None

    async def clear_override(self, pattern: str) -> bool:
        return self.rules.pop(pattern, None) is not None

    def status(self) -> dict[str, Any]:
        return {"targets": {"fra": {"latency_ms": 12, "state": "down", "check": "web",
                                    "reason": "timeout after 3.0s"}},
                "overrides": {"rules": [{"pattern": p, "state": s} for p, (s, _) in
                                        self.rules.items()], "errors": []}}


def test_status_reload_overrides_and_health() -> None:
    server, monitor, metrics = FakeServer(), FakeMonitor(), Metrics()
    backend = ServerBackend(server, metrics, monitor)
    assert metrics.zone_serials == {"example.com.": 7}
    # The initial load is a reload: counted, and shown with its reason.
    assert metrics.reloads == {"success": 1, "failure": 0}
    assert backend.status()["last_reload"] == {"ok": True, "time": metrics.last_reload_time,
                                               "problems": [], "reason": "start"}
    assert metrics.health_states == {"iad": "up", "iad/192.0.2.10": "up", "fra": "up",
                                     "fra/192.0.2.20": "up"}
    assert metrics.check_latency == {"fra": 0.012}

    async def go() -> None:
        assert await backend.reload() == (True, [])
        backend.on_reloaded(True, "SIGHUP")
        server.next_ok = False
        assert await backend.reload() == (False, ["zones/x.zone:3: bad"])
        backend.on_reloaded(False, "files changed")
        await backend.set_override("fra", "drain", None)
        with pytest.raises(ValueError, match="bogus"):
            await backend.set_override("fra", "bogus", None)
        assert await backend.clear_override("fra") is True
        assert await backend.clear_override("fra") is False

    asyncio.run(go())
    assert metrics.reloads == {"success": 2, "failure": 1}
    assert metrics.zone_serials == {"example.com.": 8}
    st = backend.status()
    assert st["last_reload"]["ok"] is False
    assert st["last_reload"]["problems"] == ["zones/x.zone:3: bad"]
    assert st["last_reload"]["reason"] == "files changed"
    assert [z["serial"] for z in st["zones"]] == [8]
    assert [p["name"] for p in st["pools"]] == ["www"]

    new = server.health.snapshot.with_real("fra", "down")
    server.health.snapshot = new
    backend.on_health(new)
    assert backend.recent_changes()[0]["target"] == "fra"
    # The change says why: the check's last result (what /status has under checks).
    assert backend.recent_changes()[0]["reason"] == "check web: timeout after 3.0s"
    assert metrics.health_states["fra"] == "down"
    assert metrics.health_changes[("fra", "down")] == 1
    pops = {p["name"]: p for p in backend.status()["pops"]}
    assert pops["fra"]["state"] == "down" and pops["fra"]["real"] == "down"


def test_without_monitor_overrides_are_refused() -> None:
    backend = ServerBackend(FakeServer(), Metrics())

    async def go() -> None:
        with pytest.raises(ValueError, match="not available"):
            await backend.set_override("fra", "down", None)

    asyncio.run(go())
    assert "overrides" not in backend.status()


def test_forced_change_names_the_override() -> None:
    server, monitor = FakeServer(), FakeMonitor()
    backend = ServerBackend(server, Metrics(), monitor)
    monitor.rules["fra"] = ("drain", None)
    new = server.health.snapshot.evolve(real={}, overrides={"fra": "drain"})
    server.health.snapshot = new
    backend.on_health(new)
    change = backend.recent_changes()[0]
    assert (change["target"], change["to"], change["forced"]) == ("fra", "drain", True)
    assert change["reason"].startswith("operator override fra drain")
    cleared = new.evolve(real={}, overrides={})
    server.health.snapshot = cleared
    backend.on_health(cleared)
    assert backend.recent_changes()[0]["reason"] == "operator override removed"


def test_status_names_version_host_and_uptime() -> None:
    metrics = Metrics(version="9.9.9")
    st = ServerBackend(FakeServer(), metrics).status()
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


class FakeRuntime:
    def __init__(self, geo: FakeGeo) -> None:
        self.geo = geo


def test_geoip_database_is_logged_exposed_and_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    import time

    server = FakeServer()
    server.runtime = FakeRuntime(FakeGeo(int(time.time()) - 400 * 86400))  # type: ignore[attr-defined]
    metrics = Metrics(process=False)
    caplog.set_level("INFO")
    backend = ServerBackend(server, metrics)
    geo = backend.status()["geoip"]
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
    server.runtime = FakeRuntime(FakeGeo(int(time.time()) - 86400))  # type: ignore[attr-defined]
    backend.on_reloaded(True, "files changed")
    assert backend.status()["geoip"]["stale"] is False
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
