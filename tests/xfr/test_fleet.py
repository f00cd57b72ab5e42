"""A small fleet on loopback: one hidden primary (answers only transfers) and three
geodns secondaries on different ports.  One zone edit must be served by all three
within 2 s of the file being written; the measured times are printed (run with
``pytest -s tests/xfr/test_fleet.py``) and quoted in README "Running a fleet"."""

from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path

import pytest

from tests.xfr.servers import (
    KEY,
    answer,
    free_port,
    geodns,
    serial,
    tsig_toml,
    wait_until,
    write,
    zone,
)

pytestmark = pytest.mark.timeout(120)

ORIGIN = "fleet.test."
EDITS = 5


def test_one_edit_reaches_three_secondaries_within_two_seconds(tmp_path: Path) -> None:
    zones = tmp_path / "primary" / "zones"
    zones.mkdir(parents=True)
    zonefile = zones / "fleet.test.zone"
    write(zonefile, zone(ORIGIN, 1, "www IN A 192.0.2.1\n"))
    pport = free_port()
    ports = [free_port() for _ in range(3)]
    primary_conf = f"""{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = [{", ".join(f'"127.0.0.1:{p}"' for p in ports)}]
"""
    secondary_conf = f"""{tsig_toml()}
[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{pport}"]
key = "{KEY}"
"""
    with contextlib.ExitStack() as stack:
        stack.enter_context(geodns(primary_conf, zones, pport, workdir=tmp_path / "primary",
                                   ready_name=ORIGIN, watch_interval=0.1))
        nodes = [stack.enter_context(geodns(secondary_conf, None, port,
                                            workdir=tmp_path / f"s{i}"))
                 for i, port in enumerate(ports)]
        for node in nodes:
            wait_until(lambda n=node: serial(n.port, ORIGIN) == 1, 10)

        times = []
        for edit in range(2, 2 + EDITS):
            address = f"192.0.2.{edit}"
            write(zonefile, zone(ORIGIN, edit, f"www IN A {address}\n"))
            t0 = time.monotonic()
            for node in nodes:
                wait_until(lambda n=node, a=address: answer(n.port, "www." + ORIGIN)
                           == ("NOERROR", [a]), 2.0 - (time.monotonic() - t0), step=0.01)
            times.append(time.monotonic() - t0)
        print(f"\nfleet: an edit served by all 3 secondaries after "
              f"{', '.join(f'{t:.2f}' for t in times)} s "
              f"(median {statistics.median(times):.2f} s, max {max(times):.2f} s; "
              f"primary file watch interval 0.1 s)")
        assert max(times) < 2.0
        for node in nodes:
            assert "IXFR from 127.0.0.1" in node.stderr_text()
