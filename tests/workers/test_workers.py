"""`geodns serve --workers 2`, run for real: the kernel spreads queries over both
workers, /metrics adds them up exactly, reloads and health reach every worker (health
within 100 ms, measured), dead workers and a dead prober are started again.

The tests share one node (starting one compiles steering maps in three processes) and
run in file order: the later ones kill processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.rdatatype
import pytest

from tests.health.backends import ThreadedHttpBackend
from tests.util import geodns_server
from tests.workers.test_replace import Load

pytestmark = pytest.mark.timeout(240)

A, B = "192.0.2.10", "192.0.2.20"
ZONE = """$ORIGIN e2e.test.
$TTL 300
@    IN SOA ns1 hostmaster 1 7200 3600 1209600 300
     IN NS  ns1
ns1  IN A   192.0.2.1
www  30 IN DYNA web
"""

CONFIG = """
[server]
zones = "{zones}"

[admin]
state_file = "{state}"

[checks.a_web]
type = "http"
address = "127.0.0.1"
port = {port_a}
path = "/health"
interval = 0.3
timeout = 0.2
fall = 2
rise = 2

[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["{a}"]
health = "a_web"

[pops.b]
lat = 1.35
lon = 103.8
ipv4 = ["{b}"]

[pools.web]
strategy = "geo"
ttl = 5
ttl_on_failure = 5
nets."127.0.0.0/8" = ["a", "b"]
default = ["b"]
"""


class Node:
    def __init__(self, port: int, control: int, zones: Path, backend: ThreadedHttpBackend,
                 stderr: Callable[[], str], config: Path) -> None:
        self.config = config
        self.port = port
        self.control = control
        self.zones = zones
        self.backend = backend
        self.stderr = stderr

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", data=data,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if path != "/metrics" else raw.decode()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def status(self) -> dict[str, Any]:
        code, data = self.http("GET", "/status")
        assert code == 200
        return data

    def metric(self, name: str) -> float:
        _, text = self.http("GET", "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if re.match(rf"{name}(\{{|\s)", line))

    def ask(self, name: str = "www.e2e.test", qtype: str = "A",
            timeout: float = 2.0) -> dns.message.Message | None:
        """One query from a fresh socket (a new source port: any worker may get it)."""
        q = dns.message.make_query(name, qtype)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(q.to_wire(), ("127.0.0.1", self.port))
            try:
                wire, _ = s.recvfrom(65535)
            except TimeoutError:
                return None
        return dns.message.from_wire(wire)

    def answers(self, n: int = 24) -> set[str]:
        """The A records seen by ``n`` queries from ``n`` source ports."""
        seen: set[str] = set()
        for _ in range(n):
            m = self.ask()
            assert m is not None, "a query went unanswered"
            seen |= {rd.to_text() for rr in m.answer for rd in rr}
        return seen

    def workers(self) -> list[dict[str, Any]]:
        return self.status()["node"]["workers"]


def wait(pred: Callable[[], bool], limit: float, what: str) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > limit:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("workers")
    zones = root / "zones"
    zones.mkdir()
    (zones / "e2e.test.zone").write_text(ZONE)
    with ThreadedHttpBackend() as backend:
        config = root / "geodns.toml"
        config.write_text(CONFIG.format(zones=zones, state=root / "admin.state",
                                        port_a=backend.port, a=A, b=B))
        with geodns_server(zones, ["--config", str(config), "--workers", "2",
                                   "--watch-interval", "3600"],
                           ready_timeout=120) as srv:
            n = Node(srv.port, srv.control_port(timeout=120), zones, backend,
                     srv.stderr_text, config)
            wait(lambda: all(w["ready"] for w in n.workers()) and len(n.workers()) == 2,
                 120, "both workers ready")
            wait(lambda: n.answers(8) == {A}, 30, "POP a up (its first checks passed)")
            yield n


def test_the_kernel_spreads_queries_and_metrics_add_up(node: Node,
                                                       report_line: Callable[[str], None]
                                                       ) -> None:
    before = node.metric("geodns_queries_total")
    per_worker = {w["index"]: w["queries"] for w in node.workers()}
    sent = 400
    for _ in range(sent):
        assert node.ask("e2e.test", "SOA") is not None
    after = node.metric("geodns_queries_total")
    assert after - before == sent  # every worker counted, none twice
    served = {w["index"]: w["queries"] - per_worker[w["index"]] for w in node.workers()}
    assert sum(served.values()) == sent
    assert all(n > sent // 10 for n in served.values()), served  # both really answer
    report_line(f"workers: {sent} queries from {sent} source ports were answered "
                f"{served[0]} / {served[1]} by worker 0 / 1; /metrics counted {after - before:.0f}")


def test_reload_reaches_every_worker_and_a_bad_change_none(node: Node) -> None:
    zone = node.zones / "e2e.test.zone"
    good = ZONE.replace(" 1 7200", " 2 7200") + "new  IN A 192.0.2.99\n"
    zone.write_text(good)
    code, body = node.http("POST", "/reload")
    assert code == 200 and body["ok"], body
    st = node.status()
    assert all(w["generation"] == st["node"]["generation"] for w in st["node"]["workers"])
    for _ in range(16):  # every worker answers the new zone at once
        m = node.ask("new.e2e.test")
        assert m is not None and [rd.to_text() for rr in m.answer for rd in rr] == \
            ["192.0.2.99"]
    generation = st["node"]["generation"]

    zone.write_text(good + "broken IN A not-an-address\n")
    code, body = node.http("POST", "/reload")
    assert code == 422 or not body.get("ok"), body
    assert any("e2e.test.zone:" in p for p in body["problems"]), body
    st = node.status()
    assert st["node"]["generation"] == generation
    assert [w["generation"] for w in st["node"]["workers"]] == [generation] * 2
    for _ in range(16):
        m = node.ask("e2e.test", "SOA")
        assert m is not None and m.answer[0][0].serial == 2
    zone.write_text(good)


def test_new_steering_maps_start_fresh_workers_and_lose_nothing(
        node: Node, report_line: Callable[[str], None]) -> None:
    """A config change means new steering maps: fresh workers compile them beside the
    serving ones and take over; the serving ones never stall or drop a query."""
    before = {w["index"]: w["pid"] for w in node.workers()}
    text = node.config.read_text()
    node.config.write_text(text.replace("ttl = 5\n", "ttl = 7\n", 1))
    try:
        with Load(node.port, qname="www.e2e.test") as load:
            time.sleep(0.3)
            code, body = node.http("POST", "/reload")
            time.sleep(0.5)
        assert code == 200 and body["ok"], body
        st = node.status()
        assert all(w["generation"] == st["node"]["generation"] for w in st["node"]["workers"])
        assert all(w["pid"] != before[w["index"]] for w in st["node"]["workers"])
        for _ in range(12):
            m = node.ask()
            assert m is not None and m.answer[0].ttl == 7
        assert load.lost == [], f"{len(load.lost)} of {load.sent} lost"
        assert "starting fresh workers beside the serving ones" in node.stderr()
        report_line(f"workers: new steering maps, fresh workers took over: {load.sent} "
                    f"queries during the reload, {len(load.lost)} lost")
    finally:
        node.config.write_text(text)
        code, body = node.http("POST", "/reload")
        assert code == 200 and body["ok"], body


def test_health_and_overrides_reach_every_worker_within_100ms(
        node: Node, report_line: Callable[[str], None]) -> None:
    lags: list[float] = []
    seen: list[float] = []
    for _ in range(3):
        code, body = node.http("PUT", "/overrides", {"target": "a", "state": "drain"})
        assert code == 200, body
        put_done = time.monotonic()
        # black box: from the API's answer until every source port gets b
        seen.append(wait(lambda: node.answers(12) == {B}, 2.0, "drain seen by all"))
        st = node.status()
        node_gen = st["node"]["health_generation"]
        assert [w["health_generation"] for w in st["node"]["workers"]] == [node_gen] * 2
        lags += [w["health_lag_ms"] for w in st["node"]["workers"]]
        code, _ = node.http("DELETE", "/overrides/a")
        assert code == 200
        wait(lambda: node.answers(12) == {A}, 2.0, "override cleared everywhere")
        del put_done
    # a probe result: the backend fails, the supervisor's monitor sees it (fall = 2),
    # the workers answer b
    node.backend.set_mode("500")
    wait(lambda: node.answers(12) == {B}, 10, "failover")
    lags += [w["health_lag_ms"] for w in node.workers()]
    node.backend.set_mode("ok")
    wait(lambda: node.answers(12) == {A}, 10, "recovery")
    assert max(lags) < 100, lags
    assert max(seen) < 1.0, seen
    report_line(f"workers: a health snapshot reaches both workers in {max(lags):.2f} ms at "
                f"most ({len(lags)} changes; median {sorted(lags)[len(lags) // 2]:.2f} ms); "
                f"an override is answered by every worker {max(seen) * 1000:.0f} ms after "
                "the API's reply at most (12 queries per poll)")


def test_a_dead_worker_is_restarted_and_counts_stay(node: Node) -> None:
    before = node.metric("geodns_queries_total")
    victim = node.workers()[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait(lambda: node.workers()[0]["pid"] != victim["pid"] and node.workers()[0]["ready"],
         60, "worker 0 started again")
    st = node.status()
    w0 = st["node"]["workers"][0]
    assert w0["restarts"] == victim["restarts"] + 1
    assert w0["generation"] == st["node"]["generation"]  # it got the current state
    assert node.answers(24) == {A}
    assert node.metric("geodns_queries_total") >= before  # the dead one's counts stay
    assert node.metric("geodns_worker_restarts_total") >= 1
    assert "worker 0 (pid" in node.stderr()


def test_a_dead_prober_is_restarted_and_workers_keep_the_snapshot(node: Node) -> None:
    st = node.status()
    prober = st["node"]["prober"]["pid"]
    health = st["node"]["health_generation"]
    node.backend.set_mode("500")  # would fail over, if anyone probed...
    os.kill(prober, signal.SIGKILL)
    assert node.answers(24) == {A}  # ...the workers keep the last snapshot meanwhile
    assert node.status()["node"]["health_generation"] == health
    wait(lambda: node.status()["node"]["prober"]["pid"] not in (prober, None)
         and node.status()["node"]["prober"]["running"], 30, "prober started again")
    wait(lambda: node.answers(12) == {B}, 15, "the new prober's results count")
    node.backend.set_mode("ok")
    wait(lambda: node.answers(12) == {A}, 15, "recovery")
    assert "prober (pid" in node.stderr()
