"""The status page's content, rendered from /status data (no browser needed)."""

from __future__ import annotations

import re
import time

from geodns.ops.control import status_data
from geodns.ops.metrics import Metrics
from geodns.ops.page import render_page
from tests.ops.fakes import FakeBackend


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def row(page: str, pop: str) -> str:
    m = re.search(rf'<tr class="pop[^"]*" data-pop="{pop}".*?</tr>', page)
    assert m, page
    return m.group(0)


def test_checked_column_says_no_check_for_unchecked_pops() -> None:
    backend = FakeBackend()
    backend.pops[0]["check"] = None  # iad: no health check at all
    backend.pops[2]["check"] = "web"  # sin: checked, found down
    page = render_page(status_data(backend))
    assert "no check" in row(page, "iad")
    assert ">up<" not in row(page, "iad").split("</td>")[2]
    assert "no check" not in row(page, "sin") and ">down<" in row(page, "sin")


def test_change_reason_and_initial_load_and_server_line() -> None:
    backend = FakeBackend()
    now = time.time()
    backend.changes = [{"time": now - 5, "target": "sin", "from": "up", "to": "down",
                        "forced": False, "reason": "check web: timeout after 3.0s"}]
    backend.last_reload = {"ok": True, "time": now - 60, "problems": [], "reason": "start"}
    data = status_data(backend)
    data["server"] = {"version": "0.1.0", "host": "dns1.example", "started": now - 7500,
                      "uptime_seconds": 7500.0, "config": "/etc/geodns/geodns.toml"}
    data["geoip"] = {"path": "/var/lib/GeoIP/GeoLite2-City.mmdb", "type": "GeoLite2-City",
                     "built": "2018-07-03", "age_days": 3000, "stale": True}
    page = render_page(data, now=now)
    assert "check web: timeout after 3.0s" in page
    assert "initial load" in page and "NO RELOAD YET" not in page
    server = re.search(r'<span id="server".*?</span>(?=<span id="live")', page)
    assert server, page
    text = re.sub(r"<[^>]+>", "", server.group(0))
    assert "geodns 0.1.0 on dns1.example" in text
    assert "up 2h 5m" in text
    assert "config /etc/geodns/geodns.toml" in text
    assert "GeoIP GeoLite2-City built 2018-07-03 (3000 days)" in text


def test_sparkline_series_exclude_the_partial_current_minute() -> None:
    clock = Clock(1000 * 60.0)
    backend = FakeBackend()
    backend.metrics = Metrics(clock=clock, process=False)
    m = backend.metrics
    for _minute in range(3):  # three full minutes of 60 answers each
        for _ in range(60):
            m.answer("www", "iad")
        clock.t += 60
        m.tick()
    clock.t += 10  # 10 s into the current minute: only 10 answers so far
    for _ in range(10):
        m.answer("www", "iad")
    data = status_data(backend, now=clock.t)
    series = data["answers"]["pops"]["iad"]["series"]
    assert series == [60, 60, 60]  # the partial 10 would look like a drop
    assert data["answers"]["total"] == 190  # the counts still include it


def test_load_against_capacity_and_shedding_pops() -> None:
    backend = FakeBackend()
    backend.pops[0].update(load=950.0, utilisation=0.95, load_stale=False)  # iad, cap 1000
    backend.pops[1].update(load=600.0, utilisation=1.2, load_stale=True)  # fra, cap 500
    data = status_data(backend)
    data["steering"] = {"spill": {"shares": {"www": {"iad": 0.12, "fra": 0.0}}}}
    page = render_page(data)
    assert "950 of 1000 (95%)" in row(page, "iad")
    fra = row(page, "fra")
    assert '<span class="over"' in fra and "600 of 500 (120%)" in fra and "(stale)" in fra
    assert row(page, "sin").count('class="num load"><span class="muted">-</span>') == 1
    assert "sheds 12%" in page and "sheds 0%" not in page
