"""`geodns serve` processes on free loopback ports: started, waited for, always stopped."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.helpers.net import LOCALHOST, free_port
from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import make_query, tcp_connect, udp_query

READY_TIMEOUT = 10.0


def zone_origin(path: Path) -> str:
    """The origin geodns derives for a zone file: first $ORIGIN, else file name minus .zone."""
    for line in path.read_text().splitlines():
        m = re.match(r"^\$ORIGIN\s+(\S+)", line, re.IGNORECASE)
        if m:
            origin = m.group(1)
            return origin if origin.endswith(".") else origin + "."
    name = path.name
    if name.endswith(".zone"):
        name = name[: -len(".zone")]
    return name if name.endswith(".") else name + "."


def zone_origins(zones_dir: Path) -> list[str]:
    return [zone_origin(p) for p in sorted(Path(zones_dir).iterdir()) if p.is_file()]


def geodns_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "geodns", *args]


def geodns_available() -> bool:
    return (REPO_ROOT / "geodns" / "cli.py").exists() or (
        REPO_ROOT / "geodns" / "__main__.py"
    ).exists()


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate ``proc`` (and its process group), escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.wait(timeout=grace)


def wait_ready(
    port: int,
    qname: str,
    proc: subprocess.Popen,
    timeout: float = READY_TIMEOUT,
    host: str = LOCALHOST,
) -> bool:
    """Poll with a UDP SOA query (any answer counts) and a TCP connect until both work."""
    q = make_query(qname, "SOA").to_wire()
    deadline = time.monotonic() + timeout
    udp_ok = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if not udp_ok:
            udp_ok = udp_query(port, q, timeout=0.2, host=host, check=False) is not None
        if udp_ok:
            try:
                with tcp_connect(port, host, timeout=0.5):
                    return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


class ServerProcess:
    """A running server: ``.port``, ``.proc``, ``.stderr_text()``."""

    def __init__(self, proc: subprocess.Popen, port: int, stderr_path: Path, host: str):
        self.proc = proc
        self.port = port
        self.host = host
        self._stderr_path = stderr_path

    def control_port(self, timeout: float = 5.0) -> int:
        """Port of the control API, from its start-up log line."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(r"control API on http://\S+?:(\d+)/", self.stderr_text())
            if m:
                return int(m.group(1))
            if time.monotonic() > deadline:
                raise RuntimeError(f"no control API line in the log:\n{self.stderr_text()}")
            time.sleep(0.05)

    def stderr_text(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager


def run_server(
    argv_for_port,
    ready_name: str,
    *,
    name: str = "server",
    host: str = LOCALHOST,
    attempts: int = 3,
    cwd: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Start ``argv_for_port(port)`` on a free port and wait until it answers.

    Retries on a fresh port if the process dies at start (e.g. a port race).
    The process is always stopped on exit.
    """
    last_err = ""
    for _ in range(attempts):
        port = free_port(host)
        tmpdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        stderr_path = tmpdir / "stderr.log"
        with open(stderr_path, "wb") as errf:
            proc = subprocess.Popen(
                argv_for_port(port),
                stdin=subprocess.DEVNULL,
                stdout=errf,
                stderr=errf,
                cwd=cwd or REPO_ROOT,
                start_new_session=True,
            )
        server = ServerProcess(proc, port, stderr_path, host)
        try:
            if wait_ready(port, ready_name, proc, timeout=ready_timeout, host=host):
                yield server
                return
            last_err = (
                f"{name} not ready on {host}:{port} within {ready_timeout}s "
                f"(exit code {proc.poll()}):\n{server.stderr_text()[-4000:]}"
            )
            if proc.poll() is None:
                # alive but not answering: retrying will not help
                break
        finally:
            stop_process(proc)
            shutil.rmtree(tmpdir, ignore_errors=True)
    raise RuntimeError(last_err)


@contextlib.contextmanager


def geodns_server(
    zones_dir: Path | str,
    extra_args: Sequence[str] = (),
    *,
    host: str = LOCALHOST,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[ServerProcess]:
    """Run ``python -m geodns serve --zones DIR --listen HOST:PORT [extra_args]``."""
    zones_dir = Path(zones_dir)
    origins = zone_origins(zones_dir)
    ready_name = origins[0] if origins else "."
    listen_host = f"[{host}]" if ":" in host else host

    # The control listener defaults to 127.0.0.1:8053; tests get a random port instead
    # (ServerProcess.control_port() reads it from the log) so servers never collide.
    http_args = () if "--http" in extra_args else ("--http", f"{LOCALHOST}:0")
    # Without --config, serve would pick up ./geodns.toml (the repo's: tests run from
    # the checkout); these servers are zones-only unless a test passes a config.
    if "--config" not in extra_args and "--no-config" not in extra_args:
        http_args = (*http_args, "--no-config")

    def argv(port: int) -> list[str]:
        return geodns_cmd(
            "serve", "--zones", str(zones_dir), "--listen", f"{listen_host}:{port}",
            *http_args, *extra_args
        )

    with run_server(
        argv, ready_name, name="geodns", host=host, ready_timeout=ready_timeout
    ) as server:
        # listeners are bound one after the other: wait for the extra ones too
        for extra_host, extra_port in _extra_listeners(extra_args):
            if not wait_ready(
                extra_port, ready_name, server.proc, timeout=ready_timeout, host=extra_host
            ):
                raise RuntimeError(
                    f"geodns not ready on [{extra_host}]:{extra_port}:\n"
                    f"{server.stderr_text()[-4000:]}"
                )
        yield server


def _extra_listeners(args: Sequence[str]) -> list[tuple[str, int]]:
    """(host, port) of every ``--listen ADDR:PORT`` / ``--listen=ADDR:PORT`` in ``args``."""
    values = []
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--listen" and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--listen="):
            values.append(arg.split("=", 1)[1])
    out = []
    for v in values:
        m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:]+):(\d+)", v)
        if m:
            h, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            out.append((h, int(port)))
    return out
