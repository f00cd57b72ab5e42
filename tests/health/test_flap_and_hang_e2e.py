"""With a real `geodns serve`: a flapping target never moves the answer, and a check
that hangs forever never delays a DNS answer (the probes share the server's loop)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.health.backends import ThreadedHttpBackend
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server

pytestmark = pytest.mark.timeout(90)

INTERVAL, TIMEOUT = 0.2, 0.15

ZONE = """$ORIGIN flap.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  30 IN DYNA web
slow 30 IN DYNA slow
"""

CONFIG = """
[server]
http = ""

[checks.flappy]
type = "http"
address = "127.0.0.1"
port = {flappy}
path = "/health"
interval = {interval}
timeout = {timeout}
fall = 2
rise = 2

[checks.stuck]
type = "http"
address = "127.0.0.1"
port = {stuck}
path = "/health"
interval = {interval}
timeout = {timeout}
fall = 2
rise = 2

[pops.a]
lat = 0.0
lon = 0.0
ipv4 = ["192.0.2.10"]
health = "flappy"

[pops.h]
lat = 0.0
lon = 0.0
ipv4 = ["192.0.2.30"]
health = "stuck"

[pops.c]
lat = 0.0
lon = 0.0
ipv4 = ["192.0.2.20"]

[pools.web]
strategy = "failover"
pops = ["a", "c"]

[pools.slow]
strategy = "failover"
pops = ["h", "c"]
"""


def test_flapping_target_keeps_its_answer_and_hung_check_costs_nothing(
        tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "flap.test.zone").write_text(ZONE)
    with ThreadedHttpBackend() as flappy, ThreadedHttpBackend() as stuck:
        flappy.set_mode("alternate")  # pass, fail, pass, fail, ... from the first probe
        stuck.set_mode("hang")  # never answers: every probe runs into its timeout
        cfg = tmp_path / "geodns.toml"
        cfg.write_text(CONFIG.format(flappy=flappy.port, stuck=stuck.port,
                                     interval=INTERVAL, timeout=TIMEOUT))
        with geodns_server(zones, ["--config", str(cfg)]) as srv:
            answers: set[str] = set()
            worst = 0.0
            deadline = time.monotonic() + 15 * INTERVAL
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                m = ask(srv.port, make_query("www.flap.test.", "A"))
                worst = max(worst, time.monotonic() - t0)
                answers |= {rd.to_text() for r in m.answer for rd in r}
                time.sleep(0.02)
            probes = flappy.requests
            slow = ask(srv.port, make_query("slow.flap.test.", "A"))
            stderr = srv.stderr_text()
    assert probes >= 8, f"only {probes} probes: the check did not run at its interval"
    assert answers == {"192.0.2.10"}, answers  # hysteresis: never moved to c
    assert "target=a" not in stderr  # and never logged a state change
    # The hung target went down through timeouts, without holding up any answer.
    assert [rd.to_text() for r in slow.answer for rd in r] == ["192.0.2.20"]
    assert 'target=h old=up new=down reason="timeout' in stderr
    assert worst < TIMEOUT, f"a DNS answer took {worst:.3f}s while a check was hanging"
