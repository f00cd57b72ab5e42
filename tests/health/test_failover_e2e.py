"""End to end with ``dig``: a real ``geodns serve`` fails over when a POP's backend dies.

Two POPs, ``a`` (answers 192.0.2.10) and ``b`` (192.0.2.20); the pool maps the test
client (127.0.0.0/8) to ``[a, b]``, so the first healthy one answers.  Their health
checks probe HTTP backends on 127.0.0.1 random ports started by the test (the
192.0.2.x addresses are answers only, never probed).  We kill a's backend and time
how long until dig sees b, revive it and time the way back, then drive the
admin-state file: drain/force-down answer at the next poll, a malformed file changes
nothing and is reported on the server's stderr.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.health.backends import ThreadedHttpBackend
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import geodns_server

DIG = shutil.which("dig")
WIRED = "HealthMonitor" in (REPO_ROOT / "geodns" / "server.py").read_text()

pytestmark = [
    pytest.mark.skipif(DIG is None, reason="dig (Debian package bind9-dnsutils) not installed"),
    pytest.mark.skipif(not WIRED, reason="health monitor not wired into `geodns serve` yet "
                       "(geodns/server.py does not use HealthMonitor)"),
    pytest.mark.timeout(90),
]

INTERVAL = 0.3
TIMEOUT = 0.2
FALL = 2
RISE = 2
A, B = "192.0.2.10", "192.0.2.20"
ADMIN_POLL = 1.0  # the admin-state file is polled every second

ZONE = """$ORIGIN e2e.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  30 IN DYNA web
"""

CONFIG = """
[server]
http = ""

[admin]
state_file = "admin.state"

[checks.a_web]
type = "http"
address = "127.0.0.1"
port = {port_a}
path = "/health"
expect_body = "healthy"
interval = {interval}
timeout = {timeout}
fall = {fall}
rise = {rise}

[checks.b_web]
type = "http"
address = "127.0.0.1"
port = {port_b}
path = "/health"
interval = {interval}
timeout = {timeout}
fall = {fall}
rise = {rise}

[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["{a}"]
health = "a_web"

[pops.b]
lat = 1.35
lon = 103.8
ipv4 = ["{b}"]
health = "b_web"

[pools.web]
strategy = "geo"
ttl = 5
ttl_on_failure = 5
nets."127.0.0.0/8" = ["a", "b"]
default = ["b"]
"""


def dig(port: int) -> list[str]:
    out = subprocess.run(
        [DIG or "dig", "@127.0.0.1", "-p", str(port), "www.e2e.test", "A", "+short",
         "+tries=1", "+time=2", "+norecurse"],
        capture_output=True, text=True, timeout=10)
    return [line for line in out.stdout.split() if line]


def wait_answer(port: int, want: str, limit: float) -> float:
    """Poll with dig until it answers ``want``; seconds taken (fails after ``limit``)."""
    start = time.monotonic()
    got: list[str] = []
    while time.monotonic() - start < limit:
        got = dig(port)
        if got == [want]:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"still answering {got} after {limit:.1f}s (wanted {want})")


def hold_answer(port: int, want: str, duration: float) -> None:
    """The answer stays ``want`` for ``duration`` seconds."""
    end = time.monotonic() + duration
    while time.monotonic() < end:
        assert dig(port) == [want]
        time.sleep(0.1)


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_failover_recovery_and_admin_overrides(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "e2e.test.zone").write_text(ZONE)
    admin = tmp_path / "admin.state"
    with ThreadedHttpBackend() as backend_a, ThreadedHttpBackend() as backend_b:
        cfg = tmp_path / "geodns.toml"
        cfg.write_text(CONFIG.format(port_a=backend_a.port, port_b=backend_b.port, a=A, b=B,
                                     interval=INTERVAL, timeout=TIMEOUT, fall=FALL, rise=RISE))
        with geodns_server(zones, ["--config", str(cfg)]) as srv:
            # both healthy: the client's network maps to a first
            wait_answer(srv.port, A, 3.0)
            assert backend_a.requests >= 1 and backend_b.requests >= 1

            # a's backend dies: b answers within interval * fall + timeout + 1 s
            backend_a.kill()
            failover = wait_answer(srv.port, B, 10.0)
            # a comes back: a answers again once it passed `rise` probes
            backend_a.revive()
            recovery = wait_answer(srv.port, A, 10.0)
            print(f"\nfailover {failover:.2f}s (bound {INTERVAL * FALL + TIMEOUT + 1:.2f}s), "
                  f"recovery {recovery:.2f}s (interval {INTERVAL}s, timeout {TIMEOUT}s, "
                  f"fall {FALL}, rise {RISE})")
            assert failover <= INTERVAL * FALL + TIMEOUT + 1.0
            assert recovery <= INTERVAL * RISE * 1.1 + TIMEOUT + 1.0


            # drain through the admin-state file: the next poll moves the answer
            write(admin, "a drain   # maintenance\n")
            drained = wait_answer(srv.port, B, ADMIN_POLL + 1.0)
            # a malformed file changes nothing and is reported on stderr
            write(admin, "a up\nb dwn\n")
            hold_answer(srv.port, B, ADMIN_POLL + 0.3)
            problem = f"{admin}:2: unknown state 'dwn' (expected up, down or drain)"
            assert problem in srv.stderr_text(), srv.stderr_text()[-3000:]
            # force b down instead: a (healthy, no longer drained) answers at once
            write(admin, "b down\n")
            forced = wait_answer(srv.port, A, ADMIN_POLL + 1.0)
            # force a's address down (the rewrite lifts b's override): b answers
            write(admin, "*/192.0.2.10 down\n")
            addr_forced = wait_answer(srv.port, B, ADMIN_POLL + 1.0)
            # deleting the file clears every override
            admin.unlink()
            cleared = wait_answer(srv.port, A, ADMIN_POLL + 1.0)
            print(f"admin file: drain {drained:.2f}s, force-down {forced:.2f}s, "
                  f"address force-down {addr_forced:.2f}s, cleared {cleared:.2f}s")

            stderr = srv.stderr_text()
            assert "health state change target=a old=up new=down" in stderr
            assert "health state change target=a old=down new=up" in stderr
            assert srv.alive()
