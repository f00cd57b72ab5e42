"""Reloads that never hurt: all or nothing, old zones kept on error, SIGHUP and file watch."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode

from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server

ZONE = """$ORIGIN reload.test.
$TTL 60
@ IN SOA ns1 hm {serial} 7200 3600 1209600 300
  IN NS ns1
ns1 IN A 192.0.2.1
www IN A {addr}
"""
OTHER = """$ORIGIN other.test.
$TTL 60
@ IN SOA ns1 hm 1 7200 3600 1209600 300
  IN NS ns1
ns1 IN A 192.0.2.1
www IN A 192.0.2.77
"""


def answer(port: int, name: str = "www.reload.test.") -> tuple[str, list[str]]:
    m = ask(port, make_query(name, "A"))
    return dns.rcode.to_text(m.rcode()), sorted(rd.to_text() for r in m.answer for rd in r)


def wait_for(port: int, expected: tuple[str, list[str]], name: str = "www.reload.test.",
             timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    got = answer(port, name)
    while got != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        got = answer(port, name)
    assert got == expected


def write(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")  # hidden: never read as a zone
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_watch_reloads_and_bad_zone_keeps_old_state(tmp_path: Path) -> None:
    zone = tmp_path / "reload.test.zone"
    write(zone, ZONE.format(serial=1, addr="192.0.2.10"))
    with geodns_server(tmp_path, ["--watch-interval", "0.2"]) as srv:
        assert answer(srv.port) == ("NOERROR", ["192.0.2.10"])
        write(zone, ZONE.format(serial=2, addr="192.0.2.20"))
        wait_for(srv.port, ("NOERROR", ["192.0.2.20"]))

        # One good and one broken file: nothing of the change is served.
        write(tmp_path / "other.test.zone", OTHER)
        write(zone, ZONE.format(serial=3, addr="not-an-ip"))
        deadline = time.monotonic() + 15  # the refused reload is logged (slow under load)
        while "still serving the previous zones" not in srv.stderr_text() \
                and time.monotonic() < deadline:
            assert answer(srv.port) == ("NOERROR", ["192.0.2.20"])
            time.sleep(0.1)
        assert answer(srv.port) == ("NOERROR", ["192.0.2.20"])
        assert answer(srv.port, "www.other.test.")[0] == "REFUSED"
        assert srv.alive()
        assert "reload.test.zone:6: " in srv.stderr_text()
        assert "still serving the previous zones" in srv.stderr_text()

        # Fixing it brings in both files at once.
        write(zone, ZONE.format(serial=4, addr="192.0.2.40"))
        wait_for(srv.port, ("NOERROR", ["192.0.2.40"]))
        assert answer(srv.port, "www.other.test.") == ("NOERROR", ["192.0.2.77"])


def test_sighup_reloads(tmp_path: Path) -> None:
    zone = tmp_path / "reload.test.zone"
    write(zone, ZONE.format(serial=1, addr="192.0.2.10"))
    # A long poll interval so only the signal can cause the reload.
    with geodns_server(tmp_path, ["--watch-interval", "3600"]) as srv:
        write(zone, ZONE.format(serial=2, addr="192.0.2.20"))
        time.sleep(0.3)
        assert answer(srv.port) == ("NOERROR", ["192.0.2.10"])
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(srv.port, ("NOERROR", ["192.0.2.20"]))


CHAIN_A = """$ORIGIN reload.test.
$TTL 60
@ IN SOA ns1 hm {gen} 7200 3600 1209600 300
  IN NS ns1
ns1 IN A 192.0.2.1
www IN CNAME v{gen}.other.test.
"""
CHAIN_B = """$ORIGIN other.test.
$TTL 60
@ IN SOA ns1 hm {gen} 7200 3600 1209600 300
  IN NS ns1
ns1 IN A 192.0.2.1
v{gen} IN A 192.0.2.{gen}
"""


def test_no_query_sees_half_a_reload(tmp_path: Path) -> None:
    """One answer spans two zones changed together: it must never mix generations."""
    a, b = tmp_path / "reload.test.zone", tmp_path / "other.test.zone"
    write(a, CHAIN_A.format(gen=1))
    write(b, CHAIN_B.format(gen=1))
    with geodns_server(tmp_path, ["--watch-interval", "3600"]) as srv:
        results: list[tuple[str, list[str]]] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                results.append(answer(srv.port))

        t = threading.Thread(target=poll)
        t.start()
        try:
            for gen in range(2, 12):
                write(a, CHAIN_A.format(gen=gen))
                write(b, CHAIN_B.format(gen=gen))
                srv.proc.send_signal(signal.SIGHUP)
                time.sleep(0.15)
        finally:
            stop.set()
            t.join()
        assert len(results) > 50
        gens = [r[1][-1] for r in results]
        assert all(rcode == "NOERROR" for rcode, _ in results), results
        assert all(len(rrs) == 2 for _, rrs in results)
        assert len(set(gens)) > 3  # reloads really happened while we were asking


def test_a_reload_that_would_drop_every_zone_is_refused(tmp_path: Path) -> None:
    """Issue 9: an emptied zones directory must not turn every answer into REFUSED."""
    zone = tmp_path / "reload.test.zone"
    write(zone, ZONE.format(serial=1, addr="192.0.2.10"))
    with geodns_server(tmp_path, ["--watch-interval", "0.2"]) as srv:
        zone.unlink()
        deadline = time.monotonic() + 5
        while "no zone files left" not in srv.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "no zone files left" in srv.stderr_text()
        assert answer(srv.port) == ("NOERROR", ["192.0.2.10"])  # still the old zones


def test_files_that_never_settle_are_reloaded_anyway(tmp_path: Path) -> None:
    """Issue 9: edits arriving faster than the watch interval must not postpone the
    reload for ever."""
    zone = tmp_path / "reload.test.zone"
    write(zone, ZONE.format(serial=1, addr="192.0.2.10"))
    noise = tmp_path / "noise.test.zone"
    with geodns_server(tmp_path, ["--watch-interval", "0.1"]) as srv:
        write(zone, ZONE.format(serial=2, addr="192.0.2.20"))
        stop = threading.Event()

        def churn() -> None:  # another zone file, rewritten faster than each poll
            i = 0
            while not stop.is_set():
                write(noise, OTHER.replace("other.test", "noise.test").replace(" 1 ", f" {i} "))
                i += 1
                time.sleep(0.03)

        t = threading.Thread(target=churn)
        t.start()
        try:
            wait_for(srv.port, ("NOERROR", ["192.0.2.20"]), timeout=6.0)
        finally:
            stop.set()
            t.join()


def test_include_of_something_that_is_not_a_regular_file(tmp_path: Path) -> None:
    """Issue 9: $INCLUDE of a FIFO or /dev/zero is a problem, never a hang."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/zero")):
        zone = tmp_path / "inc.test.zone"
        zone.write_text("$ORIGIN inc.test.\n$TTL 60\n@ IN SOA ns1 hm 1 2 3 4 5\n@ IN NS ns1\n"
                        f"ns1 IN A 192.0.2.1\n$INCLUDE {target}\n")
        from geodns.zones.load import ZoneFileError
        from geodns.zones.loader import ZoneLoader

        started = time.monotonic()
        try:
            ZoneLoader(str(tmp_path)).load()
        except ZoneFileError as exc:
            assert "not a regular file" in " ".join(exc.problems)
            assert exc.problems[0].endswith("is not a regular file") or ":6:" in exc.problems[0]
        else:
            raise AssertionError("the include was accepted")
        assert time.monotonic() - started < 5
        zone.unlink()


def test_include_files_are_watched(tmp_path: Path) -> None:
    """Issue 9: a change to an $INCLUDEd file reloads the zone (README said so)."""
    inc = tmp_path / "hosts.inc"
    inc.write_text("www IN A 192.0.2.10\n")
    (tmp_path / "reload.test.zone").write_text(
        "$ORIGIN reload.test.\n$TTL 60\n@ IN SOA ns1 hm 1 2 3 4 5\n@ IN NS ns1\n"
        f"ns1 IN A 192.0.2.1\n$INCLUDE {inc}\n")
    with geodns_server(tmp_path, ["--watch-interval", "0.2"]) as srv:
        assert answer(srv.port) == ("NOERROR", ["192.0.2.10"])
        write(inc, "www IN A 192.0.2.30\n")
        wait_for(srv.port, ("NOERROR", ["192.0.2.30"]))
