"""The status page in a real headless browser (Debian's chromium), after its JS ran."""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import time
import zlib
from pathlib import Path

import pytest

from geodns.ops.control import bound_port, start_control, stop_control
from geodns.ops.status import HealthChange
from tests.ops.fakes import FakeBackend

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")


def chromium_args(profile: Path) -> list[str]:
    return [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            "--hide-scrollbars", f"--user-data-dir={profile}"]


async def browse(extra: list[str], profile: Path) -> bytes:
    """Run chromium once (bounded in time, always reaped) and return its stdout."""
    proc = await asyncio.create_subprocess_exec(
        *chromium_args(profile), *extra, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BROWSER_TIMEOUT)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


def busy_backend() -> FakeBackend:
    """iad up with most traffic, fra drained (forced), sin down; one recent change."""
    b = FakeBackend()
    for pop, n in (("iad", 700), ("fra", 200), ("sin", 100)):
        for _ in range(n):
            b.metrics.answer("www", pop)
    now = time.time()
    b.changes = [
        HealthChange(now - 40, "sin", "up", "down", False, "check web: connection refused"),
        HealthChange(now - 300, "fra", "up", "drain", True, None),
    ]
    b.overrides = {"fra": ("drain", None)}
    return b


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Minimal PNG reader (8-bit RGB/RGBA, not interlaced): width, height, pixel rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = colour = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line) if bpp == 3 else bytes(
            v for j in range(0, stride, 4) for v in line[j:j + 3]))
        prev = line
    return width, height, rows


def count_colour(rows: list[bytes], rgb: tuple[int, int, int], tol: int = 12) -> int:
    r0, g0, b0 = rgb
    n = 0
    for row in rows:
        for i in range(0, len(row), 3):
            if abs(row[i] - r0) <= tol and abs(row[i + 1] - g0) <= tol and \
                    abs(row[i + 2] - b0) <= tol:
                n += 1
    return n


def test_status_page_in_headless_chromium(tmp_path: Path) -> None:
    backend = busy_backend()
    shot = tmp_path / "status.png"

    async def go() -> str:
        runner = await start_control(backend, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{bound_port(runner)}/"
        try:
            dom = await browse(["--virtual-time-budget=4000", "--dump-dom", url],
                               tmp_path / "profile-dom")
            await browse([f"--screenshot={shot}", "--window-size=1200,800",
                          "--virtual-time-budget=2000", url], tmp_path / "profile-shot")
        finally:
            await stop_control(runner)
        return dom.decode()

    dom = asyncio.run(go())

    # JS ran: it re-fetched the page, swapped in the new #content and counted it.
    assert re.search(r'<body[^>]*data-refreshes="[1-9]', dom), dom[:500]
    assert "live, updated" in dom
    assert backend.status_calls >= 2  # the page itself, then the JS refresh

    rows = re.findall(r'<tr class="pop state-(\w+)" data-pop="(\w+)"', dom)
    assert rows == [("up", "iad"), ("drain", "fra"), ("down", "sin")]
    shares = dict((p, float(s)) for p, s in re.findall(
        r'data-pop="(\w+)" data-state="\w+" data-share="([0-9.]+)"', dom))
    assert shares == pytest.approx({"iad": 0.7, "fra": 0.2, "sin": 0.1})
    assert "70.0%" in dom and "20.0%" in dom and "10.0%" in dom
    assert "forced drain" in dom  # operator override is visible on the fra row
    assert "1 UP" in dom and "1 DRAIN" in dom and "1 DOWN" in dom
    assert 'id="changes"' in dom and "connection refused" in dom
    assert "RELOAD OK" in dom and "example.com." in dom

    # The screenshot: exists, is a real picture, and shows the three state colours.
    data = shot.read_bytes()
    assert len(data) > 20_000, len(data)
    width, height, pixels = decode_png(data)
    assert (width, height) == (1200, 800)
    assert count_colour(pixels, (0x1A, 0x7F, 0x37)) > 200  # up: green
    assert count_colour(pixels, (0xB3, 0x59, 0x00)) > 200  # drain: amber
    assert count_colour(pixels, (0xCF, 0x22, 0x2E)) > 200  # down: red
