"""End to end with real processes: a latency map swapped while serving moves the clients
its new rows say are faster elsewhere (past the margin), and nobody else; a bad map
changes nothing and is reported with file:line (at check, start and reload); a map
older than max_age hands every client to the fallback, and back when it is fresh."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from geodns.traffic.latency_map import write_latency_map
from tests.helpers.servers import geodns_cmd, geodns_server
from tests.traffic.e2e import answer

pytestmark = pytest.mark.timeout(180)

A, B, C = "192.0.2.10", "192.0.2.20", "192.0.2.30"
QNAME = "www.lat.test."
ZONE = """$ORIGIN lat.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  5 IN DYNA lat
"""
CONFIG = """
[server]
http = ""

[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.10"]
ipv6 = ["2001:db8:a::1"]

[pops.b]
lat = 48.9
lon = 2.35
ipv4 = ["192.0.2.20"]

[pops.c]
lat = 51.5
lon = -0.1
ipv4 = ["192.0.2.30"]
ipv6 = ["2001:db8:c::1"]

[pools.lat]
strategy = "latency"
map = "rtt.csv"
fallback = "failover"
pops = ["a", "b", "c"]
margin = "10%"
max_age = 3600
ttl = 5
"""
MAP1 = """prefix,pop,rtt_ms,samples
10.1.0.0/16,a,20,50
10.1.0.0/16,b,50,50
10.2.0.0/16,b,10,50
10.2.0.0/16,a,40,50
2001:db8:1::/48,c,15,20
2001:db8:1::/48,a,30,20
"""
# 10.1: b now much faster (moves); 10.2: a 5 % faster (within the margin: stays on b);
# a new row for 10.3.
MAP2 = """prefix,pop,rtt_ms,samples
10.1.0.0/16,b,5,50
10.1.0.0/16,a,20,50
10.2.0.0/16,a,9.5,50
10.2.0.0/16,b,10,50
10.3.0.0/16,c,5,50
10.3.0.0/16,a,30,50
2001:db8:1::/48,c,15,20
2001:db8:1::/48,a,30,20
"""
BAD = """prefix,pop,rtt_ms,samples
10.1.0.0/16,b,5,50
10.1.0.1/16,a,20,50
10.2.0.0/16,zz,1,50
"""
PROBES = [("10.1.5.0", "A"), ("10.2.5.0", "A"), ("10.3.0.0", "A"), ("2001:db8:1::", "AAAA")]


def now_answers(port: int) -> list[str]:
    out = []
    for client, qtype in PROBES:
        addresses, _ = answer(port, QNAME, client, 24 if qtype == "A" else 56, qtype)
        out.append(",".join(addresses))
    return out


def wait_until(pred: Callable[[], bool], limit: float) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit}s")
        time.sleep(0.02)
    return time.monotonic() - start


class Watch:
    """Queries the probes without pause in a thread; every answer must be one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.seen: list[tuple[float, list[str]]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                got = now_answers(self.port)
            except Exception as exc:  # a lost or bad answer
                self.errors.append(repr(exc))
                continue
            if any(not a for a in got):
                self.errors.append(f"empty answer {got}")
            self.seen.append((time.monotonic(), got))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_map_swapped_while_serving(tmp_path: Path,
                                   report_line: Callable[[str], None]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "lat.test.zone").write_text(ZONE)
    rtt = tmp_path / "rtt.csv"
    write_latency_map(rtt, MAP1)
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(CONFIG)
    with geodns_server(zones, ["--config", str(cfg)]) as srv:
        assert now_answers(srv.port) == [A, B, A, "2001:db8:c::1"]
        # scope: the map prefix, or wider where the neighbours answer alike (10.0.0.0/16
        # gets a from the fallback, like 10.1.0.0/16 from the map)
        assert answer(srv.port, QNAME, "10.2.5.0", 24) == ([B], 16)
        assert answer(srv.port, QNAME, "10.1.5.0", 24) == ([A], 15)

        watch = Watch(srv.port)
        try:
            time.sleep(0.3)
            t0 = time.monotonic()
            write_latency_map(rtt, MAP2)
            moved = wait_until(lambda: now_answers(srv.port) == [B, B, C, "2001:db8:c::1"],
                               5.0)
            time.sleep(0.3)
        finally:
            watch.close()
        assert watch.errors == []
        # every answer during the swap was the old or the new one, per probe
        for _, got in watch.seen:
            assert got[0] in (A, B) and got[1] == B and got[2] in (A, C), got
        switch = [t - t0 for t, got in watch.seen if got[0] == B]
        answered = len(watch.seen) * len(PROBES)
        assert "latency map" in srv.stderr_text() and "reloaded, 4 prefixes" in \
            srv.stderr_text()

        # a bad map: nothing changes, every problem located, the old map keeps serving
        write_latency_map(rtt, BAD)
        wait_until(lambda: "rejected" in srv.stderr_text(), 5.0)
        assert now_answers(srv.port) == [B, B, C, "2001:db8:c::1"]
        log = srv.stderr_text()
        assert f"{rtt}:3: prefix '10.1.0.1/16' has host bits set (did you mean " \
               "'10.1.0.0/16'?)" in log
        assert f"{rtt}:4: unknown POP 'zz' (POPs: a, b, c)" in log
        check = subprocess.run(geodns_cmd("check", "--config", str(cfg)),
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 1
        assert f"{rtt}:3: prefix '10.1.0.1/16' has host bits set" in check.stdout
        start = subprocess.run(geodns_cmd("serve", "--config", str(cfg), "--listen",
                                          "127.0.0.1:0", "--http", "off"),
                               capture_output=True, text=True, timeout=60)
        assert start.returncode == 1 and f"{rtt}:4: unknown POP 'zz'" in start.stderr
        assert "not starting" in start.stderr

        # older than max_age: the fallback (failover: a first) answers everyone
        write_latency_map(rtt, MAP2)
        wait_until(lambda: now_answers(srv.port)[2] == C, 5.0)
        old = time.time() - 7200
        os.utime(rtt, (old, old))
        stale = wait_until(lambda: now_answers(srv.port) == [A, A, A, "2001:db8:a::1"], 5.0)
        assert "is older than max_age 3600s: pool lat answers by its fallback" in \
            srv.stderr_text()
        os.utime(rtt, None)
        wait_until(lambda: now_answers(srv.port) == [B, B, C, "2001:db8:c::1"], 5.0)
    report_line(f"latency map swap: clients moved {moved:.2f}s after the new file was "
                f"renamed into place (first moved answer {min(switch):.2f}s; the file is "
                f"polled every second); {answered} answers during the swap, none lost or "
                f"wrong; stale map -> fallback in {stale:.2f}s")
