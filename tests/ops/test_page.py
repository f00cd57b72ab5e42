"""The status page's content, rendered from /status data (no browser needed)."""

from __future__ import annotations

import dataclasses
import re
import time

from geodns.ops.metrics import Metrics
from geodns.ops.page import render_page
from geodns.ops.status import (
    GeoStatus,
    HealthChange,
    LoadFigures,
    NodeStatus,
    ProberStatus,
    ReloadStatus,
    ServerInfo,
    SpillStatus,
    SteeringStatus,
    WorkerStatus,
    to_json,
)
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
    backend.pops[0] = dataclasses.replace(backend.pops[0], check=None)  # iad: no check at all
    backend.pops[2] = dataclasses.replace(backend.pops[2], check="web")  # sin: found down
    page = render_page(backend.status())
    assert "no check" in row(page, "iad")
    assert ">up<" not in row(page, "iad").split("</td>")[2]
    assert "no check" not in row(page, "sin") and ">down<" in row(page, "sin")


def test_change_reason_and_initial_load_and_server_line() -> None:
    backend = FakeBackend()
    now = time.time()
    backend.changes = [HealthChange(now - 5, "sin", "up", "down", False,
                                    "check web: timeout after 3.0s")]
    backend.last_reload = ReloadStatus(True, now - 60, (), "start")
    data = dataclasses.replace(
        backend.status(),
        server=ServerInfo("0.1.0", "dns1.example", 1, now - 7500, 7500.0,
                          "/etc/geodns/geodns.toml"),
        geoip=GeoStatus("/var/lib/GeoIP/GeoLite2-City.mmdb", "GeoLite2-City", 0,
                        "2018-07-03", 3000, 45, True))
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
    data = to_json(backend.status(now=clock.t))
    series = data["answers"]["pops"]["iad"]["series"]
    assert series == [60, 60, 60]  # the partial 10 would look like a drop
    assert data["answers"]["total"] == 190  # the counts still include it


def test_load_against_capacity_and_shedding_pops() -> None:
    backend = FakeBackend()
    backend.pops[0] = dataclasses.replace(  # iad, cap 1000
        backend.pops[0], figures=LoadFigures(950.0, 0.95, False))
    backend.pops[1] = dataclasses.replace(  # fra, cap 500
        backend.pops[1], figures=LoadFigures(600.0, 1.2, True))
    data = dataclasses.replace(backend.status(), steering=SteeringStatus(
        spill=SpillStatus({"www": {"iad": 0.12, "fra": 0.0}})))
    page = render_page(data)
    assert "950 of 1000 (95%)" in row(page, "iad")
    fra = row(page, "fra")
    assert '<span class="over"' in fra and "600 of 500 (120%)" in fra and "(stale)" in fra
    assert row(page, "sin").count('class="num load"><span class="muted">-</span>') == 1
    assert "sheds 12%" in page and "sheds 0%" not in page


def test_workers_table_when_the_server_is_a_supervisor() -> None:
    """One row per worker: pid, whether it serves the newest generation, restarts,
    health lag, queries, CPU; problems shown as text (escaped), never as markup."""
    backend = FakeBackend()
    assert 'id="node"' not in render_page(backend.status(), now=100.0)
    node = NodeStatus(7, 12, ProberStatus(4242, True), (
        WorkerStatus(0, 4300, True, 7, True, (), 0, 12, 0.31, 1500, 2.5, 200 << 20, 61.0, 2),
        WorkerStatus(1, 4301, True, 6, False, ("zones/<b>x</b>.zone:3: bad",), 3, 11, None,
                     7, 0.4, 100 << 20, None, 2)))
    page = render_page(dataclasses.replace(backend.status(), node=node), now=100.0)
    section = re.search(r'<section class="wide" id="node">.*?</section>', page, re.S)
    assert section, page
    text = section.group(0)
    assert "generation 7" in text and "prober pid 4242" in text
    rows = re.findall(r'<tr class="worker".*?</tr>', text)
    assert len(rows) == 2
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>.*?</td>", rows[0])]
    assert cells == ["0", "4300", "CURRENT", "7", "0", "0.31 ms", "1,500", "2.5 s",
                     "200 MiB", "1m 1s"]
    assert 'data-pid="4301"' in rows[1] and "BEHIND" in rows[1] and ">3<" in rows[1]
    assert "zones/&lt;b&gt;x&lt;/b&gt;.zone:3: bad" in text and "<b>x</b>" not in text
    down = dataclasses.replace(node, prober=ProberStatus(None, False))
    assert "prober <span class=\"over\">not running</span>" in render_page(
        dataclasses.replace(backend.status(), node=down), now=100.0)
