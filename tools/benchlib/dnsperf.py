"""dnsperf runs for tools/bench: one run against one server, with the CPU used by the
server's session, by dnsperf and by everything else sampled during the run."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib.procs import (
    LOCALHOST,
    BenchError,
    CpuSampler,
    exited,
    parse_cpulist,
    running,
    tail,
)


@dataclass
class DnsperfOptions:
    duration: float
    clients: int
    outstanding: int
    timeout: float
    client_cpu: str
    server_cpu: str
    once: bool = False  # -n 1: never loop over the input (every query sent at most once)


def run_dnsperf(
    opts: DnsperfOptions, port: int, datafile: Path, binary: bool, server_sid: int, logdir: Path
) -> tuple[dict[str, Any], list[str]]:
    argv = ["taskset", "-c", opts.client_cpu, "dnsperf", "-s", LOCALHOST, "-p", str(port)]
    argv += ["-d", str(datafile), "-l", f"{opts.duration:g}", "-c", str(opts.clients)]
    argv += ["-q", str(opts.outstanding), "-t", f"{opts.timeout:g}"]
    if opts.once:
        argv += ["-n", "1"]
    if binary:
        argv.append("-B")
    with running(argv, logdir, "dnsperf") as proc:
        sampler = CpuSampler(server_sid, proc.pid)
        start = time.monotonic()
        sampler.sample()
        sampler.start()
        deadline = start + opts.duration + opts.timeout + 60
        while not exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        sampler.done.set()
        sampler.join()
        timed_out = not exited(proc.pid)
    out, err = tail(logdir / "dnsperf.stdout", 20000), tail(logdir / "dnsperf.stderr")
    if timed_out or proc.returncode != 0:
        raise BenchError(f"dnsperf failed ({proc.returncode}): {err or out}")
    stats = parse_dnsperf(out)
    stats["wall_s"] = time.monotonic() - start  # run time plus the wait for late answers
    cpus = parse_cpulist(opts.server_cpu), parse_cpulist(opts.client_cpu)
    stats.update(sampler.usage(start, stats["runtime_s"], *cpus))
    return stats, argv


def parse_dnsperf(text: str) -> dict[str, Any]:
    def num(pattern: str) -> float:
        m = re.search(pattern, text)
        if not m:
            raise BenchError(f"cannot parse dnsperf output ({pattern!r}):\n{text}")
        return float(m.group(1))

    stats: dict[str, Any] = {
        "sent": int(num(r"Queries sent:\s+(\d+)")),
        "completed": int(num(r"Queries completed:\s+(\d+)")),
        "lost": int(num(r"Queries lost:\s+(\d+)")),
        "runtime_s": num(r"Run time \(s\):\s+([\d.]+)"),
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "avg_latency_ms": 1000 * num(r"Average Latency \(s\):\s+([\d.]+)"),
        "min_latency_ms": 1000 * num(r"Average Latency \(s\):.*min ([\d.]+)"),
        "max_latency_ms": 1000 * num(r"Average Latency \(s\):.*max ([\d.]+)"),
        "stddev_latency_ms": 1000 * num(r"Latency StdDev \(s\):\s+([\d.]+)"),
    }
    stats["lost_pct"] = 100.0 * stats["lost"] / max(stats["sent"], 1)
    m = re.search(r"Response codes:\s+(.*)", text)
    stats["rcodes"] = (
        {code: int(n) for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))} if m else {}
    )
    m = re.search(r"Version ([\d.]+)", text)
    stats["dnsperf_version"] = m.group(1) if m else "unknown"
    # With -n 1 dnsperf stops early when the input runs out: the qps is still right
    # (over the shorter run), but the run was shorter than asked.
    stats["input_exhausted"] = "Testing complete (end of file)" in text
    return stats


# --------------------------------------------------------------------------- plain workload
