"""Status builders (config + health -> typed /status), the change log, the page renderer."""

from __future__ import annotations

from geodns.config import parse_config
from geodns.health.snapshot import HealthSnapshot
from geodns.ops.changes import ChangeLog, health_changes
from geodns.ops.metrics import Metrics
from geodns.ops.page import render_page
from geodns.ops.status import (
    Answers,
    PopStatus,
    ReloadStatus,
    Status,
    to_json,
)
from geodns.ops.status_build import pool_status, pop_status, reload_status, zone_status

CONFIG = """
[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
capacity = 500

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20", "192.0.2.21"]

[pools.www]
strategy = "failover"
pops = ["iad", "fra"]
"""


def test_pop_and_pool_status() -> None:
    config = parse_config(CONFIG, "geodns.toml")
    health = HealthSnapshot.build(real={"fra": "down", ("fra", "192.0.2.21"): "down"},
                                  overrides={"iad": "drain", "fra": "up"})
    pops = {p["name"]: p for p in to_json(pop_status(config, health))}
    assert (pops["iad"]["state"], pops["iad"]["real"], pops["iad"]["forced"]) == \
        ("drain", "up", "drain")
    assert (pops["fra"]["state"], pops["fra"]["real"], pops["fra"]["forced"]) == \
        ("up", "down", "up")
    assert pops["fra"]["addresses"][1] == {"address": "192.0.2.21", "state": "down",
                                           "real": "down", "forced": None}
    assert pops["iad"]["capacity"] == 500
    assert to_json(pool_status(config))[0]["pops"] == ["iad", "fra"]
    assert to_json(zone_status({"b.": 2, "a.": 1})) == [{"name": "a.", "serial": 1},
                                                         {"name": "b.", "serial": 2}]
    assert reload_status(None, None) is None
    assert to_json(reload_status(False, 5.0, ["x:1: bad"], "SIGHUP")) == {
        "ok": False, "time": 5.0, "problems": ["x:1: bad"], "reason": "SIGHUP"}


def test_change_log_counts_and_orders() -> None:
    config = parse_config(CONFIG, "geodns.toml")
    m = Metrics()
    log = ChangeLog(size=3, metrics=m, clock=lambda: 100.0)
    a = HealthSnapshot.all_up()
    b = a.with_real("fra", "down")
    c = b.with_override(("fra", "192.0.2.20"), "drain")
    assert health_changes(config, a, a) == []
    assert log.observe(config, a, b, reason="check") == 1
    assert log.observe(config, b, c) == 1
    recent = to_json(log.recent())
    assert [(e["target"], e["from"], e["to"], e["forced"]) for e in recent] == [
        ("fra/192.0.2.20", "up", "drain", True), ("fra", "up", "down", False)]
    assert recent[1]["reason"] == "check"
    assert m.health_changes[("fra", "down")] == 1
    for i in range(5):
        log.record(f"t{i}", "up", "down")
    assert [e.target for e in log.recent()] == ["t4", "t3", "t2"]


def test_page_shows_failed_reload_and_escapes() -> None:
    data = Status(
        pops=(PopStatus("<b>x</b>", "down", "down", None, check="web", addresses=()),),
        last_reload=ReloadStatus(False, 90.0, ("zones/a.zone:3: unknown type <FOO>",)),
        answers=Answers(5, 0, {}))
    page = render_page(data, now=100.0)
    assert "RELOAD FAILED" in page and "10s ago" in page
    assert "unknown type &lt;FOO&gt;" in page and "<FOO>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    assert "1 DOWN" in page
    empty = render_page(Status(), now=0.0)
    assert "NO POPS" in empty and "no POPs configured" in empty
