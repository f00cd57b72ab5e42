"""The benchmark harness (tools/bench, tools/benchlib) measures what it claims: the
"never repeated" query files really never repeat, ECS queries carry the client they
name, targets pass only with the ratio and zero lost queries, and the reload load
generator counts lost queries and latencies."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import subprocess
import sys
import threading
from array import array
from pathlib import Path

import dns.edns
import dns.message
import pytest

from tests.helpers.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))

from benchlib.clients import LocatedIndex, continent_quotas, sample_diverse
from benchlib.dnsperf import parse_dnsperf
from benchlib.largezone import generate, window_stats
from benchlib.report import Target, evaluate
from benchlib.wire import EcsQueries
from benchlib.workloads import MIN_DISTINCT, RandomNames, build_diverse, build_random


def read_messages(path: Path) -> list[bytes]:
    data, out, pos = path.read_bytes(), [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("!H", data, pos)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def small_index() -> LocatedIndex:
    """Located space: EU 10.0.0.0/16 (256 /24s) + 11.0.0.0/24, OC only 13.0.0.0/24 (both
    shorter than their share), a /8 for each other continent; one IPv6 /40."""
    idx = LocatedIndex()
    for cont, nets in {
        "EU": ["10.0.0.0/16", "11.0.0.0/24"],
        "NA": ["12.0.0.0/8"],
        "AS": ["14.0.0.0/8"],
        "SA": ["15.0.0.0/8"],
        "AF": ["16.0.0.0/8"],
        "OC": ["13.0.0.0/24"],
    }.items():
        idx.v4_starts[cont] = array("I")
        idx.v4_cum[cont] = array("Q", [0])
        for n in nets:
            net = ipaddress.ip_network(n)
            idx.v4_starts[cont].append(int(net.network_address) >> 8)
            idx.v4_cum[cont].append(idx.v4_cum[cont][-1] + (1 << (24 - net.prefixlen)))
    idx.v6_starts.append(int(ipaddress.IPv6Address("2001:db8:100::")) >> 72)
    idx.v6_plens.append(40)
    return idx


class FakeReader:
    """maxminddb reader stand-in: every address is in Frankfurt."""

    def get(self, address: str) -> dict[str, object]:
        return {
            "location": {"latitude": 50.1, "longitude": 8.7},
            "country": {"iso_code": "DE"},
            "continent": {"code": "EU"},
        }


def test_ecs_queries_carry_the_client_network() -> None:
    q = EcsQueries("www.example.com", "A")
    v4 = dns.message.from_wire(q.v4(int(ipaddress.IPv4Address("81.2.69.0")) >> 8))
    v6 = dns.message.from_wire(q.v6(int(ipaddress.IPv6Address("2001:db8:aa:bb00::")) >> 72))
    (e4,) = [o for o in v4.options if isinstance(o, dns.edns.ECSOption)]
    (e6,) = [o for o in v6.options if isinstance(o, dns.edns.ECSOption)]
    assert (e4.address, e4.srclen, e4.scopelen) == ("81.2.69.0", 24, 0)
    assert (e6.address, e6.srclen) == ("2001:db8:aa:bb00::", 56)
    assert str(v4.question[0]) == "www.example.com. IN A"
    assert v4.flags == 0 and v4.edns == 0 and v4.payload == 1232


def test_diverse_clients_are_distinct_located_and_split_by_continent() -> None:
    idx = small_index()
    quota = continent_quotas(idx, 10_000)
    assert sum(quota.values()) == 10_000
    assert quota["OC"] == 1 and quota["EU"] == 257  # all they have: the rest went elsewhere
    assert quota["NA"] > 2400 and quota["SA"] > 1000
    clients = sample_diverse(idx, 1000, 300, seed=1)
    assert len(set(clients.v4)) == 1000 and len(set(clients.v6)) == 300
    located = [
        ipaddress.ip_network(n)
        for n in ("10.0.0.0/16", "11.0.0.0/24", "12.0.0.0/8", "13.0.0.0/24", "14.0.0.0/8",
                  "15.0.0.0/8", "16.0.0.0/8")
    ]  # fmt: skip
    for net24 in clients.v4:
        assert any(ipaddress.IPv4Address(net24 << 8) in n for n in located)
    v6net = ipaddress.ip_network("2001:db8:100::/40")
    assert all(ipaddress.IPv6Address(n << 72) in v6net for n in clients.v6)
    assert sample_diverse(idx, 1000, 300, seed=1) == clients  # deterministic


def test_too_few_located_networks_is_an_error_not_a_hang() -> None:
    idx = small_index()
    with pytest.raises(Exception, match="located /24s"):
        continent_quotas(idx, 300_000)
    with pytest.raises(Exception, match="located IPv6 /56s"):
        sample_diverse(idx, 10, 70_000, seed=1)


def bench_args(**kw: object) -> argparse.Namespace:
    base = {"duration": 1.0, "max_qps": 150_000.0, "v6_share": 0.1, "verify_sample": 20,
            "seed": 7}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_diverse_file_never_repeats_a_query(tmp_path: Path) -> None:
    work = build_diverse(bench_args(), tmp_path, FakeReader(), small_index())
    msgs = read_messages(work.datafile)
    assert len(set(msgs)) == len(msgs) == work.queries, "a query repeats"
    assert not work.repeats  # dnsperf reads it once (-n 1)
    v6 = sum(1 for m in msgs if m[-11:-9] == b"\x00\x02")  # ECS family (a /56: 7 bytes)
    # 1 s x 150k queries is below the floor: 200,000 distinct /24s, plus 10 % /56s
    assert len(msgs) - v6 == MIN_DISTINCT
    assert v6 == round(0.1 * 200_000)
    held = {n for n, _ in work.held_out}
    timed = {
        f"{o.address}/{o.srclen}"
        for m in msgs[:5000]
        for o in dns.message.from_wire(m).options
        if isinstance(o, dns.edns.ECSOption)
    }
    assert held and not held & timed, "held-out check clients are in the timed file"


def test_file_size_follows_duration_and_max_qps(tmp_path: Path) -> None:
    work = build_random(bench_args(duration=2.0, max_qps=130_000.0), tmp_path, "bench.example")
    msgs = read_messages(work.datafile)
    assert len(msgs) == 260_000 and len(set(msgs)) == 260_000
    assert dns.message.from_wire(msgs[0]).question[0].name.to_text().endswith(".bench.example.")


def test_random_names_are_distinct() -> None:
    names = RandomNames("example.com", 3)
    got = {names.name(i) for i in range(100_000)}
    assert len(got) == 100_000


def test_dnsperf_end_of_input_is_flagged() -> None:
    out = """[Status] Testing complete (end of file)
  Queries sent:         200000
  Queries completed:    199990 (100.00%)
  Queries lost:         10 (0.00%)
  Response codes:       NXDOMAIN 199990 (100.00%)
  Run time (s):         2.301821
  Queries per second:   86887.729324
  Average Latency (s):  0.007632 (min 0.000019, max 0.021185)
  Latency StdDev (s):   0.003129
"""
    stats = parse_dnsperf(out)
    assert stats["input_exhausted"] and stats["lost"] == 10 and stats["qps"] > 86887
    assert not parse_dnsperf(out.replace("(end of file)", "(time limit)"))["input_exhausted"]


def run_result(server: str, qps: float, lost: int = 0, other: float = 0.0) -> dict[str, object]:
    return {"server": server, "qps": qps, "lost": lost, "other_cpu_pct": other,
            "server_cpu_pct": 100.0}  # fmt: skip


def test_targets_need_the_ratio_and_no_lost_queries() -> None:
    t = [Target("geodns", "nsd", 0.5)]
    assert evaluate(t, [run_result("geodns", 60), run_result("nsd", 100)])[0]["verdict"] == "PASS"
    assert evaluate(t, [run_result("geodns", 40), run_result("nsd", 100)])[0]["verdict"] == "FAIL"
    lost = evaluate(t, [run_result("geodns", 90, lost=3), run_result("nsd", 100)])[0]
    assert lost["verdict"] == "FAIL" and "lost 3" in lost["why"]
    noisy = evaluate(t, [run_result("geodns", 90), run_result("nsd", 100, other=50)])[0]
    assert noisy["verdict"] == "PASS" and "noisy" in noisy["why"]
    assert evaluate(t, [run_result("geodns", 90)])[0]["verdict"] == "n/a"


def test_window_stats_counts_late_and_lost_answers() -> None:
    sent = array("d", [0.0, 0.1, 0.2, 1.0, 1.1])
    lat = array("d", [0.001, -1.0, 0.2, 0.002, 0.003])
    w = window_stats(sent, lat, 0.0, 1.05)
    assert w["sent"] == 4 and w["lost"] == 1 and w["slow"] == 1
    assert w["worst_ms"] == pytest.approx(200.0)
    assert w["min_answered_per_s"] == 2  # answers received in the one whole second


def test_large_zone_has_the_records_and_one_change(tmp_path: Path) -> None:
    zone = generate(tmp_path / "large.example.zone", 1000, seed=1)
    orig = zone.original.read_text().splitlines()
    new = zone.changed.read_text().splitlines()
    records = [ln for ln in orig if " IN " in ln]
    assert len(records) == 1000 and sum(zone.kinds.values()) == 995
    diff = [(a, b) for a, b in zip(orig, new, strict=True) if a != b]
    assert len(diff) == 2  # the SOA serial and the one A record
    assert diff[1][1].endswith("IN A 198.51.100.77")


def test_loadgen_measures_latency_and_lost_queries(tmp_path: Path) -> None:
    """Against a responder that drops every 4th query: about a quarter are lost, the
    others are answered, every latency is recorded."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def respond() -> None:
        n = 0
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(512)
            except TimeoutError:
                continue
            n += 1
            if n % 4:
                srv.sendto(data, peer)

    thread = threading.Thread(target=respond, daemon=True)
    thread.start()
    queries = tmp_path / "q.bin"
    wire = dns.message.make_query("h0.large.example", "A").to_wire()
    queries.write_bytes(struct.pack("!H", len(wire)) + wire)
    out = tmp_path / "gen.json"
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tools/benchlib/loadgen.py"), "--port",
         str(srv.getsockname()[1]), "--rate", "400", "--queries", str(queries), "--out",
         str(out), "--timeout", "0.5"]
    )  # fmt: skip
    try:
        threading.Event().wait(1.5)
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        stop.set()
        thread.join()
        srv.close()
    data = array("d")
    data.frombytes(out.with_suffix(".bin").read_bytes())
    sent, lat = data[: len(data) // 2], data[len(data) // 2 :]
    assert 400 <= len(sent) <= 800
    lost = sum(1 for v in lat if v < 0)
    assert 0.2 * len(sent) <= lost <= 0.3 * len(sent)
    assert all(0 <= v < 0.5 for v in lat if v >= 0)


def test_bench_help_lists_every_mode() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools/bench"), "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for flag in ("--static", "--geo", "--cache-friendly", "--random", "--mix", "--large-zone"):
        assert flag in out.stdout


def test_bench_rejects_unknown_servers() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools/bench"), "--servers", "bind"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and "unknown ['bind']" in out.stderr
