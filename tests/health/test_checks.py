"""Each probe type against real loopback backends: pass, fail, and the reason why."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geodns.config import Check
from geodns.health.checks import ProbeResult, run_check
from tests.health.backends import (
    HOST,
    DnsBackend,
    HttpBackend,
    TcpBackend,
    free_tcp_port,
    run_async,
    self_signed,
)
from tests.helpers.paths import REPO_ROOT
from tests.helpers.servers import geodns_server

pytestmark = pytest.mark.timeout(60)


def http_check(port: int, **kw: object) -> Check:
    base: dict[str, object] = {"name": "web", "type": "http", "interval": 1.0, "timeout": 0.5,
                               "port": port, "path": "/health"}
    base.update(kw)
    return Check(**base)  # type: ignore[arg-type]


async def probe_http(mode: str, **kw: object) -> tuple[ProbeResult, HttpBackend]:
    backend = await HttpBackend().start()
    backend.mode = mode
    try:
        return await run_check(http_check(backend.port, **kw), HOST), backend
    finally:
        await backend.stop()


@pytest.mark.parametrize(
    ("mode", "kw", "ok", "reason"),
    [
        ("ok", {}, True, "HTTP 200"),
        ("ok", {"expect_body": "healthy"}, True, "HTTP 200"),
        ("500", {}, False, "HTTP 500 (expected 200)"),
        ("500", {"expect_status": (200, 500)}, True, "HTTP 500"),
        ("ok", {"expect_status": (204,)}, False, "HTTP 200 (expected 204)"),
        ("wrong body", {"expect_body": "healthy"}, False, "body mismatch"),
        ("hang", {"timeout": 0.3}, False, "timeout after 0.3s"),
    ],
)
def test_http(mode: str, kw: dict[str, object], ok: bool, reason: str) -> None:
    result, _ = run_async(probe_http(mode, **kw))
    assert (result.ok, result.reason) == (ok, reason)
    if mode == "hang":
        assert 0.3 <= result.latency < 1.0


def test_http_sends_method_path_and_host_header() -> None:
    _, backend = run_async(probe_http("ok", method="HEAD", path="/ping?x=1",
                                      host="www.example.com"))
    assert backend.seen == [("HEAD", "/ping", "www.example.com")]


def test_http_connection_refused() -> None:
    port = free_tcp_port()
    result = run_async(run_check(http_check(port), HOST))
    assert (result.ok, result.reason) == (False, "connection refused")


def test_http_ipv6_loopback() -> None:
    async def main() -> ProbeResult:
        backend = await HttpBackend(host="::1").start()
        try:
            return await run_check(http_check(backend.port), "::1")
        finally:
            await backend.stop()

    try:
        result = run_async(main())
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert result.ok, result.reason


def test_https_verification_and_sni(tmp_path: Path) -> None:
    pair = self_signed(tmp_path, cn="health.test")
    if pair is None:
        pytest.skip("openssl CLI not available")
    cert, key = pair
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server_names: list[str | None] = []
    ctx.sni_callback = lambda sock, name, c: server_names.append(name)

    async def main() -> tuple[ProbeResult, ProbeResult]:
        backend = await HttpBackend(ssl_context=ctx).start()
        try:
            base = {"type": "https", "host": "health.test", "expect_body": "healthy"}
            verified = await run_check(http_check(backend.port, **base), HOST)
            skipped = await run_check(http_check(backend.port, tls_verify=False, **base), HOST)
            return verified, skipped
        finally:
            await backend.stop()

    verified, skipped = run_async(main())
    assert not verified.ok
    assert verified.reason.startswith("TLS certificate error"), verified.reason
    assert "self" in verified.reason or "verify" in verified.reason
    assert skipped.ok, skipped.reason
    assert server_names == ["health.test", "health.test"]  # SNI from `host`, on both


def test_tcp() -> None:
    async def main() -> tuple[ProbeResult, ProbeResult, int]:
        backend = await TcpBackend().start()
        check = Check(name="t", type="tcp", port=backend.port, timeout=0.5, interval=1)
        up = await run_check(check, HOST)
        await backend.kill()
        down = await run_check(check, HOST)
        return up, down, backend.connections

    up, down, connections = run_async(main())
    assert (up.ok, up.reason) == (True, "connected")
    assert (down.ok, down.reason) == (False, "connection refused")
    assert connections == 1


def test_dns() -> None:
    async def main() -> list[ProbeResult]:
        backend = await DnsBackend().start()
        try:
            check = Check(name="d", type="dns", port=backend.port, timeout=0.3, interval=1,
                          qname="example.com.", qtype="SOA")
            out = [await run_check(check, HOST)]
            backend.mode = "servfail"
            out.append(await run_check(check, HOST))
            out.append(await run_check(Check(name="d", type="dns", port=backend.port,
                                             timeout=0.3, interval=1, expect_rcode="SERVFAIL"),
                                       HOST))
            backend.mode = "silent"
            out.append(await run_check(check, HOST))
            return out
        finally:
            await backend.stop()

    ok, servfail, expected_servfail, silent = run_async(main())
    assert (ok.ok, ok.reason) == (True, "rcode NOERROR, 1 answer")
    assert (servfail.ok, servfail.reason) == (False, "rcode SERVFAIL (expected NOERROR)")
    assert expected_servfail.ok
    assert (silent.ok, silent.reason) == (False, "timeout after 0.3s")


def external(*argv: str, timeout: float = 2.0) -> Check:
    return Check(name="x", type="external", command=tuple(argv), timeout=timeout, interval=10)


def test_external_exit_codes_and_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    script = f'echo "$GEODNS_CHECK $GEODNS_ADDRESS" > {env_file}; exit 0'
    ok = run_async(run_check(external("sh", "-c", script), "127.0.0.9"))
    assert (ok.ok, ok.reason) == (True, "exit 0")
    assert env_file.read_text().strip() == "x 127.0.0.9"
    bad = run_async(run_check(external("sh", "-c", "echo 'disk full' >&2; exit 2"), HOST))
    assert (bad.ok, bad.reason) == (False, "exit 2: disk full")
    missing = run_async(run_check(external("/nonexistent/geodns-check"), HOST))
    assert not missing.ok
    assert "no such file" in missing.reason


def test_external_is_killed_on_timeout(tmp_path: Path) -> None:
    """A hanging command (and its children) is killed when the timeout expires."""
    pid_file = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pid_file}; wait"
    start = time.monotonic()
    result = run_async(run_check(external("sh", "-c", script, timeout=0.5), HOST))
    elapsed = time.monotonic() - start
    assert (result.ok, result.reason) == (False, "timeout after 0.5s")
    assert elapsed < 2.0
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the command's child process survived the timeout"


def _wait_dead(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return not _alive(pid)


def test_external_backgrounded_child_is_up_promptly_and_killed(tmp_path: Path) -> None:
    """Exit 0 with a child still holding stderr: up at once (not a timeout), child gone."""
    pid_file = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pid_file}; exit 0"
    start = time.monotonic()
    result = run_async(run_check(external("sh", "-c", script, timeout=3.0), HOST))
    assert (result.ok, result.reason) == (True, "exit 0")
    assert time.monotonic() - start < 1.5
    assert _wait_dead(int(pid_file.read_text())), "the backgrounded child outlived its check"


def test_external_setsid_child_is_killed(tmp_path: Path) -> None:
    """A child that leaves the process group (setsid) is found by its marker and killed."""
    pid_file = tmp_path / "pid"
    inner = f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 30"
    script = (f"setsid sh -c '{inner}' & "
              f"while [ ! -s {pid_file} ]; do sleep 0.01; done; exit 0")
    result = run_async(run_check(external("sh", "-c", script, timeout=3.0), HOST))
    assert (result.ok, result.reason) == (True, "exit 0")
    child = int(pid_file.read_text())
    assert _wait_dead(child), "the setsid child outlived its check"


def test_external_stderr_flood_is_bounded() -> None:
    """`head -c 3G /dev/zero >&2` ends at once (pipe closed after a few KiB) and the
    process running the check does not grow (measured in a fresh interpreter)."""
    code = (
        "import asyncio, resource, time\n"
        "from geodns.config import Check\n"
        "from geodns.health.checks import run_check\n"
        "c = Check(name='x', type='external', timeout=3.0, interval=10,\n"
        "          command=('sh', '-c', 'head -c 3G /dev/zero >&2'))\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.monotonic()\n"
        "r = asyncio.run(run_check(c, None))\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base\n"
        "print(r.ok, round(time.monotonic() - t, 2), grew, r.reason)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split(maxsplit=3)
    ok, seconds, grew_kib = out[0], float(out[1]), int(out[2])
    assert ok == "False"
    assert out[3].strip().endswith("stderr over 16 KiB, pipe closed")
    assert grew_kib < 20_000, f"the check's stderr grew the process by {grew_kib} KiB"
    assert seconds < 2.0, out


def test_external_command_dies_with_geodns(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: when the process running checks is killed, so is the command."""
    pid_file = tmp_path / "pid"
    code = (
        "import asyncio\n"
        "from geodns.config import Check\n"
        "from geodns.health.checks import run_check\n"
        "c = Check(name='x', type='external', timeout=60.0, interval=100,\n"
        f"          command=('sh', '-c', 'echo $$ > {pid_file}; exec sleep 60'))\n"
        "asyncio.run(run_check(c, None))\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline, "the check command never started"
            time.sleep(0.05)
        command = int(pid_file.read_text())
        runner.kill()
        runner.wait(5)
        assert _wait_dead(command), "the check command outlived the process that ran it"
    finally:
        runner.kill()
        runner.wait(5)


def test_running_external_checks_are_cleaned_up_when_geodns_stops(tmp_path: Path) -> None:
    """A real `geodns serve` stopped (SIGTERM) while a check runs: the command, a child in
    its group and a child that left it with setsid are all gone."""
    pids = tmp_path / "pids"
    script = (f"setsid sleep 60 & echo $! >> {pids}; sleep 60 & echo $! >> {pids}; "
              f"echo $$ >> {pids}; wait")
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(f"""
[checks.ext]
type = "external"
command = ["sh", "-c", "{script}"]
interval = 60
timeout = 30

[pops.iad]
lat = 38.9
lon = -77.0
ipv4 = ["192.0.2.10"]
health = "ext"

[pools.www]
strategy = "nearest"

[pools.api]
strategy = "failover"
pops = ["iad"]
""")
    with geodns_server(REPO_ROOT / "zones", ["--config", str(cfg)]) as srv:
        deadline = time.monotonic() + 10
        while len(pids.read_text().split() if pids.exists() else []) < 3:
            assert time.monotonic() < deadline, srv.stderr_text()
            time.sleep(0.05)
        running = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in running)
    survivors = [p for p in running if not _wait_dead(p)]
    assert not survivors, f"processes of a running check outlived geodns: {survivors}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_probes_never_block_each_other() -> None:
    """A hanging HTTP probe and a quick one run side by side on one loop."""

    async def main() -> tuple[float, float]:
        slow = await HttpBackend().start()
        fast = await HttpBackend().start()
        slow.hang()
        try:
            start = time.monotonic()
            hang_task = asyncio.create_task(run_check(http_check(slow.port, timeout=1.0), HOST))
            quick = await run_check(http_check(fast.port), HOST)
            quick_time = time.monotonic() - start
            hung = await hang_task
            assert quick.ok and not hung.ok
            return quick_time, hung.latency
        finally:
            await slow.stop()
            await fast.stop()

    quick_time, hang_time = run_async(main())
    assert quick_time < 0.5
    assert 1.0 <= hang_time < 1.5

