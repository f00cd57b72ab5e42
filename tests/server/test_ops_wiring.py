"""The ops pieces as wired into `geodns serve`: metrics, /status, overrides, query log."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import dns.edns
import pytest

from tests.util import REPO_ROOT, ask, geodns_server, make_query

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
    assert 'geodns_answers_total{pool="www",pop="fra"} 1.0' in text
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
