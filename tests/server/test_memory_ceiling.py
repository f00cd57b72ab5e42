"""Issue 9: every structure keyed by client input is bounded.  Floods of random names,
random ECS clients and unique padded queries (each also sent twice, so caches that
admit on the second sighting are filled too) must level the server's memory off under
a documented ceiling while well-formed queries keep being answered.

``GEODNS_FLOOD_SECONDS`` sets each flood's length (default 12; the README figures come
from 60: ``GEODNS_FLOOD_SECONDS=60 pytest -s tests/server/test_memory_ceiling.py``).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time
from collections.abc import Callable

import dns.message
import pytest

from tests.helpers.net import LOCALHOST
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import geodns_server

SECONDS = float(os.environ.get("GEODNS_FLOOD_SECONDS", "12"))
CEILING_MB = 400  # README: memory ceiling under floods
RATE = 20_000  # queries per second offered by each flood


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _name(label: bytes) -> bytes:
    return bytes((len(label),)) + label + b"\x07example\x03com\x00"


def random_name(rnd: random.Random) -> bytes:
    label = b"%012x" % rnd.getrandbits(48)
    return struct.pack("!HHHHHH", rnd.getrandbits(16), 0x0100, 1, 0, 0, 0) + _name(label) \
        + b"\x00\x01\x00\x01"


def random_ecs(rnd: random.Random) -> bytes:
    addr = rnd.getrandbits(24).to_bytes(3, "big")
    opt = b"\x00\x08\x00\x07\x00\x01\x18\x00" + addr
    return struct.pack("!HHHHHH", rnd.getrandbits(16), 0x0100, 1, 0, 0, 1) \
        + _name(b"www") + b"\x00\x01\x00\x01" \
        + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + len(opt).to_bytes(2, "big") + opt


def padded(rnd: random.Random) -> bytes:
    pad = rnd.randbytes(rnd.randrange(1000, 4000))
    opt = b"\x00\x0c" + len(pad).to_bytes(2, "big") + pad  # EDNS padding option (12)
    return struct.pack("!HHHHHH", rnd.getrandbits(16), 0x0100, 1, 0, 0, 1) \
        + _name(b"static") + b"\x00\x01\x00\x01" \
        + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00" + len(opt).to_bytes(2, "big") + opt


def flood(port: int, pid: int, make: Callable[[random.Random], bytes],
          seconds: float) -> tuple[list[float], int, int]:
    """Send ``make`` queries (each twice) for ``seconds``; sample RSS each second; ask a
    well-formed query every 0.2 s.  Returns (RSS samples, probes sent, probes answered)."""
    rnd = random.Random(9)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.settimeout(1.0)
    check = dns.message.make_query("static.example.com.", "A").to_wire()
    samples: list[float] = []
    asked = answered = 0
    start = time.monotonic()
    next_sample = start
    next_probe = start
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        if sent > (now - start) * RATE:  # keep below saturation: memory, not overload
            time.sleep(0.002)
        for _ in range(100):
            wire = make(rnd)
            for _ in range(2):
                try:
                    sock.sendto(wire, (LOCALHOST, port))
                except BlockingIOError:
                    time.sleep(0.001)
            sent += 2
        try:
            while True:
                sock.recv(65535)
        except BlockingIOError:
            pass
        if now >= next_sample:
            samples.append(_rss_mb(pid))
            next_sample += 1.0
        if now >= next_probe:
            asked += 1
            for _ in range(2):  # a resolver retries once
                probe.sendto(check, (LOCALHOST, port))
                try:
                    answered += bool(probe.recv(4096))
                    break
                except TimeoutError:
                    pass
            next_probe += 0.2
    sock.close()
    probe.close()
    return samples, asked, answered


@pytest.mark.timeout(60 + 4 * SECONDS)
def test_floods_level_off_under_the_ceiling(report_line: Callable[[str], None]) -> None:
    config = ["--config", str(REPO_ROOT / "geodns.toml"), "--http", "off"]
    with geodns_server(REPO_ROOT / "zones", config) as srv:
        pid = srv.proc.pid
        for label, make in (("random names", random_name), ("random ECS clients", random_ecs),
                            ("unique padded queries", padded)):
            samples, asked, answered = flood(srv.port, pid, make, SECONDS)
            assert srv.proc.poll() is None
            assert answered >= asked * 0.95, f"{label}: {answered}/{asked} probes answered"
            peak = max(samples)
            last_third = samples[len(samples) * 2 // 3:]
            report_line(f"memory under a flood of {label} ({SECONDS:.0f} s): RSS "
                        f"{samples[0]:.0f} -> {peak:.0f} MB peak, last third "
                        f"{min(last_third):.0f}-{max(last_third):.0f} MB; "
                        f"{answered}/{asked} probes answered")
            assert peak < CEILING_MB, f"{label}: RSS {peak:.0f} MB"
            # levelled off: the last third of the flood grows by little
            assert max(last_third) - min(last_third) < 25, f"{label}: still growing {samples}"
