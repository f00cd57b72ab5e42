"""The ops pieces as wired into `geodns serve`: metrics, /status, overrides, query log."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import dns.edns
import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server

CONFIG = """
[server]
zones = "{zones}"

[querylog]
path = "{log}"

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8:10::1"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]
ipv6 = ["2001:db8:20::1"]

[pools.www]
strategy = "nearest"
ttl = 60
ttl_on_failure = 10

[pools.api]
strategy = "failover"
pops = ["iad", "fra"]
"""


def http(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def www(port: int) -> tuple[list[str], int]:
    q = make_query("www.example.com.", "A", options=[dns.edns.ECSOption("81.2.69.0", 24)])
    m = ask(port, q)
    ecs = [o for o in m.options if isinstance(o, dns.edns.ECSOption)]
    return sorted(rd.to_text() for r in m.answer for rd in r), ecs[0].scopelen


@pytest.fixture
def server(tmp_path: Path):
    cfg = tmp_path / "geodns.toml"
    qlog = tmp_path / "queries.jsonl"
    cfg.write_text(CONFIG.format(zones=REPO_ROOT / "zones", log=qlog))
    with geodns_server(REPO_ROOT / "zones", ["--config", str(cfg)]) as srv:
        srv.qlog = qlog  # type: ignore[attr-defined]
        yield srv


def test_metrics_status_override_and_query_log(server) -> None:  # type: ignore[no-untyped-def]
    port = server.control_port()
    answer, scope = www(server.port)
    assert answer == ["192.0.2.20"] and scope > 0  # London -> fra, tailored scope

    status, body = http(port, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert 'geodns_queries_total{qtype="A",rcode="NOERROR",transport="udp"}' in text
    assert 'geodns_answers_total{arm="",pool="www",pop="fra"} 1.0' in text
    serial = re.search(r'geodns_zone_serial\{zone="example.com."\} (\S+)', text)
    assert serial and float(serial.group(1)) == 2026112101

    st = json.loads(http(port, "GET", "/status")[1])
    assert {p["name"]: p["state"] for p in st["pops"]} == {"iad": "up", "fra": "up"}

    # A drill through the control API moves the answer at once; bad input changes nothing.
    assert http(port, "PUT", "/overrides", {"target": "fra", "state": "bogus"})[0] == 400
    assert www(server.port)[0] == ["192.0.2.20"]
    assert http(port, "PUT", "/overrides", {"target": "fra", "state": "drain"})[0] == 200
    assert www(server.port)[0] == ["192.0.2.10"]
    st = json.loads(http(port, "GET", "/status")[1])
    fra = next(p for p in st["pops"] if p["name"] == "fra")
    assert (fra["state"], fra["real"], fra["forced"]) == ("drain", "up", "drain")
    assert http(port, "DELETE", "/overrides/fra")[0] == 200
    assert www(server.port)[0] == ["192.0.2.20"]

    # Query log lines arrive asynchronously.
    deadline = time.monotonic() + 5
    steered: list[dict] = []
    while time.monotonic() < deadline:
        if server.qlog.exists():
            lines = [json.loads(x) for x in server.qlog.read_text().splitlines()]
            steered = [x for x in lines if x["qname"] == "www.example.com."]
            if len(steered) >= 4:
                break
        time.sleep(0.1)
    assert steered and steered[0]["pool"] == "www" and steered[0]["pop"] == "fra"
    assert steered[0]["ecs"] == "81.2.69.0/24" and steered[0]["ttl"] == 60
    assert [x["pop"] for x in steered] == ["fra", "fra", "iad", "fra"]


def test_reload_via_api_reports_problems(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = server.control_port()
    assert http(port, "POST", "/reload")[0] == 200
    cfg = tmp_path / "geodns.toml"
    good = cfg.read_text()
    cfg.write_text(good + "\n[pools.bad]\nstrategy = \"nope\"\n")
    status, body = http(port, "POST", "/reload")
    assert status == 422
    assert any("pools.bad.strategy" in p for p in json.loads(body)["problems"])
    assert www(server.port)[0] == ["192.0.2.20"]  # still serving the last good config
    text = http(port, "GET", "/metrics")[1].decode()
    assert 'geodns_reloads_total{result="failure"}' in text


def metric(body: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_latency_is_sampled_off_the_packet_cache_and_start_counts_as_reload(
        tmp_path: Path) -> None:
    """No query log here, so the packet cache is on: repeats of one query are cache hits
    and never timed; distinct names miss it and 1 in 32 is timed."""
    from geodns.ops.metrics import LATENCY_EVERY
    from tests.helpers.queries import udp_query

    cfg = tmp_path / "geodns.toml"
    cfg.write_text((REPO_ROOT / "geodns.toml").read_text().replace(
        'zones = "zones"', f'zones = "{REPO_ROOT / "zones"}"'))
    with geodns_server(REPO_ROOT / "zones", ["--config", str(cfg)]) as srv:
        port = srv.control_port()
        _, body = http(port, "GET", "/metrics")
        text = body.decode()
        assert metric(text, 'geodns_reloads_total{result="success"}') == 1  # the start
        assert metric(text, "geodns_last_reload_success") == 1
        assert 'geodns_build_info{python="' in text
        assert metric(text, "process_resident_memory_bytes") > 0
        before = metric(text, "geodns_query_duration_seconds_count")
        cached = make_query("static.example.com", "A").to_wire()
        for _ in range(5 * LATENCY_EVERY):
            assert udp_query(srv.port, cached) is not None
        _, body = http(port, "GET", "/metrics")
        after_cached = metric(body.decode(), "geodns_query_duration_seconds_count")
        assert after_cached - before <= 1  # at most the first (uncached) one
        for i in range(4 * LATENCY_EVERY):
            assert udp_query(srv.port, make_query(f"n{i}.example.com", "A").to_wire())
        _, body = http(port, "GET", "/metrics")
        text = body.decode()
        timed = metric(text, "geodns_query_duration_seconds_count") - after_cached
        assert 3 <= timed <= 5
        assert 0 < metric(text, "geodns_query_duration_seconds_sum") < 1
        _, status = http(port, "GET", "/status")
        data = json.loads(status)
        assert data["last_reload"]["reason"] == "start"
        assert data["server"]["version"] and data["server"]["uptime_seconds"] >= 0
        assert data["geoip"]["type"] == "GeoLite2-City" and data["geoip"]["stale"] is True


def wait_lines(path: Path, n: int, timeout: float = 5.0) -> list[dict]:
    """The query log's lines for www (the readiness probe's queries left out)."""
    deadline = time.monotonic() + timeout
    lines: list[dict] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = [x for x in map(json.loads, path.read_text().splitlines())
                     if x["qname"] == "www.example.com."]
            if len(lines) >= n:
                break
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_query_log_reopens_for_logrotate(server, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    """logrotate moves the file and signals: new lines go to a new file at the path."""
    www(server.port)
    assert len(wait_lines(server.qlog, 1)) == 1
    moved = server.qlog.with_name("queries.jsonl.1")
    server.qlog.rename(moved)
    server.proc.send_signal(sig)
    time.sleep(0.3)  # the signal is handled on the server's loop
    www(server.port)
    www(server.port)
    assert len(wait_lines(server.qlog, 2)) == 2
    assert server.alive()
    assert len(wait_lines(moved, 1)) == 1  # the moved file got nothing more
