"""The load monitor against real files and loopback HTTP servers (a JSON endpoint and a
fake Prometheus API): values, failures that change nothing, staleness, logs, metrics.

Most tests poll by hand with a fake clock, so ages are exact and nothing sleeps; one
test runs the real scheduler with short intervals.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from geodns.config import Config, parse_config
from geodns.ops.status import to_json
from geodns.ops.status_build import feed_status, load_status
from geodns.traffic.feeds import LoadMonitor
from geodns.traffic.loads import LoadSnapshot
from tests.health.backends import eventually, free_tcp_port, run_async
from tests.traffic.servers import FakePrometheus, LoadsEndpoint

pytestmark = pytest.mark.timeout(60)

POPS = """
[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
capacity = 1000
load = "edge"

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
capacity = 2000
load = "edge"
load_key = "IAD1"

[pops.sin]
lat = 1.35
lon = 103.8
ipv4 = ["192.0.2.30"]
"""


def config(feed: str) -> Config:
    return parse_config(textwrap.dedent(feed) + POPS, "/test/geodns.toml")


class Clock:
    """A hand-driven Unix clock."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[LoadSnapshot] = []

    def __call__(self, snap: LoadSnapshot) -> None:
        self.snapshots.append(snap)


def loads(snap: LoadSnapshot) -> dict[str, float | None]:
    """Fresh loads per POP (None: known but stale)."""
    return {pop: snap.load(pop) for pop in snap.samples}


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "geodns.loads" and r.levelno >= logging.WARNING]


def write(path: Path, text: str, mtime: float) -> None:
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def scrape(mon: LoadMonitor) -> str:
    registry = CollectorRegistry()
    registry.register(mon.metrics())
    return generate_latest(registry).decode()


# ------------------------------------------------------------------------------------ files


def test_file_feed_values_changes_and_a_bad_file(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "loads.json"
    clock = Clock()
    write(path, '{"fra": 800, "IAD1": 500, "gru": 3}', clock.t - 5)
    cfg = config(f'[loads.edge]\ntype = "file"\npath = "{path}"\n')
    rec = Recorder()
    mon = LoadMonitor(cfg, rec, clock=clock)

    async def go() -> None:
        await mon.poll("edge")
        snap = mon.snapshot
        assert loads(snap) == {"fra": 800.0, "iad": 500.0}  # mapped by load_key; gru ignored
        assert snap.utilisation("fra") == 0.8 and snap.utilisation("iad") == 0.25
        assert snap.sample("fra").timestamp == clock.t - 5  # type: ignore[union-attr]

        write(path, '{"fra": 900, "IAD1": 500}', clock.t)
        await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 900.0, "iad": 500.0}
        published = len(rec.snapshots)
        await mon.poll("edge")  # unchanged file: not re-read, nothing published
        assert len(rec.snapshots) == published

        write(path, '{"fra": 950,\n "IAD1": "x"}', clock.t + 1)
        for _ in range(3):
            await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 900.0, "iad": 500.0}  # last good values kept
        assert warnings(caplog) == [
            f"load feed edge failed: {path}:2: IAD1: 'x' is not a number; keeping the last "
            "values until they are older than max_age 60s"]  # once, not once per poll
        assert 'geodns_load_feed_failures_total{feed="edge"} 3.0' in scrape(mon)
        assert 'geodns_load_feed_up{feed="edge"} 0.0' in scrape(mon)

        write(path, '{"fra": 100, "IAD1": 200}', clock.t + 2)
        await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 100.0, "iad": 200.0}
        assert "load feed edge recovered" in caplog.text
        await mon.stop()

    with caplog.at_level(logging.INFO, logger="geodns.loads"):
        run_async(go())


def test_csv_rows_carry_their_own_times(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "loads.csv"
    write(path, f"pop,load,time\nfra,10,{clock.t - 10:.0f}\nIAD1,20,{clock.t - 1000:.0f}\n",
          clock.t)
    mon = LoadMonitor(config(f'[loads.edge]\ntype = "file"\npath = "{path}"\n'), clock=clock)
    run_async(mon.poll("edge"))
    assert loads(mon.snapshot) == {"fra": 10.0, "iad": None}  # iad's row is too old
    assert feed_status(mon)["edge"].stale is False  # the feed itself is alive


def test_file_goes_stale_when_its_writer_stops(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    path = tmp_path / "loads.json"
    write(path, '{"fra": 10, "IAD1": 20}', clock.t - 30)
    mon = LoadMonitor(config(f'[loads.edge]\ntype = "file"\npath = "{path}"\nmax_age = 60\n'),
                      clock=clock)

    async def go() -> None:
        await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 10.0, "iad": 20.0}
        clock.t += 31  # newest value now 61 s old
        await mon.poll("edge")
        snap = mon.snapshot
        assert loads(snap) == {"fra": None, "iad": None}
        assert snap.sample("fra").value == 10.0 and snap.sample("fra").stale  # type: ignore
        text = scrape(mon)
        assert 'geodns_load_feed_stale{feed="edge"} 1.0' in text
        assert 'geodns_load_feed_stale_events_total{feed="edge"} 1.0' in text
        assert "geodns_pop_load{" not in text  # stale loads are not exported as current
        write(path, '{"fra": 11, "IAD1": 21}', clock.t)
        await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 11.0, "iad": 21.0}

    with caplog.at_level(logging.INFO, logger="geodns.loads"):
        run_async(go())
    stale_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.t - 31 - 30))
    assert warnings(caplog) == [f"load feed edge is stale: its newest value ({stale_at}) is "
                                "older than max_age 60s; its loads are ignored"]
    assert "load feed edge is fresh again" in caplog.text


def test_missing_file_and_missing_pops_are_reported_not_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "loads.json"
    mon = LoadMonitor(config(f'[loads.edge]\ntype = "file"\npath = "{path}"\n'))

    async def go() -> None:
        await mon.poll("edge")
        assert dict(mon.snapshot.samples) == {}
        path.write_text('{"fra": 5}')
        await mon.poll("edge")
        await mon.poll("edge")
        assert loads(mon.snapshot) == {"fra": 5.0}

    run_async(go())
    assert warnings(caplog) == [f"load feed edge failed: {path}:0: no such file",
                                "load feed edge has no value for IAD1"]
    status = to_json(feed_status(mon))["edge"]
    assert (status["ok"], status["missing"], status["failures"]) == (True, ["IAD1"], 1)


# ------------------------------------------------------------------------------------- http


def test_http_feed_failures_keep_values_until_max_age(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()

    async def go() -> None:
        server = LoadsEndpoint()
        await server.start()
        cfg = config(f'[loads.edge]\ntype = "http"\nurl = "{server.url}"\ninterval = 10\n'
                     "max_age = 30\n")
        mon = LoadMonitor(cfg, clock=clock)
        try:
            server.body = {"fra": 100, "IAD1": 200}
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": 100.0, "iad": 200.0}
            assert mon.snapshot.sample("fra").timestamp == clock.t  # type: ignore[union-attr]
            assert server.requests[-1].headers["User-Agent"] == "geodns-loads/1"

            server.status = 500
            clock.t += 20
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": 100.0, "iad": 200.0}  # 20 s old: still used
            clock.t += 11
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": None, "iad": None}  # 31 s old: ignored

            server.status, server.body = 200, {"fra": 150, "IAD1": 250}
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": 150.0, "iad": 250.0}

            server.body = '{"fra": }'
            await mon.poll("edge")
            server.body = {"timestamp": clock.t - 100, "loads": {"fra": 1, "IAD1": 2}}
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": None, "iad": None}  # the payload's own time
        finally:
            await mon.stop()
            await server.stop()
        assert warnings(caplog)[:2] == [
            f"load feed edge failed: {server.url}:0: HTTP 500; keeping the last values until "
            "they are older than max_age 30s",
            "load feed edge is stale: its newest value "
            f"({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(clock.t - 31))}) is older "
            "than max_age 30s; its loads are ignored"]
        assert warnings(caplog)[2].startswith(
            f"load feed edge failed: {server.url}:1: invalid JSON: Expecting value")

    run_async(go())


def test_http_timeout_and_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        server = LoadsEndpoint()
        await server.start()
        server.hang = True
        refused = f"http://127.0.0.1:{free_tcp_port()}/loads.json"
        cfg = parse_config(textwrap.dedent(f"""
            [loads.slow]
            type = "http"
            url = "{server.url}"
            interval = 1
            timeout = 0.2

            [loads.gone]
            type = "http"
            url = "{refused}"
            """) + POPS.replace('load = "edge"', 'load = "slow"'), "t.toml")
        mon = LoadMonitor(cfg)
        start = time.monotonic()
        await mon.poll("slow")
        elapsed = time.monotonic() - start
        await mon.poll("gone")
        await mon.stop()
        await server.stop()
        assert elapsed < 1.0
        msgs = warnings(caplog)
        assert msgs[0] == f"load feed slow failed: {server.url}:0: timeout after 0.2s"
        assert msgs[1].startswith(f"load feed gone failed: {refused}:0: ClientConnectorError")

    run_async(go())


# ------------------------------------------------------------------------------- prometheus

QUERY = 'sum by (site) (rate(nginx_http_requests_total{job="edge"}[1m]))'


def test_prometheus_feed(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()

    async def go() -> None:
        prom = FakePrometheus(label="site")
        await prom.start()
        cfg = config(f"[loads.edge]\ntype = \"prometheus\"\nurl = \"{prom.url}/\"\n"
                     f"query = '{QUERY}'\nlabel = \"site\"\n")
        mon = LoadMonitor(cfg, clock=clock)
        try:
            prom.loads = {"fra": 812.5, "IAD1": 1203.0}
            prom.sample_time = clock.t - 1
            await mon.poll("edge")
            assert prom.queries == [QUERY]  # sent as the query parameter, url-encoded
            assert prom.requests[0].path == "/api/v1/query"
            assert loads(mon.snapshot) == {"fra": 812.5, "iad": 1203.0}
            assert mon.snapshot.sample("fra").timestamp == clock.t - 1  # type: ignore

            prom.error = (400, "bad_data", "1:5: parse error: unexpected identifier")
            await mon.poll("edge")
            assert loads(mon.snapshot) == {"fra": 812.5, "iad": 1203.0}  # kept

            prom.error, prom.label = None, "pop"  # the query lost its "by (site)"
            await mon.poll("edge")
        finally:
            await mon.stop()
            await prom.stop()
        url = f"{prom.url}/api/v1/query"
        assert warnings(caplog) == [
            f"load feed edge failed: {url}:1: Prometheus query failed: bad_data: 1:5: parse "
            "error: unexpected identifier; keeping the last values until they are older "
            "than max_age 60s",
            f"load feed edge failed: {url}:1: result[0] {{job=\"edge\", pop=\"fra\"}} has no "
            f"'site' label (aggregate with: sum by (site) (...)); {url}:1: result[1] "
            f"{{job=\"edge\", pop=\"IAD1\"}} has no 'site' label (aggregate with: sum by "
            "(site) (...)); keeping the last values until they are older than max_age 60s"]

    run_async(go())


# ------------------------------------------------------------------------ scheduler, config


def test_scheduler_follows_a_live_endpoint() -> None:
    """Real intervals: values follow the endpoint; an outage goes stale after max_age and
    recovers at the next good poll."""
    interval, max_age = 0.1, 0.5

    async def go() -> tuple[float, float]:
        server = LoadsEndpoint()
        await server.start()
        server.body = {"fra": 1, "IAD1": 2}
        cfg = config(f'[loads.edge]\ntype = "http"\nurl = "{server.url}"\n'
                     f"interval = {interval}\ntimeout = 0.05\nmax_age = {max_age}\n")
        rec = Recorder()
        mon = LoadMonitor(cfg, rec)
        await mon.start()
        try:
            await eventually(lambda: mon.snapshot.load("fra") == 1.0, 2)
            server.body = {"fra": 7, "IAD1": 2}
            await eventually(lambda: mon.snapshot.load("fra") == 7.0, 2)
            server.status = 503
            went_stale = await eventually(lambda: mon.snapshot.load("fra") is None, 5)
            server.status = 200
            back = await eventually(lambda: mon.snapshot.load("fra") == 7.0, 2)
        finally:
            await mon.stop()
            await server.stop()
        assert [s.generation for s in rec.snapshots] == sorted(
            {s.generation for s in rec.snapshots})
        return went_stale, back

    went_stale, back = run_async(go())
    # the last good value was at most one interval old when the outage began
    assert max_age - interval - 0.05 < went_stale < max_age + 2 * interval + 0.5
    assert back < interval + 0.5


def test_config_reload_adds_changes_and_removes_feeds(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"fra": 1, "IAD1": 2}')
    b.write_text('{"fra": 10}')
    first = config(f'[loads.edge]\ntype = "file"\npath = "{a}"\ninterval = 0.05\n')
    second = config(f'[loads.edge]\ntype = "file"\npath = "{b}"\ninterval = 0.05\n')
    none = parse_config(POPS.replace('load = "edge"\n', "").replace('load_key = "IAD1"\n', ""),
                        "t.toml")

    async def go() -> None:
        mon = LoadMonitor(first)
        await mon.start()
        await eventually(lambda: mon.snapshot.load("iad") == 2.0, 2)
        mon.update_config(second)
        await eventually(lambda: mon.snapshot.load("fra") == 10.0, 2)
        assert mon.snapshot.load("iad") is None
        mon.update_config(none)
        assert dict(mon.snapshot.samples) == {} and feed_status(mon) == {}
        await mon.stop()

    run_async(go())


def test_metrics_and_status(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "loads.json"
    write(path, json.dumps({"fra": 800, "IAD1": 500}), clock.t - 4)
    mon = LoadMonitor(config(f'[loads.edge]\ntype = "file"\npath = "{path}"\n'), clock=clock)
    run_async(mon.poll("edge"))
    text = scrape(mon)
    for line in ('geodns_load_feed_up{feed="edge"} 1.0',
                 'geodns_load_feed_stale{feed="edge"} 0.0',
                 'geodns_load_feed_age_seconds{feed="edge"} 4.0',
                 'geodns_load_feed_polls_total{feed="edge"} 1.0',
                 'geodns_load_feed_failures_total{feed="edge"} 0.0',
                 'geodns_pop_load{pop="fra"} 800.0',
                 'geodns_pop_load{pop="iad"} 500.0',
                 'geodns_pop_capacity{pop="fra"} 1000.0',
                 'geodns_pop_capacity{pop="iad"} 2000.0'):
        assert line in text.splitlines(), line
    status = {"pops": to_json(load_status(mon)), "feeds": to_json(feed_status(mon))}
    assert status["pops"]["fra"] == {"load": 800.0, "capacity": 1000.0, "feed": "edge",
                                     "utilisation": 0.8, "stale": False, "age": 4.0}
    assert status["feeds"]["edge"]["pops"] == ["fra", "iad"]
    assert status["feeds"]["edge"]["source"] == str(path)
