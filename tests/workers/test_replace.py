"""Restart without a gap: `geodns serve --replace` takes the running server's sockets,
answers on them, and the old server drains and exits; a steady stream of UDP and TCP
queries loses none of them (measured, not assumed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import pytest

from geodns.workers.sockets import takeover_path
from geodns.workers.takeover import running_pid
from tests.util import geodns_cmd, geodns_server, stop_process, tcp_query

pytestmark = pytest.mark.timeout(180)

ZONE = """$ORIGIN replace.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  IN A   192.0.2.80
"""


class Load:
    """Queries from several UDP sockets and one TCP client per query, each waiting for
    its answer (2 s) before the next: a steady load that notices every loss."""

    def __init__(self, port: int, udp_clients: int = 6,
                 qname: str = "www.replace.test") -> None:
        self.port = port
        self.qname = qname
        self.stop = threading.Event()
        self.sent = 0
        self.answered = 0
        self.lost: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._udp, args=(i,), daemon=True)
                        for i in range(udp_clients)]
        self.threads.append(threading.Thread(target=self._tcp, daemon=True))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def _count(self, ok: bool, what: str) -> None:
        with self.lock:
            self.sent += 1
            if ok:
                self.answered += 1
            else:
                self.lost.append(what)

    def _udp(self, i: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            n = 0
            while not self.stop.is_set():
                n += 1
                q = dns.message.make_query(self.qname, "A")
                s.sendto(q.to_wire(), ("127.0.0.1", self.port))
                try:
                    while True:  # skip a late answer to an earlier query
                        wire, _ = s.recvfrom(4096)
                        if wire[:2] == q.to_wire()[:2]:
                            break
                    self._count(True, "")
                except TimeoutError:
                    self._count(False, f"udp client {i} query {n}")

    def _tcp(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            q = dns.message.make_query(self.qname, "A").to_wire()
            try:
                self._count(bool(tcp_query(self.port, q, timeout=2.0)), f"tcp query {n}")
            except OSError as exc:
                self._count(False, f"tcp query {n}: {exc}")


def replace(zones: Path, workers: int, report: Callable[[str], None]) -> None:
    common = ["--no-config", "--workers", str(workers), "--watch-interval", "3600"]
    with geodns_server(zones, common) as old:
        with Load(old.port) as load:
            time.sleep(1.0)
            log = zones.parent / f"new-{workers}.log"
            with open(log, "wb") as out:
                new = subprocess.Popen(
                    geodns_cmd("serve", "--zones", str(zones), "--listen",
                               f"127.0.0.1:{old.port}", "--http", "127.0.0.1:0", "--replace",
                               *common),
                    stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                started = time.monotonic()
                assert old.proc.wait(timeout=120) == 0, old.stderr_text()[-3000:]
                took = time.monotonic() - started
                time.sleep(1.0)  # the new server alone
                assert new.poll() is None, log.read_text()[-3000:]
            finally:
                load.stop.set()
                for t in load.threads:
                    t.join(10)
                stop_process(new)
        text = log.read_text()
        old_text = old.stderr_text()
    assert "replaced geodns pid" in text, text[-3000:]
    assert "draining and exiting" in old_text, old_text[-3000:]
    assert load.answered > 200, (load.sent, load.answered)
    assert load.lost == [], f"{len(load.lost)} of {load.sent} lost: {load.lost[:10]}"
    report(f"replace (--workers {workers}): {load.sent} queries (UDP and TCP) during a "
           f"restart of {took:.1f} s, {len(load.lost)} lost")


@pytest.mark.parametrize("workers", [1, 2])
def test_replace_loses_no_query(tmp_path: Path, workers: int,
                                report_line: Callable[[str], None]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "replace.test.zone").write_text(ZONE)
    replace(zones, workers, report_line)


def test_a_second_server_on_the_same_port_is_refused(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "replace.test.zone").write_text(ZONE)
    with geodns_server(zones, ["--no-config"]) as first:
        out = subprocess.run(
            geodns_cmd("serve", "--zones", str(zones), "--no-config", "--listen",
                       f"127.0.0.1:{first.port}", "--http", "off"),
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert f"already serves 127.0.0.1 port {first.port}" in out.stderr
        assert "--replace" in out.stderr
        assert first.alive()


def test_replace_with_nothing_to_replace_says_so(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "replace.test.zone").write_text(ZONE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run(
        geodns_cmd("serve", "--zones", str(zones), "--no-config", "--listen",
                   f"127.0.0.1:{port}", "--http", "off", "--replace"),
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "no running geodns answers" in out.stderr


def test_sigusr2_starts_a_replacement_itself(tmp_path: Path,
                                             report_line: Callable[[str], None]) -> None:
    """What `systemctl kill -s USR2 geodns` does: the server starts its own successor
    (same command line plus --replace), which takes over; nothing is lost."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "replace.test.zone").write_text(ZONE)
    successor = 0
    with geodns_server(zones, ["--no-config", "--watch-interval", "3600"]) as old:
        try:
            with Load(old.port) as load:
                time.sleep(0.5)
                old.proc.send_signal(signal.SIGUSR2)
                assert old.proc.wait(timeout=60) == 0, old.stderr_text()[-3000:]
                time.sleep(1.0)
            path = takeover_path([("127.0.0.1", old.port)])
            successor = running_pid(path) or 0
            assert successor not in (0, -1, old.proc.pid)
            text = old.stderr_text()
        finally:
            if successor > 0:
                os.kill(successor, signal.SIGTERM)
    assert "SIGUSR2: starting a replacement" in text
    assert "replaced geodns pid" in text  # the successor logs to the same stderr
    assert load.lost == [], f"{len(load.lost)} of {load.sent} lost: {load.lost[:10]}"
    assert load.answered > 100
    report_line(f"replace by SIGUSR2: {load.sent} queries, {len(load.lost)} lost")
