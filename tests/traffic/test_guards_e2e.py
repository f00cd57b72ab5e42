"""End to end with real processes: guards judge drills against the live answer mix.

Pool ``web`` sends three client networks to a, b and c in equal parts, with
``min_up = 2`` and ``max_share = 0.6``.  Draining a would give b two thirds of the
pool: a dry run says so, the drain is refused over HTTP (409, with the figures), and
``force`` lets it through (logged and counted).  Then draining c as well would leave
one POP: refused, by the API and in the admin file, and ``geodns simulate --from ...
--check`` fails the same drill plan with exit status 3.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.servers import geodns_cmd, geodns_server
from tests.traffic.e2e import answer

pytestmark = pytest.mark.timeout(120)

A, B, C = "192.0.2.10", "192.0.2.20", "192.0.2.30"
QNAME = "www.guard.test."
ZONE = """$ORIGIN guard.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  5 IN DYNA web
"""
CONFIG = """
[admin]
state_file = "admin.state"

[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.10"]
capacity = 1000

[pops.b]
lat = 48.9
lon = 2.35
ipv4 = ["192.0.2.20"]
capacity = 1000

[pops.c]
lat = 51.5
lon = -0.1
ipv4 = ["192.0.2.30"]
capacity = 1000

[pools.web]
strategy = "geo"
nets."10.1.0.0/16" = ["a", "b"]
nets."10.2.0.0/16" = ["b", "a"]
nets."10.3.0.0/16" = ["c", "a"]
default = ["a", "b", "c"]
min_up = 2
max_share = 0.6
"""


def put(control: str, body: dict[str, Any], dry_run: bool = False) -> tuple[int, Any]:
    url = control + "/overrides" + ("?dry_run=1" if dry_run else "")
    req = urllib.request.Request(url, method="PUT", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode())


def traffic(port: int) -> None:
    """60 client /24s of each network ask once (the live mix guards predict with)."""
    for net in (1, 2, 3):
        for i in range(60):
            answer(port, QNAME, f"10.{net}.{i}.0", 24)


def first(port: int, net: int) -> str:
    return answer(port, QNAME, f"10.{net}.0.0", 24)[0][0]


def wait(pred: Callable[[], bool], limit: float) -> None:
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start < limit, f"not within {limit}s"
        time.sleep(0.05)


def test_guards_refuse_a_drain_over_http_and_force_breaks_the_glass(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "guard.test.zone").write_text(ZONE)
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(CONFIG)
    admin = tmp_path / "admin.state"
    with geodns_server(zones, ["--config", str(cfg)]) as srv:
        control = f"http://127.0.0.1:{srv.control_port()}"
        traffic(srv.port)
        mix = json.loads(urllib.request.urlopen(control + "/traffic/mix", timeout=5).read())
        assert len(mix["entries"]) == 180 and mix["entries"][0]["pool"] == "web"

        # what would draining a do?  Nothing is applied by a dry run.
        status, report = put(control, {"target": "a", "state": "drain"}, dry_run=True)
        assert status == 200 and report["dry_run"] and not report["allowed"]
        pops = report["pops"]
        assert pops["a"]["now_share"] == pytest.approx(1 / 3)
        assert pops["a"]["scenario_qps"] == 0 and pops["a"]["scenario_state"] == "drain"
        assert pops["b"]["scenario_share"] == pytest.approx(2 / 3)
        assert pops["b"]["scenario_qps"] == pytest.approx(2 * pops["b"]["now_qps"])
        assert report["broken"] == [
            f"max_share 0.6: b predicted 0.67 of pool web "
            f"({report['broken'][0].split('(')[1].split(')')[0]}), now 0.33"]
        assert first(srv.port, 1) == A

        # the drain itself is refused, with the guard and the figures
        status, body = put(control, {"target": "a", "state": "drain"})
        assert status == 409 and not body["ok"]
        assert body["refused"][0].startswith("max_share 0.6: b predicted 0.67 of pool web")
        assert '"force": true' in body["error"]
        assert first(srv.port, 1) == A and not admin.exists()

        # break glass: applied, logged, counted
        status, body = put(control, {"target": "a", "state": "drain", "force": True})
        assert status == 200 and body["force"] is True
        wait(lambda: first(srv.port, 1) == B, 3)
        assert admin.read_text().strip() == "a drain force"
        assert "guard broken by a forced override (break glass): max_share 0.6: b " \
            "predicted 0.67" in srv.stderr_text()
        metrics = urllib.request.urlopen(control + "/metrics", timeout=5).read().decode()
        assert 'geodns_guard_forced_total{guard="max_share"} 1.0' in metrics

        # a second drain would leave one POP: refused by the API ...
        traffic(srv.port)
        status, body = put(control, {"target": "c", "state": "drain"})
        assert status == 409
        assert body["refused"][0] == ("min_up 2: pool web predicted 1 POP serving (b), now "
                                      "2; down or drained: a, c")
        # ... and in the admin file (the file is rejected whole, nothing changes)
        tmp = admin.with_name("admin.tmp")
        tmp.write_text("a drain force\nc drain   # second drill\n")
        tmp.replace(admin)
        wait(lambda: "refused (nothing changed): min_up 2" in srv.stderr_text(), 5)
        assert first(srv.port, 3) == C
        metrics = urllib.request.urlopen(control + "/metrics", timeout=5).read().decode()
        assert 'geodns_guard_refusals_total{guard="min_up"} 2.0' in metrics

        # the same drill plan in CI: simulate against the server's live mix fails it
        plan = subprocess.run(geodns_cmd("simulate", "--config", str(cfg), "--from", control,
                                         "--drain", "c", "--check"),
                              capture_output=True, text=True, timeout=120)
        assert plan.returncode == 3, plan.stderr
        assert "GUARD BROKEN: min_up 2: pool web predicted 1 POP serving (b)" in plan.stdout
        assert "broken: min_up 2" in plan.stderr
        ok = subprocess.run(geodns_cmd("simulate", "--config", str(cfg), "--from", control,
                                       "--check"), capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
