"""tools/demo runs, moves London's answer off a killed POP and back, and cleans up."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers.net import free_port
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import stop_process

DEMO = REPO_ROOT / "tools" / "demo"
WIRED = "HealthMonitor" in (REPO_ROOT / "geodns" / "server.py").read_text()

pytestmark = [
    pytest.mark.skipif(not WIRED, reason="health monitor not wired into `geodns serve` yet "
                       "(geodns/server.py does not use HealthMonitor)"),
    pytest.mark.timeout(60),
]


def test_demo_kill_and_revive() -> None:
    assert os.access(DEMO, os.X_OK), "tools/demo must be executable"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--port", str(port), "--interval", "0.5"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO_ROOT, start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def expect(pattern: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)[-4000:]}")

    def send(command: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()

    try:
        config_line = expect(r"answering on 127\.0\.0\.1 port \d+ \(config (.+)\)")
        workdir = Path(re.search(r"\(config (.+)/geodns\.toml\)", config_line).group(1))  # type: ignore[union-attr]
        expect(r"answers: London: fra 192\.0\.2\.20")
        send("kill fra")
        expect(r"health state change target=fra old=up new=down")
        expect(r"answers: London: iad 192\.0\.2\.10")
        send("revive fra")
        expect(r"answers: London: fra 192\.0\.2\.20")
        send("quit")
        expect(r"demo stopped")
        assert proc.wait(timeout=10) == 0
        assert not workdir.exists(), "the demo left its temporary directory behind"
    finally:
        stop_process(proc)


def test_demo_refuses_a_port_another_server_answers_on() -> None:
    """`make demo` while `make run` is up: say why and stop, instead of watching the
    other server's answers."""
    import socket

    import dns.message

    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", port))
        other.settimeout(0.1)
        stop = threading.Event()

        def answer() -> None:  # a DNS server that answers everything with fra's address
            while not stop.is_set():
                try:
                    data, addr = other.recvfrom(4096)
                except OSError:
                    continue
                q = dns.message.from_wire(data)
                r = dns.message.make_response(q)
                r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A",
                                                    "192.0.2.20"))
                other.sendto(r.to_wire(), addr)

        threading.Thread(target=answer, daemon=True).start()
        try:
            r = subprocess.run([sys.executable, str(DEMO), "--port", str(port)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               cwd=REPO_ROOT, timeout=30)
        finally:
            stop.set()
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"UDP 127.0.0.1:{port} is already in use" in r.stdout, r.stdout
    assert "make run" in r.stdout and "--port" in r.stdout
    assert "answering on" not in r.stdout and "backends:" not in r.stdout
