"""End to end with real processes: a load feed raises one POP's load and part of its
clients move, spread over the other POPs, then come back when the load falls; and
``geodns simulate --from`` predicts exactly what the server answers under those loads.

The feed is a small HTTP server of the test (loopback) that closes the loop like a
real POP would: a thread keeps asking geodns where 200 client /24s go (ECS queries),
and the feed reports each POP's load as the demand of the clients it serves, as last
measured (so answering a poll takes no time, like reading a metric).
Pool ``web`` is failover a, b, c with ``spill = true``: every client's first choice
is a; a's target is 0.8 x 1000.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.servers import geodns_cmd, geodns_server
from tests.traffic.e2e import answer, load_feed

pytestmark = pytest.mark.timeout(180)

INTERVAL = 0.5
ADDRESS = {"192.0.2.10": "a", "192.0.2.20": "b", "192.0.2.30": "c"}
QNAME = "www.spill.test."
ZONE = """$ORIGIN spill.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  5 IN DYNA web
"""
CONFIG = """
[loads.edge]
type = "http"
url = "{url}"
interval = {interval}
timeout = 0.4
max_age = 5

[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.10"]
capacity = 1000
load = "edge"

[pops.b]
lat = 48.9
lon = 2.35
ipv4 = ["192.0.2.20"]
capacity = 1000
load = "edge"

[pops.c]
lat = 51.5
lon = -0.1
ipv4 = ["192.0.2.30"]
capacity = 1000
load = "edge"

[pools.web]
strategy = "failover"
pops = ["a", "b", "c"]
ttl = 1                          # a share waits one TTL between moves
spill = true
spill_at = 0.8
spill_step = 0.1
"""
CLIENTS = [f"10.{i // 256}.{i % 256}.0" for i in range(200)]  # 200 distinct /24s
BASE = {"a": 0.0, "b": 100.0, "c": 300.0}  # load the POPs carry for other traffic


def where(port: int, clients: list[str]) -> Counter[str]:
    """Which POP each client /24 gets now."""
    got: Counter[str] = Counter()
    for c in clients:
        addresses, _ = answer(port, QNAME, c, 24)
        got[ADDRESS[addresses[0]]] += 1
    return got


class ClosedLoop:
    """The feed's view: a demand spread over the POPs as geodns answered last."""

    def __init__(self) -> None:
        self.demand = 500.0
        self.frozen: dict[str, float] | None = None
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter({"a": len(CLIENTS)})
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def measure(self, port: int) -> None:
        """Keep measuring in a thread until ``stop``."""
        def run() -> None:
            while not self.stop.is_set():
                counts = where(port, CLIENTS)
                with self.lock:
                    self.counts = counts
                time.sleep(0.05)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)

    def __call__(self) -> dict[str, Any]:
        with self.lock:
            if self.frozen is not None:
                return dict(self.frozen)
            per_client = self.demand / len(CLIENTS)
            return {p: BASE[p] + per_client * self.counts[p] for p in BASE}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode())


def wait_for(pred: Callable[[], bool], limit: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > limit:
            raise AssertionError(f"not within {limit}s")
        time.sleep(step)
    return time.monotonic() - start


def test_load_moves_part_of_the_clients_and_they_come_back(
        tmp_path: Path, report_line: Callable[[str], None]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "spill.test.zone").write_text(ZONE)
    loop = ClosedLoop()
    with load_feed(loop) as feed:
        cfg = tmp_path / "geodns.toml"
        cfg.write_text(CONFIG.format(url=feed.url, interval=INTERVAL))
        with geodns_server(zones, ["--config", str(cfg)]) as srv:
            control = f"http://127.0.0.1:{srv.control_port()}"
            loop.measure(srv.port)

            def share() -> float:
                shares = get_json(control + "/status")["steering"]["spill"]["shares"]
                return float(shares["web"]["a"])

            # demand 500 on a (50 % of its capacity): nobody moves, scope 0
            wait_for(lambda: feed.requests >= 3, 10)
            assert where(srv.port, CLIENTS) == {"a": 200}
            assert answer(srv.port, QNAME, CLIENTS[0], 24) == (["192.0.2.10"], 0)

            # demand 1500: a sheds, in steps of at most spill_step per poll
            t0 = time.monotonic()
            loop.demand = 1500.0
            first = wait_for(lambda: where(srv.port, CLIENTS[:50])["a"] < 50, 10, 0.02)
            shares = [(time.monotonic() - t0, share())]
            while time.monotonic() - t0 < 15:
                time.sleep(0.1)
                shares.append((time.monotonic() - t0, share()))
            # settled: the moved blocks stay where they went (no hopping between b, c)
            splits = []
            for _ in range(5):
                seen = where(srv.port, CLIENTS)
                splits.append((seen["b"], seen["c"]))
                time.sleep(INTERVAL)
            assert max(b for b, _ in splits) - min(b for b, _ in splits) <= 4, splits
            assert max(c for _, c in splits) - min(c for _, c in splits) <= 4, splits
            steps = [b - a for (_, a), (_, b) in itertools.pairwise(shares)]
            biggest = max(steps)
            assert 0 < biggest <= 0.1 + 1e-6, steps
            settled = shares[-1][1]
            assert abs(settled - (1 - 800 / 1500)) < 0.1, shares[-10:]
            seen = where(srv.port, CLIENTS)
            moved = seen["b"] + seen["c"]
            # part of a's clients moved, and not all to one POP
            assert 0.3 * 200 < moved < 0.65 * 200, seen
            assert seen["b"] > 0.1 * moved and seen["c"] > 0.1 * moved, seen
            reached = next(t for t, s in shares if s >= settled - 0.05)
            # a moved client's scope is its /24 (never wider than the hash unit): a /32
            # inside that /24 moves with it
            moved_client = next(c for c in CLIENTS
                                if answer(srv.port, QNAME, c, 24)[0] != ["192.0.2.10"])
            addresses, scope = answer(srv.port, QNAME, moved_client[:-1] + "77", 32)
            assert scope == 24 and addresses != ["192.0.2.10"]
            if shutil.which("dig"):
                out = subprocess.run(["dig", "@127.0.0.1", "-p", str(srv.port), QNAME,
                                      f"+subnet={moved_client}/24", "+short", "+time=2",
                                      "+tries=1"], capture_output=True, text=True, timeout=10)
                assert out.stdout.split() in (["192.0.2.20"], ["192.0.2.30"]), out.stdout
            # explain, status, page and metrics say why
            txt = subprocess.run(["dig", "@127.0.0.1", "-p", str(srv.port),
                                  "_explain." + QNAME, "TXT", f"+subnet={moved_client}/24",
                                  "+short", "+time=2", "+tries=1"], capture_output=True,
                                 text=True, timeout=10).stdout if shutil.which("dig") else ""
            if txt:
                assert "spill: a load" in txt and "of capacity 1000" in txt, txt
                assert "moved to" in txt, txt
            status = get_json(control + "/status")
            a = next(p for p in status["pops"] if p["name"] == "a")
            assert a["capacity"] == 1000 and 600 < a["load"] < 1100, a
            assert a["utilisation"] == pytest.approx(a["load"] / 1000)
            page = urllib.request.urlopen(control + "/", timeout=5).read().decode()
            assert "of 1000 (" in page and "sheds " in page
            metrics = urllib.request.urlopen(control + "/metrics", timeout=5).read().decode()
            assert 'geodns_spill_share{pool="web",pop="a"}' in metrics
            assert 'geodns_pop_load{pop="a"}' in metrics
            assert 'geodns_pop_capacity{pop="a"} 1000.0' in metrics

            # the demand falls to 500: every client comes back, a step per poll
            loop.demand = 500.0
            back = wait_for(lambda: where(srv.port, CLIENTS) == {"a": 200}, 20, 0.1)
            wait_for(lambda: share() == 0.0, 3 * INTERVAL + 1)  # the last, tiny steps
            report_line(
                f"spill e2e (interval {INTERVAL}s, ttl 1s, spill_step 0.1, demand 500 -> "
                f"1500 -> 500 on a, target 800): first clients moved {first:.2f}s after the "
                f"load rose; "
                f"largest share step per poll {biggest:.3f}; settled at {settled:.2f} of a's "
                f"blocks (ideal {1 - 800 / 1500:.2f}) after {reached:.1f}s; moved: b {seen['b']}, "
                f"c {seen['c']} of 200 /24s; all back {back:.1f}s after the load fell")
            print(f"\nfirst move {first:.2f}s, step {biggest:.3f}, settled {settled:.2f} "
                  f"after {reached:.1f}s, b/c {seen['b']}/{seen['c']}, back {back:.1f}s")

            # frozen loads (a exactly at its target: the share holds still): simulate
            # --from predicts the server's answers for other clients, now and drained
            loop.demand = 1500.0
            wait_for(lambda: share() > 0.3, 10, 0.1)
            with loop.lock:
                loop.frozen = {"a": 800.0, "b": 250.0, "c": 350.0}
            time.sleep(3 * INTERVAL)
            frozen = share()
            time.sleep(3 * INTERVAL)
            assert share() == frozen
            loop.close()
            _compare_with_simulate(tmp_path, cfg, srv.port, control)


def _compare_with_simulate(tmp_path: Path, cfg: Path, port: int, control: str) -> None:
    clients = [f"11.{i // 256}.{i % 256}.0" for i in range(300)]
    csv = tmp_path / "clients.csv"
    csv.write_text("".join(f"{c}/24,1\n" for c in clients))

    def simulate(*extra: str) -> dict[str, Any]:
        out = subprocess.run(geodns_cmd("simulate", "--config", str(cfg), "--from", control,
                                        "--clients", str(csv), "--json", *extra),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    predicted = simulate("--drain", "b")
    served = where(port, clients)
    assert served["b"] > 0 and served["c"] > 0 and served["a"] < 300, served
    assert {p: v["now_qps"] for p, v in predicted["pops"].items() if v["now_qps"]} == \
        {p: float(n) for p, n in served.items()}
    # drain b on the server: a's moved blocks go to c only, as predicted
    req = urllib.request.Request(control + "/overrides", method="PUT",
                                 data=json.dumps({"target": "b", "state": "drain"}).encode())
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    wait_for(lambda: where(port, clients[:20])["b"] == 0, 5)
    drained = where(port, clients)
    assert {p: v["scenario_qps"] for p, v in predicted["pops"].items() if v["scenario_qps"]} \
        == {p: float(n) for p, n in drained.items()}
    assert drained["c"] > served["c"]
