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

from tests.util import REPO_ROOT, free_port, stop_process

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
