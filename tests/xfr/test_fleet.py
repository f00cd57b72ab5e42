"""A small fleet on loopback: one hidden primary (answers only transfers) and three
geodns secondaries on different ports.  One zone edit must be served by all three
within 2 s of the file being written; the measured times are printed (run with
``pytest -s tests/xfr/test_fleet.py``) and quoted in README "Running a fleet"."""

from __future__ import annotations

import contextlib
import signal
import statistics
import time
from collections.abc import Callable
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
        primary = stack.enter_context(geodns(primary_conf, zones, pport,
                                             workdir=tmp_path / "primary", ready_name=ORIGIN,
                                             watch_interval=0.1))
        nodes = [stack.enter_context(geodns(secondary_conf, None, port,
                                            workdir=tmp_path / f"s{i}"))
                 for i, port in enumerate(ports)]
        for node in nodes:
            wait_until(lambda n=node: serial(n.port, ORIGIN) == 1, 10)

        def edit_served_by_all(edit: int, trigger: Callable[[], None]) -> float:
            address = f"192.0.2.{edit}"
            write(zonefile, zone(ORIGIN, edit, f"www IN A {address}\n"))
            trigger()
            t0 = time.monotonic()
            for node in nodes:
                wait_until(lambda n=node, a=address: answer(n.port, "www." + ORIGIN)
                           == ("NOERROR", [a]), 2.0 - (time.monotonic() - t0), step=0.01)
            return time.monotonic() - t0

        # An operator edits the file: the primary's file watch (0.1 s poll, 0.1 s settle)
        watched = [edit_served_by_all(edit, lambda: None) for edit in range(2, 2 + EDITS)]
        # ... or edits it and sends SIGHUP: the time of the transfer machinery alone
        hup = [edit_served_by_all(edit, lambda: primary.proc.send_signal(signal.SIGHUP))
               for edit in range(2 + EDITS, 2 + 2 * EDITS)]
        for label, times in (("file watch", watched), ("SIGHUP", hup)):
            print(f"\nfleet ({label}): an edit served by all 3 secondaries after "
                  f"{', '.join(f'{t:.3f}' for t in times)} s (median "
                  f"{statistics.median(times):.3f} s, max {max(times):.3f} s)")
        assert max(watched + hup) < 2.0
        for node in nodes:
            assert "IXFR from 127.0.0.1" in node.stderr_text()


def test_a_chain_primary_to_secondary_to_secondary(tmp_path: Path) -> None:
    """A node that is a secondary and also a primary (`[transfer]`) serves what it
    received on: its journal gives the next node IXFR, its NOTIFY starts it."""
    zones = tmp_path / "primary" / "zones"
    zones.mkdir(parents=True)
    zonefile = zones / "fleet.test.zone"
    write(zonefile, zone(ORIGIN, 1, "www IN A 192.0.2.1\n"))
    pport, mport, lport = free_port(), free_port(), free_port()
    primary_conf = f"""{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = ["127.0.0.1:{mport}"]
"""
    middle_conf = f"""{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = ["127.0.0.1:{lport}"]

[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{pport}"]
key = "{KEY}"
"""
    last_conf = f"""{tsig_toml()}
[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{mport}"]
key = "{KEY}"
"""
    with geodns(primary_conf, zones, pport, workdir=tmp_path / "primary",
                ready_name=ORIGIN) as primary, \
            geodns(middle_conf, None, mport, workdir=tmp_path / "middle"), \
            geodns(last_conf, None, lport, workdir=tmp_path / "last") as last:
        wait_until(lambda: serial(last.port, ORIGIN) == 1, 10)
        write(zonefile, zone(ORIGIN, 2, "www IN A 192.0.2.2\n"))
        primary.proc.send_signal(signal.SIGHUP)
        took = wait_until(lambda: answer(last.port, "www." + ORIGIN)
                          == ("NOERROR", ["192.0.2.2"]), 5)
        print(f"\nchain of two: an edit served by the second secondary after {took:.3f} s")
        assert "IXFR from 127.0.0.1" in last.stderr_text()
