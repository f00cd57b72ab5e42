"""Large zones: a generated zone of a million records served by geodns, Knot and NSD.

For each server: the offline check (time, peak RSS), time from start to the first
answer, memory once loaded, then a reload of a one-record change under a steady load
(tools/benchlib/loadgen.py): how long until the change is answered, how many answers
per second came during the reload, how many queries were lost and how late the
worst answer was. Every wait has a timeout, so a slow server is reported, not
waited for forever."""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from benchlib.procs import (
    LOCALHOST,
    BenchError,
    MemorySampler,
    cpu_mark,
    exited,
    free_port,
    other_cpu_pct,
    run_measured,
    running,
    session_memory,
    tail,
    wait_ready,
    write,
)
from benchlib.servers import (
    GeodnsSetup,
    Launch,
    geodns_command,
    launch_geodns,
    launch_knot,
    launch_nsd,
    pinned,
)
from benchlib.wire import BinaryWriter, plain_query

ORIGIN = "large.example"
SERVERS = ("geodns", "knot", "nsd")
NEW_ADDRESS = "198.51.100.77"
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
SLOW_MS = 50.0  # the bound: a reload never delays an answer by more than this


@dataclass
class LargeZone:
    original: Path
    changed: Path
    records: int
    changed_name: str  # its A record moves to NEW_ADDRESS in ``changed``
    probe_name: str  # the last A name of the file: answered once everything is loaded
    load_names: list[str]
    kinds: dict[str, int]


def generate(path: Path, records: int, seed: int) -> LargeZone:
    """A deterministic zone of ``records`` records: 55 % A, 20 % AAAA, 15 % TXT, 10 %
    CNAME (to earlier names), one name each, plus the apex SOA/NS and two glue A."""
    rnd = random.Random(seed)
    head = [
        f"$ORIGIN {ORIGIN}.",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        "ns1 IN A 192.0.2.53",
        "ns2 IN A 192.0.2.54",
    ]
    body: list[str] = []
    kinds = {"A": 0, "AAAA": 0, "TXT": 0, "CNAME": 0}
    a_names: list[str] = []
    for i in range(records - 5):
        r = rnd.random()
        name = f"h{i:07d}"
        if r < 0.55 or i == 0:
            body.append(f"{name} IN A 198.{18 + (i >> 16 & 1)}.{i >> 8 & 255}.{i & 255}")
            kinds["A"] += 1
            a_names.append(name)
        elif r < 0.75:
            body.append(f"{name} IN AAAA 2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1")
            kinds["AAAA"] += 1
        elif r < 0.90:
            body.append(f'{name} IN TXT "bench record {i} {rnd.getrandbits(32):08x}"')
            kinds["TXT"] += 1
        else:
            body.append(f"{name} IN CNAME h{rnd.randrange(i):07d}")
            kinds["CNAME"] += 1
    text = "\n".join(head + body) + "\n"
    first = body[0]
    changed_line = f"{first.split()[0]} IN A {NEW_ADDRESS}"
    original = write(path, text.replace("{serial}", "1"))
    changed = write(
        path.with_name(path.name + ".changed"),
        text.replace("{serial}", "2").replace("\n" + first + "\n", "\n" + changed_line + "\n", 1),
    )
    load = rnd.sample(a_names, min(1000, len(a_names)))
    return LargeZone(
        original,
        changed,
        records,
        f"{first.split()[0]}.{ORIGIN}",
        f"{a_names[-1]}.{ORIGIN}",
        [f"{n}.{ORIGIN}" for n in load],
        kinds,
    )


# --------------------------------------------------------------------------- per server


def checker(name: str, args: argparse.Namespace, zone_file: Path) -> list[str] | None:
    """The server's own offline zone check, or None when it has none installed."""
    if name == "geodns":
        return [*geodns_command(args), "check", "--zones", str(zone_file.parent)]
    if name == "nsd" and shutil.which("nsd-checkzone"):
        return ["nsd-checkzone", ORIGIN, str(zone_file)]
    if name == "knot" and shutil.which("kzonecheck"):
        return ["kzonecheck", "-o", ORIGIN, str(zone_file)]
    return None


def answer_of(port: int, qname: str) -> str | None:
    query = dns.message.make_query(qname, "A")
    try:
        resp = dns.query.udp(query, LOCALHOST, port=port, timeout=0.5)
    except (OSError, dns.exception.DNSException):
        return None
    return ",".join(rd.address for rr in resp.answer if rr.rdtype == dns.rdatatype.A for rd in rr)


def trigger_reload(name: str, proc: subprocess.Popen[bytes], work: Path) -> None:
    """How an operator reloads each server after changing a zone file."""
    if name in ("geodns", "nsd"):  # both reload changed zone files on SIGHUP
        proc.send_signal(signal.SIGHUP)
        return
    knotc = shutil.which("knotc")
    if knotc is None:
        raise BenchError("knotc not found (Debian package knot)")
    out = subprocess.run(
        [knotc, "-s", str(work / "run" / "knot.sock"), "zone-reload", ORIGIN],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        raise BenchError(f"knotc zone-reload failed: {out.stdout}{out.stderr}")


def window_stats(sent: array[float], lat: array[float], start: float, end: float) -> dict[str, Any]:
    """Queries sent in [start, end): lost, worst and slow answers; and answers received
    in [start, end): per second on average and in the worst whole second."""
    n = answered = slow = 0
    worst = 0.0
    buckets: dict[int, int] = {}
    for t, v in zip(sent, lat, strict=True):
        if v >= 0 and start <= t + v < end:
            sec = int(t + v - start)
            buckets[sec] = buckets.get(sec, 0) + 1
        if start <= t < end:
            n += 1
            if v >= 0:
                answered += 1
                worst = max(worst, v)
                slow += v * 1000 > SLOW_MS
    span = max(end - start, 1e-9)
    whole_seconds = int(span)
    return {
        "seconds": span,
        "sent": n,
        "answered_per_s": sum(buckets.values()) / span,
        "min_answered_per_s": (
            min(buckets.get(i, 0) for i in range(whole_seconds)) if whole_seconds else None
        ),
        "lost": n - answered,
        "worst_ms": worst * 1000,
        "slow": slow,
    }


def load_stats(out: Path, timeline: dict[str, float]) -> dict[str, Any]:
    data = array("d")
    with out.with_suffix(".bin").open("rb") as f:
        data.frombytes(f.read())
    half = len(data) // 2
    sent, lat = data[:half], data[half:]
    if not sent:
        raise BenchError("the load generator sent nothing")
    return {
        "before": window_stats(sent, lat, sent[0] + 0.5, timeline["trigger"]),
        "during": window_stats(sent, lat, timeline["trigger"], timeline["seen"]),
        "whole": window_stats(sent, lat, sent[0], sent[-1] + 1e-6),
    }


def bench_large(
    name: str, launch_for: Any, args: argparse.Namespace, zone: LargeZone, tmp: Path
) -> dict[str, Any]:
    work = tmp / name
    zonedir = work / "zones"
    zonedir.mkdir(parents=True, exist_ok=True)
    zone_file = zonedir / f"{ORIGIN}.zone"
    shutil.copyfile(zone.original, zone_file)
    result: dict[str, Any] = {"server": name}
    print(f"\n== {name}")
    argv = checker(name, args, zone_file)
    if argv is None:
        print("  check: no checker installed")
    else:
        check = run_measured(argv, args.large_timeout)
        result["check"] = {k: v for k, v in check.items() if k != "output"}
        state = "timed out" if check["timed_out"] else f"exit {check['status']}"
        label = "geodns check" if name == "geodns" else Path(argv[0]).name
        print(
            f"  {label}: {check['wall_s']:.1f} s, peak RSS {check['peak_rss_mb']:.0f} MB, {state}"
        )
        if check["status"] != 0:
            print("  " + str(check["output"]).strip().replace("\n", "\n  ")[-800:])
    port = free_port()
    launch: Launch = launch_for(port, work, zone_file)
    result.update(version=launch.version, argv=launch.argv)
    print(f"  {launch.version} on {LOCALHOST}:{port}: " + " ".join(launch.argv))
    queries = work / "load.bin"
    writer = BinaryWriter(queries)
    writer.add_all(plain_query(n, "A") for n in zone.load_names)
    writer.close()
    with running(launch.argv, work, name, cwd=launch.cwd) as proc:
        mark = cpu_mark([proc.pid])
        try:
            ready = wait_ready(proc, port, ORIGIN, args.large_timeout, probe=(zone.probe_name, "A"))
        except BenchError as exc:
            result["failed"] = f"{exc}: {tail(work / f'{name}.stderr', 800)}"
            print(f"  FAILED: {result['failed']}")
            return result
        other = other_cpu_pct(mark, cpu_mark([proc.pid]))
        time.sleep(1.0)  # let start-up garbage settle before reading memory
        mem = session_memory(proc.pid)
        result.update(
            first_answer_s=ready, rss_mb=mem.rss_mb, pss_mb=mem.pss_mb, load_other_cpu_pct=other
        )
        print(
            f"  first answer after {ready:.1f} s; RSS {mem.rss_mb:.0f} MB "
            f"(PSS {mem.pss_mb:.0f} MB, {mem.processes} processes); other processes used "
            f"{other:.0f} % of a core meanwhile"
        )
        result["reload"] = reload_under_load(name, proc, port, work, zone, zone_file, args)
    return result


def reload_under_load(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    work: Path,
    zone: LargeZone,
    zone_file: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    out = work / "loadgen.json"
    gen = [sys.executable, str(LOADGEN), "--port", str(port), "--rate", f"{args.reload_qps:g}"]
    gen += ["--queries", str(work / "load.bin"), "--out", str(out)]
    gen_argv = pinned(args.client_cpu, gen)
    timeline: dict[str, float] = {}
    with running(gen_argv, work, "loadgen") as loadgen:
        time.sleep(3.0)  # a steady baseline before the change
        if exited(loadgen.pid):
            raise BenchError(f"load generator died: {tail(work / 'loadgen.stderr')}")
        mem = MemorySampler(proc.pid)
        mem.start()
        mark = cpu_mark([proc.pid, loadgen.pid])
        staged = zone_file.with_name("." + zone_file.name + ".new")
        shutil.copyfile(zone.changed, staged)
        staged.replace(zone_file)  # atomic, as the README asks of operators
        timeline["trigger"] = time.monotonic()
        trigger_reload(name, proc, work)
        seen = None
        while time.monotonic() - timeline["trigger"] < args.large_timeout:
            if answer_of(port, zone.changed_name) == NEW_ADDRESS:
                seen = time.monotonic()
                break
            if exited(proc.pid):
                break
            time.sleep(0.02)
        timeline["seen"] = seen if seen is not None else time.monotonic()
        time.sleep(2.0)  # and a little after
        # (CPU of server processes that exit meanwhile, like NSD's old server, counts
        # as other processes': an upper bound)
        other = other_cpu_pct(mark, cpu_mark([proc.pid, loadgen.pid]))
        peak = mem.stop()
    stats = load_stats(out, timeline)
    reload_s = timeline["seen"] - timeline["trigger"]
    res: dict[str, Any] = {
        "reload_s": reload_s if seen is not None else None,
        "timed_out": seen is None,
        "peak_rss_mb": peak,
        "other_cpu_pct": other,
        "load_qps": args.reload_qps,
        **stats,
    }
    before, during = stats["before"], stats["during"]
    state = f"{reload_s:.1f} s" if seen is not None else f"not seen within {reload_s:.0f} s"
    min_s = "-" if during["min_answered_per_s"] is None else during["min_answered_per_s"]
    print(
        f"  reload of a one-record change: {state}, peak RSS {peak:.0f} MB; at "
        f"{args.reload_qps:g} qps offered: {before['answered_per_s']:.0f} answers/s before, "
        f"{during['answered_per_s']:.0f} during (worst second {min_s}); lost "
        f"{stats['whole']['lost']} ({during['lost']} during), worst "
        f"{stats['whole']['worst_ms']:.1f} ms, {stats['whole']['slow']} answers over "
        f"{SLOW_MS:g} ms; other processes used {other:.0f} % of a core meanwhile"
    )
    return res


# --------------------------------------------------------------------------- mode


def run_large_zone(args: argparse.Namespace) -> dict[str, Any]:
    servers = [s for s in SERVERS if args.server_filter is None or s in args.server_filter]
    print(f"\n######## large zone: {args.large_records} records; {', '.join(servers)}")
    tmp = args.tmp / "large-zone"
    t0 = time.monotonic()
    zone = generate(tmp / f"{ORIGIN}.zone", args.large_records, args.seed + 40)
    size = zone.original.stat().st_size / 1e6
    print(
        f"generated {zone.original} ({size:.0f} MB, {zone.kinds}) in "
        f"{time.monotonic() - t0:.0f} s; change: {zone.changed_name} A -> {NEW_ADDRESS}"
    )

    def launcher(name: str) -> Any:
        if name == "geodns":
            # SIGHUP reloads, not the file watcher: the trigger time is then exact.
            return lambda port, work, zf: launch_geodns(
                args, port, work,
                GeodnsSetup(zf.parent, ORIGIN, extra_args=["--watch-interval", "86400"]),
            )  # fmt: skip
        if name == "knot":
            return lambda port, work, zf: launch_knot(args, port, work, [(ORIGIN, zf)])
        return lambda port, work, zf: launch_nsd(args, port, work, [(ORIGIN, zf)])

    results = []
    for name in servers:
        try:
            results.append(bench_large(name, launcher(name), args, zone, tmp))
        except BenchError as exc:
            print(f"  FAILED: {exc}", file=sys.stderr)
            results.append({"server": name, "failed": str(exc)})
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp / name / "zones")
    print_large_table(results)
    failed = {r["server"]: r["failed"] for r in results if "failed" in r}
    return {
        "title": f"large zone ({args.large_records} records)",
        "records": args.large_records,
        "kinds": zone.kinds,
        "results": [],  # the dnsperf-style table does not apply
        "large": results,
        "failed": failed,
    }


def print_large_table(results: list[dict[str, Any]]) -> None:
    cols = (
        ("server", 7), ("check s", 8), ("check MB", 9), ("1st answer s", 12), ("RSS MB", 7),
        ("reload s", 8), ("peak MB", 8), ("ans/s before", 12), ("ans/s during", 12),
        ("min/s", 6), ("lost", 6), ("worst ms", 9), (f">{SLOW_MS:g}ms", 7), ("other%", 6),
    )  # fmt: skip
    print("\n" + "  ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(cols)))
    for r in results:
        for line in large_rows(r):
            print(
                "  ".join(
                    f"{c:>{w}}" if i else f"{c:<{w}}"
                    for i, (c, (_, w)) in enumerate(zip(line, cols, strict=True))
                )
            )


def large_rows(r: dict[str, Any]) -> list[list[str]]:
    def f(v: Any, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    check = r.get("check", {})
    rel = r.get("reload", {})
    during = rel.get("during", {})
    reload_s = "timeout" if rel.get("timed_out") else f(rel.get("reload_s"))
    return [
        [
            r["server"],
            "timeout" if check.get("timed_out") else f(check.get("wall_s")),
            f(check.get("peak_rss_mb"), ".0f"),
            f(r.get("first_answer_s")) if "failed" not in r else "FAILED",
            f(r.get("rss_mb"), ".0f"),
            reload_s if rel else "-",
            f(rel.get("peak_rss_mb"), ".0f"),
            f(rel.get("before", {}).get("answered_per_s"), ".0f"),
            f(during.get("answered_per_s"), ".0f"),
            f(during.get("min_answered_per_s"), "d"),
            f(rel.get("whole", {}).get("lost"), "d"),
            f(rel.get("whole", {}).get("worst_ms"), ".1f"),
            f(rel.get("whole", {}).get("slow"), "d"),
            f(rel.get("other_cpu_pct"), ".0f"),
        ]
    ]
