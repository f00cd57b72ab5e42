"""Fences and experiment arms through a real server, asked with ``dig``.

geodns serves a copy of the shipped zone plus ``exp`` (a pool with two arms) under a
config with two fences: ``gb-only`` (British clients may only ever get lhr, in pools
www and api) and ``lab`` (198.51.100.0/24 may only get fra, in pool api).  What a user
sees: the fenced answer and its ECS scope, the answer that stays inside the fence when
its POP is forced down (fail_open inside the fence), SERVFAIL and NODATA when a fence
leaves no POP, arms split by client /24 and labelled in the query log, and the
counters in /metrics.  ``geodns check``, ``explain`` and ``simulate`` on the same config
report the fences and arms.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import maxminddb
import pytest

from geodns.geoip.db import GeoDB
from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import ServerProcess, geodns_cmd, geodns_server
from tests.server.test_ops_wiring import http
from tests.smoke.test_dig import DIG, dig

pytestmark = [
    pytest.mark.skipif(DIG is None, reason="dig (Debian package bind9-dnsutils) not installed"),
    pytest.mark.timeout(120),
]

CONFIG = """\
[server]
zones = "{zones}"

[querylog]
path = "{log}"

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]

[pops.fra]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pops.lhr]
lat = 51.5
lon = -0.1
ipv4 = ["192.0.2.30"]

[pools.www]
strategy = "nearest"
pops = ["iad", "fra", "lhr"]
ttl = 60
ttl_on_failure = 10
all_down = "fail_open"

[pools.api]
strategy = "failover"
pops = ["iad"]

[pools.exp]
strategy = "failover"
pops = ["iad", "fra"]
arms = {{ control = 50, canary = {{ weight = 50, pops = ["fra"] }} }}
salt = "2026-q4"

[fences.gb-only]
countries = ["GB"]
pops = ["lhr"]
on_empty = "servfail"
pools = ["www", "api"]

[fences.lab]
nets = ["198.51.100.0/24"]
pops = ["fra"]
on_empty = "nodata"
pools = ["api"]
"""

GB = "81.2.69.0/24"  # London in the packaged GeoLite2 database
US = "8.8.8.0/24"
LAB = "198.51.100.0/24"


def line_of(text: str, needle: str, after: str = "") -> int:
    """1-based line number of the first ``needle`` after the line ``after``."""
    lines = text.splitlines()
    start = lines.index(after) if after else 0
    return next(i + 1 for i, line in enumerate(lines) if i >= start and line == needle)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("fences")
    zones = base / "zones"
    zones.mkdir()
    text = (REPO_ROOT / "zones" / "example.com.zone").read_text()
    (zones / "example.com.zone").write_text(text + "exp  300  IN  DYNA  exp\n")
    qlog = base / "queries.jsonl"
    cfg = base / "geodns.toml"
    cfg.write_text(CONFIG.format(zones=zones, log=qlog))
    return cfg, zones, qlog


@pytest.fixture(scope="module")
def server(setup: tuple[Path, Path, Path]) -> Iterator[ServerProcess]:
    cfg, zones, _ = setup
    with geodns_server(zones, ["--config", str(cfg)]) as srv:
        yield srv
        assert srv.alive(), srv.stderr_text()[-4000:]


def _scope_net(res: object) -> ipaddress.IPv4Network:
    """The scope network of dig's ``CLIENT-SUBNET: ADDR/SOURCE/SCOPE`` line."""
    line = next(o for o in res.options if o.startswith("CLIENT-SUBNET"))  # type: ignore[attr-defined]
    addr, _, scope = line.split(": ", 1)[1].strip().split("/")
    return ipaddress.IPv4Network(f"{addr}/{scope}", strict=False)


def test_fenced_answers_on_the_wire(server: ServerProcess) -> None:
    port = server.port
    res = dig(port, "www.example.com", "A", f"+subnet={GB}")
    assert res.status == "NOERROR" and res.rdata() == ["192.0.2.30"]
    # the ECS scope of the fenced answer never spans clients outside the fence
    scope = _scope_net(res)
    assert scope.prefixlen > 0
    with maxminddb.open_database(str(GeoDB.open().path)) as reader:
        for ip in (scope[0], scope[-1]):
            record = reader.get(str(ip))
            assert isinstance(record, dict) and record["country"]["iso_code"] == "GB", ip
    assert dig(port, "www.example.com", "A", f"+subnet={US}").rdata() == ["192.0.2.10"]

    # lhr forced down: without the fence GB would fail over to fra; the fence keeps it
    # on lhr (fail_open opens only inside the fence), with the failure TTL
    control = server.control_port()
    assert http(control, "PUT", "/overrides", {"target": "lhr", "state": "down"})[0] == 200
    try:
        deadline = time.monotonic() + 5
        while True:
            res = dig(port, "www.example.com", "A", f"+subnet={GB}")
            if (res.rrs() and res.rrs()[0][1] == "10") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert res.rdata() == ["192.0.2.30"]
        assert res.rrs()[0][1] == "10"  # ttl_on_failure: every allowed POP is down
        assert dig(port, "www.example.com", "A", f"+subnet={US}").rdata() == ["192.0.2.10"]
    finally:
        assert http(control, "DELETE", "/overrides/lhr")[0] == 200

    # api's only POP is outside both fences: SERVFAIL for gb-only, NODATA for lab
    assert dig(port, "api.example.com", "A", f"+subnet={GB}").status == "SERVFAIL"
    res = dig(port, "api.example.com", "A", f"+subnet={LAB}")
    assert res.status == "NOERROR" and res.rrs() == [] and res.rdata("AUTHORITY", "SOA")
    assert dig(port, "api.example.com", "A", f"+subnet={US}").rdata() == ["192.0.2.10"]

    status, body = http(control, "GET", "/metrics")
    text = body.decode()
    assert status == 200
    for needle in ('geodns_fenced_answers_total{fence="gb-only",pool="api",result="servfail"}',
                   'geodns_fenced_answers_total{fence="lab",pool="api",result="nodata"}',
                   'geodns_fenced_answers_total{fence="gb-only",pool="www",result="answered"}',
                   'geodns_answers_total{arm="",pool="www",pop="lhr"}'):
        assert needle in text, needle


def test_arms_split_by_block_and_are_labelled(server: ServerProcess,
                                              setup: tuple[Path, Path, Path]) -> None:
    port = server.port
    got: dict[str, str] = {}
    for i in range(64):
        net = f"100.64.{i}.0"
        m = ask(port, make_query("exp.example.com.", "A",
                                 options=[dns.edns.ECSOption(net, 24)]))
        answer = [rd.to_text() for r in m.answer for rd in r]
        assert len(answer) == 1
        got[net] = answer[0]
        ecs = [o for o in m.options if isinstance(o, dns.edns.ECSOption)]
        assert ecs[0].scopelen == 24  # the arm is per client /24
        # sticky: another address of the same /24 gets the same arm
        again = ask(port, make_query("exp.example.com.", "A",
                                     options=[dns.edns.ECSOption(f"100.64.{i}.77", 32)]))
        assert [rd.to_text() for r in again.answer for rd in r] == answer
    canary = sum(1 for a in got.values() if a == "192.0.2.20")
    assert set(got.values()) == {"192.0.2.10", "192.0.2.20"}
    assert 16 <= canary <= 48, canary  # 50/50 by weight

    _, _, qlog = setup
    lines: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if qlog.exists():
            lines = [json.loads(x) for x in qlog.read_text().splitlines()]
            if sum(1 for x in lines if x.get("pool") == "exp") >= 128:
                break
        time.sleep(0.1)
    exp = [x for x in lines if x.get("pool") == "exp"]
    assert len(exp) >= 128
    for x in exp:  # control answers with the pool's own choice (iad), canary with fra
        assert (x["arm"], x["pop"]) in (("control", "iad"), ("canary", "fra")), x
    www = [x for x in lines if x.get("pool") == "www" and x.get("ecs") == GB]
    assert www and all(x.get("fence") == "gb-only" for x in www)

    text = http(server.control_port(), "GET", "/metrics")[1].decode()
    assert 'geodns_answers_total{arm="canary",pool="exp",pop="fra"}' in text
    assert 'geodns_answers_total{arm="control",pool="exp",pop="iad"}' in text


def test_check_explain_simulate(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    cfg, zones, _ = setup
    text = cfg.read_text()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(geodns_cmd(*args), capture_output=True, text=True,
                              timeout=90, cwd=tmp_path)

    r = run("check", "--config", str(cfg), "--zones", str(zones))
    assert r.returncode == 1, r.stdout + r.stderr
    api_pops = line_of(text, 'pops = ["iad"]', "[pools.api]")
    assert f"{cfg}:{api_pops}: pools.api.pops: fence gb-only leaves clients of fixed order " \
        "(iad) no POP (it allows lhr)" in r.stdout
    assert f"{cfg}:{api_pops}: pools.api.pops: fence lab leaves clients" in r.stdout
    assert "they are answered SERVFAIL" in r.stdout and "they are answered NODATA" in r.stdout

    r = run("explain", "www.example.com", "A", "--client", GB, "--config", str(cfg),
            "--zones", str(zones), "--down", "lhr")
    assert r.returncode == 0, r.stderr
    assert "fence gb-only (countries GB) allows lhr" in r.stdout
    assert "pops=lhr fence=gb-only" in r.stdout
    r = run("explain", "exp.example.com", "A", "--client", "100.64.0.0/24", "--config",
            str(cfg), "--zones", str(zones))
    assert r.returncode == 0, r.stderr
    assert "experiment (control 50.0%, canary 50.0%; salt '2026-q4')" in r.stdout
    assert " arm=c" in r.stdout

    clients = tmp_path / "clients.csv"
    clients.write_text(f"{GB},10\n{US},30\n")
    r = run("simulate", "--config", str(cfg), "--clients", str(clients), "--pool", "www",
            "--down", "lhr")
    assert r.returncode == 0, r.stderr
    assert "fence gb-only: 10.0 qps; now lhr 100.0%; scenario lhr 100.0%" in r.stdout
    clients.write_text("".join(f"100.64.{i}.0/24,1\n" for i in range(200)))
    r = run("simulate", "--config", str(cfg), "--clients", str(clients), "--pool", "exp",
            "--json")
    assert r.returncode == 0, r.stderr
    arms = json.loads(r.stdout)["arms"]["exp"]
    assert set(arms) == {"control", "canary"}
    assert 0.35 < arms["canary"]["share"] < 0.65
    assert arms["canary"]["qps"] + arms["control"]["qps"] == pytest.approx(200)
