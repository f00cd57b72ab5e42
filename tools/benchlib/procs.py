"""Processes, CPU and memory accounting for tools/bench: servers run in their own
session so the whole group is measured and always stopped."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

LOCALHOST = "127.0.0.1"
OTHER_LOAD_WARN = 15.0  # % of a core used by processes not in the benchmark


class BenchError(Exception):
    """A server failed to start or to answer; the run goes on, exit status 1."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOCALHOST, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOCALHOST, port))
                except OSError:
                    continue
        return int(port)
    raise BenchError("no free port found")


def tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()


def command_version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else "unknown"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_cpulist(text: str) -> list[int]:
    """taskset's list syntax: ``0``, ``0,2``, ``0-3``."""
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus += range(int(lo), int(hi or lo) + 1)
    return cpus


def proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat from field 3 (state) on; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    """Every live process in session ``sid`` (field 6 of /proc/PID/stat)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None and int(fields[3]) == sid:
                pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU time of ``pids`` (all their threads: fields 14 and 15)."""
    total = 0
    for pid in pids:
        fields = proc_stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def core_times() -> dict[str, tuple[float, float]]:
    """Per /proc/stat line (``cpu``, ``cpu0``...): (user+nice+system, all busy incl. irq)."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *vals = line.split()
        v = [int(x) for x in vals]
        times[name] = (sum(v[0:3]) / CLK_TCK, (sum(v[0:3]) + v[5] + v[6]) / CLK_TCK)
    return times


def wait_until_quiet(max_wait: float) -> float:
    """Wait up to ``max_wait`` s until the machine is idle apart from us (our server is
    idle between runs); returns the last load measured, in % of one core."""
    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        before = core_times()["cpu"][0]
        time.sleep(1.0)
        load = 100.0 * (core_times()["cpu"][0] - before)
        if load < OTHER_LOAD_WARN or time.monotonic() >= deadline:
            return load
        if not announced:
            print(f"  waiting up to {max_wait:.0f} s for other load ({load:.0f} % of a core)")
            announced = True


@dataclass
class Sample:
    t: float
    server: float
    client: float
    cores: dict[str, tuple[float, float]]


class CpuSampler(threading.Thread):
    """Samples the CPU time of the server session, dnsperf and every core."""

    def __init__(self, server_sid: int, client_pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        # The server's processes are looked up once: sampling stays cheap, as this
        # thread may share a core with the server.
        self.server_pids = session_pids(server_sid)
        self.client_pids = [client_pid]
        self.interval = interval
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def sample(self) -> None:
        self.samples.append(
            Sample(
                time.monotonic(),
                cpu_seconds(self.server_pids),
                cpu_seconds(self.client_pids),
                core_times(),
            )
        )

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()

    def usage(
        self, start: float, duration: float, server_cpus: list[int], client_cpus: list[int]
    ) -> dict[str, float]:
        """Shares of one core used during the steady part of the run (its first and
        last half second left out): server, dnsperf, other processes, and how busy
        the server's and dnsperf's cores were."""
        skip = 0.5 if duration >= 2 else 0.0
        window = [x for x in self.samples if start + skip <= x.t <= start + duration - skip]
        if len(window) < 2:
            window = self.samples[:1] + self.samples[-1:]
        a, b = window[0], window[-1]
        span = max(b.t - a.t, 1e-9)

        def core_busy(cpus: list[int]) -> float:
            names = [f"cpu{c}" for c in cpus if f"cpu{c}" in a.cores]
            busy = sum(b.cores[n][1] - a.cores[n][1] for n in names)
            return 100.0 * busy / span / max(len(names), 1)

        server = b.server - a.server
        client = b.client - a.client
        total = b.cores["cpu"][0] - a.cores["cpu"][0]
        return {
            "server_cpu_pct": 100.0 * server / span,
            "client_cpu_pct": 100.0 * client / span,
            "other_cpu_pct": max(0.0, 100.0 * (total - server - client) / span),
            "server_core_busy_pct": core_busy(server_cpus),
            "client_core_busy_pct": core_busy(client_cpus),
        }


def exit_status(pid: int) -> int | None:
    """Exit status of child ``pid`` or None while it runs; does not reap it, so its
    process group id cannot be reused before stop_process() is done with it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return -1
    return None if info is None else info.si_status


def exited(pid: int) -> bool:
    return exit_status(pid) is not None


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left, then reap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not exited(proc.pid):
        time.sleep(0.05)
    # The leader is not reaped yet, so the group id cannot have been reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def running(
    argv: list[str], logdir: Path, name: str, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with (
        (logdir / f"{name}.stdout").open("wb") as out,
        (logdir / f"{name}.stderr").open("wb") as err,
    ):
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_process(proc)


def wait_ready(
    proc: subprocess.Popen[bytes],
    port: int,
    origin: str,
    timeout: float,
    probe: tuple[str, str] | None = None,
) -> float:
    """Poll with a UDP SOA query (and then ``probe`` = (name, type), which must get an
    answer: a server may answer SOA before its last record is loaded) until the server
    answers; seconds it took."""
    start = time.monotonic()
    queries = [dns.message.make_query(origin, "SOA")]
    if probe is not None:
        queries.append(dns.message.make_query(*probe))
    while time.monotonic() - start < timeout:
        status = exit_status(proc.pid)
        if status is not None:
            raise BenchError(f"exited during start-up (status {status})")
        try:
            resps = [dns.query.udp(q, LOCALHOST, port=port, timeout=0.3) for q in queries]
        except (OSError, dns.exception.DNSException):
            time.sleep(0.1)
            continue
        if all(r.rcode() == dns.rcode.NOERROR and r.answer for r in resps):
            return time.monotonic() - start
        time.sleep(0.1)
    raise BenchError(f"no SOA answer for {origin} on port {port} within {timeout:.0f} s")


# --------------------------------------------------------------------------- memory


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split between the processes that map them,
    so the PSS of a forking server's processes adds up without double counting."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


@dataclass
class Memory:
    rss_mb: float  # sum of VmRSS over the session (shared pages counted per process)
    pss_mb: float  # sum of Pss over the session
    hwm_mb: float  # sum of each process's peak RSS (VmHWM)
    processes: int


def session_memory(sid: int) -> Memory:
    pids = [p for p in session_pids(sid) if p != os.getpid()]
    return Memory(
        sum(status_kb(p, "VmRSS") for p in pids) / 1024,
        sum(pss_kb(p) for p in pids) / 1024,
        sum(status_kb(p, "VmHWM") for p in pids) / 1024,
        len(pids),
    )


class MemorySampler(threading.Thread):
    """Peak of the session's summed RSS, sampled every ``interval`` seconds (VmHWM only
    knows each process's own peak, not the peak of their sum)."""

    def __init__(self, sid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.sid = sid
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        pids = session_pids(self.sid)
        last_scan = time.monotonic()
        while not self.done.wait(self.interval):
            if time.monotonic() - last_scan > 2:  # servers may fork new processes
                pids, last_scan = session_pids(self.sid), time.monotonic()
            rss = sum(status_kb(p, "VmRSS") for p in pids) / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, rss)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return self.peak_rss_mb


def run_measured(argv: list[str], timeout: float, cwd: Path | None = None) -> dict[str, object]:
    """Run a command to completion: wall seconds, peak RSS (ru_maxrss of the process and
    its waited-for children), exit status and the tail of its output."""
    start = time.monotonic()
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    ) as proc:
        out: list[bytes] = []
        reader = threading.Thread(
            target=lambda: out.append(proc.stdout.read() if proc.stdout else b""), daemon=True
        )
        reader.start()
        status: int | None = None
        rusage = None
        while time.monotonic() - start < timeout:
            pid, st, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.05)
        wall = time.monotonic() - start
        if status is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, st, rusage = os.wait4(proc.pid, 0)
        proc.returncode = status if status is not None else -9
        reader.join(5)
    text = b"".join(out).decode(errors="replace")
    return {
        "wall_s": wall,
        "peak_rss_mb": (rusage.ru_maxrss / 1024) if rusage is not None else 0.0,
        "status": status,
        "timed_out": status is None,
        "output": text[-3000:],
    }


@dataclass
class CpuMark:
    t: float
    total: float  # CPU seconds used on the machine (every core)
    ours: float  # of which by the given sessions and by this process


def cpu_mark(sids: list[int]) -> CpuMark:
    pids = [p for sid in sids for p in session_pids(sid)]
    own = os.times()
    ours = cpu_seconds([p for p in pids if p != os.getpid()]) + own.user + own.system
    return CpuMark(time.monotonic(), core_times()["cpu"][0], ours)


def other_cpu_pct(a: CpuMark, b: CpuMark) -> float:
    """CPU used by processes other than ours between two marks, in % of one core."""
    span = max(b.t - a.t, 1e-9)
    return max(0.0, 100.0 * ((b.total - a.total) - (b.ours - a.ours)) / span)
