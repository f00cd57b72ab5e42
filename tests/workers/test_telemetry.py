"""Query log and dnstap with two workers: one writer per node, every answer once.

Workers ship what they would log to the supervisor, whose writers own the files: the
query log rotates cleanly (no line torn or lost, none twice), the dnstap file is one
valid Frame Stream that dnstap-read decodes, and /metrics counts each line once.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dns.message
import pytest

from tests.util import geodns_server

pytestmark = pytest.mark.timeout(240)

ZONE = """$ORIGIN e2e.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
"""

CONFIG = """
[server]
zones = "{zones}"

[querylog]
path = "{qlog}"
max_bytes = 20000
keep = 100

[dnstap]
file = "{tap}"
"""

DNSTAP_READ = shutil.which("dnstap-read")


def metric(control: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{control}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if re.match(rf"{name}(\{{|\s)", line))


def test_workers_log_every_query_once_through_one_writer(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "e2e.test.zone").write_text(ZONE)
    qlog, tap = tmp_path / "query.log", tmp_path / "geodns.dnstap"
    config = tmp_path / "geodns.toml"
    config.write_text(CONFIG.format(zones=zones, qlog=qlog, tap=tap))
    sent = 600
    names = [f"n{i}.e2e.test" for i in range(sent)]
    with geodns_server(zones, ["--config", str(config), "--workers", "2"],
                       ready_timeout=120) as srv:
        control = srv.control_port(timeout=120)
        probes = metric(control, "geodns_queries_total")  # readiness queries so far
        for name in names:  # fresh source ports: the kernel spreads them over both
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(dns.message.make_query(name, "A").to_wire(), ("127.0.0.1", srv.port))
                s.recvfrom(65535)
        deadline = time.monotonic() + 10
        total = probes + sent
        while metric(control, "geodns_querylog_written_total") < total:
            assert time.monotonic() < deadline, "query-log lines not written within 10 s"
            time.sleep(0.1)
        assert metric(control, "geodns_querylog_written_total") == total  # once, not twice
        assert metric(control, "geodns_querylog_dropped_total") == 0
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=30)

    files = sorted(tmp_path.glob("query.log*"))
    assert len(files) > 2, "max_bytes 20000 should have rotated the log several times"
    lines = [line for f in files for line in f.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # no torn line anywhere
    logged = [r["qname"] for r in records if r["qname"].startswith("n")]
    assert sorted(logged) == sorted(f"{n}." for n in names)  # each exactly once
    assert all(r["rcode"] == "NXDOMAIN" for r in records if r["qname"].startswith("n"))

    if DNSTAP_READ is not None:
        out = subprocess.run([DNSTAP_READ, str(tap)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        for kind in ("AQ", "AR"):
            seen = re.findall(rf" {kind} 127\.0\.0\.1:\d+ \S+ \S+ UDP \d+b (n\d+\.e2e\.test)/",
                              out)
            assert sorted(seen) == sorted(n for n in names), kind
