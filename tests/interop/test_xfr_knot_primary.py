"""Knot DNS as the primary, geodns as its secondary (RFC 1995, 1996, 5936, 8945).

* a change on Knot reaches geodns through NOTIFY and IXFR (not the refresh timer:
  the SOA refresh is an hour);
* a TSIG mismatch (same key name, other secret) is refused both ways and logged,
  and nothing is transferred;
* with Knot stopped geodns keeps answering until the SOA expire has passed since its
  last successful refresh, then answers SERVFAIL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.knot import knotd_path
from tests.xfr.servers import (
    KEY,
    WRONG_SECRET,
    answer,
    free_port,
    geodns,
    knot,
    metric,
    metrics,
    serial,
    tsig_toml,
    wait_until,
    write,
    zone,
)

pytestmark = [
    pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) not installed"),
    pytest.mark.timeout(90),
]

ORIGIN = "knot.test."
BODY = "www IN A 192.0.2.10\nmail IN A 192.0.2.25\n"


def knot_primary(zonefile: Path, geodns_port: int):  # type: ignore[no-untyped-def]
    """Knot serving ``zonefile``, journaling its changes (so it can answer IXFR),
    sending NOTIFY to geodns and allowing transfers signed with the key."""
    def body(rundir: Path) -> str:
        return f"""\
remote:
  - id: geodns
    address: 127.0.0.1@{geodns_port}
    key: {KEY}
acl:
  - id: xfr
    address: 127.0.0.1
    key: {KEY}
    action: transfer
template:
  - id: default
    storage: "{rundir}"
    zonefile-sync: -1
    zonefile-load: difference
    journal-content: changes
    semantic-checks: off
zone:
  - domain: {ORIGIN}
    file: "{zonefile}"
    notify: geodns
    acl: xfr
"""
    return body


def secondary_config(knot_port: int, tmp: Path, secret: str | None = None) -> str:
    key_toml = tsig_toml(secret) if secret else tsig_toml()
    return f"""{key_toml}
[transfer]
state_dir = "{tmp / 'state'}"

[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{knot_port}"]
key = "{KEY}"
"""


@pytest.fixture
def zonefile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "knot.test.zone"
    write(path, zone(ORIGIN, 1, BODY))
    yield path


def test_change_on_knot_reaches_geodns_by_notify_and_ixfr(tmp_path: Path,
                                                          zonefile: Path) -> None:
    gport = free_port()
    with knot(knot_primary(zonefile, gport), free_port(), ORIGIN) as (kd, _):
        with geodns(secondary_config(kd.port, tmp_path), port=gport,
                    workdir=tmp_path / "g") as g:
            wait_until(lambda: serial(g.port, ORIGIN) == 1, 10)
            assert answer(g.port, "www." + ORIGIN) == ("NOERROR", ["192.0.2.10"])
            assert "AXFR from 127.0.0.1" in g.stderr_text()

            write(zonefile, zone(ORIGIN, 2, BODY.replace("192.0.2.10", "192.0.2.11")
                                 + "new IN TXT \"added\"\n"))
            kd.proc.send_signal(1)  # SIGHUP: Knot reloads the file and journals the diff
            took = wait_until(lambda: serial(g.port, ORIGIN) == 2, 10)
            print(f"\nKnot edit (SIGHUP) served by geodns after {took:.3f} s")
            assert took < 5  # the refresh timer is an hour: this was the NOTIFY
            assert answer(g.port, "www." + ORIGIN) == ("NOERROR", ["192.0.2.11"])
            assert answer(g.port, "new." + ORIGIN, "TXT") == ("NOERROR", ['"added"'])
            assert answer(g.port, "mail." + ORIGIN) == ("NOERROR", ["192.0.2.25"])
            log = g.stderr_text()
            assert f"NOTIFY for {ORIGIN} from 127.0.0.1 (serial 2): refreshing" in log
            assert f"secondary zone {ORIGIN}: serial 1 -> 2 (IXFR from 127.0.0.1" in log
            m = metrics(g)
            assert metric(m, "geodns_secondary_serial", zone=ORIGIN) == 2
            assert metric(m, "geodns_secondary_expired", zone=ORIGIN) == 0
            refreshed = metric(m, "geodns_secondary_last_refresh_timestamp_seconds",
                               zone=ORIGIN)
            assert refreshed is not None and abs(refreshed - time.time()) < 30

        # A restart serves the copy from disk at once, even with the primary unreachable.
        kd.proc.send_signal(19)  # SIGSTOP
        try:
            with geodns(secondary_config(kd.port, tmp_path), port=gport,
                        workdir=tmp_path / "g") as g:
                assert answer(g.port, "www." + ORIGIN) == ("NOERROR", ["192.0.2.11"])
                assert f"serial 2 from {tmp_path / 'state'}" in g.stderr_text()
        finally:
            kd.proc.send_signal(18)  # SIGCONT


def test_tsig_mismatch_is_refused_and_logged(tmp_path: Path, zonefile: Path) -> None:
    gport = free_port()
    with knot(knot_primary(zonefile, gport), free_port(), ORIGIN) as (kd, _), \
            geodns(secondary_config(kd.port, tmp_path, WRONG_SECRET), port=gport,
                   workdir=tmp_path / "g") as g:
        # Our signed SOA query: Knot answers NOTAUTH/BADSIG, so nothing is transferred.
        wait_until(lambda: "TSIG error from the primary: BADSIG" in g.stderr_text(), 10)
        write(zonefile, zone(ORIGIN, 2, BODY))
        kd.proc.send_signal(1)
        # Knot's NOTIFY, signed with the other secret: refused with BADSIG.
        wait_until(lambda: f"NOTIFY for {ORIGIN} from 127.0.0.1 refused: TSIG BADSIG"
                   in g.stderr_text(), 10)
        assert answer(g.port, "www." + ORIGIN)[0] == "REFUSED"  # never transferred
        assert "AXFR from" not in g.stderr_text()
        m = metrics(g)
        failures = metric(m, "geodns_secondary_refresh_failures_total", zone=ORIGIN)
        assert failures is not None and failures >= 1


def test_knot_gone_served_until_expire_then_servfail(tmp_path: Path) -> None:
    path = tmp_path / "knot.test.zone"
    write(path, zone(ORIGIN, 1, BODY, refresh=1, retry=1, expire=4))
    gport = free_port()
    with knot(knot_primary(path, gport), free_port(), ORIGIN) as (kd, _), \
            geodns(secondary_config(kd.port, tmp_path), port=gport,
                   workdir=tmp_path / "g") as g:
        wait_until(lambda: serial(g.port, ORIGIN) == 1, 10)
        time.sleep(1.5)  # a refresh or two against the live primary
        kd.proc.terminate()
        kd.proc.wait(5)
        stopped = time.time()
        time.sleep(0.2)
        last_ok = metric(metrics(g), "geodns_secondary_last_refresh_timestamp_seconds",
                         zone=ORIGIN)
        assert last_ok is not None and stopped - 3 < last_ok <= stopped
        # Poll: NOERROR until SOA expire (4 s) after the last good refresh, then SERVFAIL.
        last_noerror = first_servfail = None
        while time.time() < last_ok + 10 and first_servfail is None:
            rcode = answer(g.port, "www." + ORIGIN)[0]
            if rcode == "NOERROR":
                last_noerror = time.time()
            elif rcode == "SERVFAIL":
                first_servfail = time.time()
            time.sleep(0.05)
        assert last_noerror is not None and first_servfail is not None
        print(f"\nKnot stopped: geodns answered until {last_noerror - stopped:.2f} s later, "
              f"SERVFAIL from {first_servfail - last_ok:.2f} s after its last good refresh "
              f"(SOA expire 4 s, refresh 1 s)")
        assert last_noerror > last_ok + 3.5  # served for the whole expire time ...
        assert first_servfail < last_ok + 5.5  # ... and not much longer
        assert answer(g.port, ORIGIN, "SOA")[0] == "SERVFAIL"
        assert "answering SERVFAIL until a refresh succeeds" in g.stderr_text()
        m = metrics(g)
        assert metric(m, "geodns_secondary_expired", zone=ORIGIN) == 1
        assert (metric(m, "geodns_secondary_refresh_failures_total", zone=ORIGIN) or 0) >= 1
