"""dnstap: what we write is read by BIND's dnstap-read (file) and by a Frame Streams
collector speaking the bidirectional handshake (socket); answers never wait for it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import dns.edns
import fstrm
import pytest
from dnstap_pb import dnstap_pb2 as pb

from geodns.config import DnstapConfig, parse_config
from geodns.handler import Handler
from geodns.ops.dnstap import CONTENT_TYPE, Dnstap
from geodns.ops.metrics import Metrics
from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import ask, make_query, tcp_query, udp_query
from tests.helpers.servers import geodns_server

pytestmark = pytest.mark.timeout(90)
ZONES = REPO_ROOT / "zones"
DNSTAP_READ = shutil.which("dnstap-read")


def config_with(tmp_path: Path, dnstap: str) -> Path:
    text = (REPO_ROOT / "geodns.toml").read_text().replace(
        'zones = "zones"', f'zones = "{ZONES}"')
    path = tmp_path / "geodns.toml"
    path.write_text(text + "\n[dnstap]\n" + dnstap)
    return path


def send_queries(port: int) -> list[tuple[str, str]]:
    """Steered (twice: the second is a packet-cache hit), static over TCP, NXDOMAIN."""
    ecs = dns.edns.ECSOption("81.2.69.0", 24)
    www = make_query("www.example.com", "A", options=[ecs])
    for _ in range(2):
        reply = ask(port, www)
        assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["192.0.2.20"]
    tcp_query(port, make_query("static.example.com", "A").to_wire())
    assert udp_query(port, make_query("nothere.example.com", "AAAA").to_wire()) is not None
    return [("www.example.com", "A"), ("www.example.com", "A"),
            ("static.example.com", "A"), ("nothere.example.com", "AAAA")]


def stop(srv: object) -> None:
    """SIGTERM and wait, so the writer flushes and closes the stream with STOP."""
    proc = srv.proc  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)


@pytest.mark.skipif(DNSTAP_READ is None, reason="dnstap-read (bind9-dnsutils) not installed")
def test_dnstap_read_decodes_our_file_with_every_query(tmp_path: Path) -> None:
    tap = tmp_path / "geodns.dnstap"
    cfg = config_with(tmp_path, f'file = "{tap}"\n')
    with geodns_server(ZONES, ["--config", str(cfg)]) as srv:
        sent = send_queries(srv.port)
        stop(srv)
    assert DNSTAP_READ is not None
    r = subprocess.run([DNSTAP_READ, str(tap)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    got = re.findall(r" (AQ|AR) 127\.0\.0\.1:\d+ (?:->|<-) \S+ (UDP|TCP) \d+b (\S+)/IN/(\S+)",
                     r.stdout)
    got = [g for g in got if g[2:] != ("example.com", "SOA")]  # the readiness probe
    expected = []
    for (name, qtype), proto in zip(sent, ("UDP", "UDP", "TCP", "UDP"), strict=True):
        expected += [("AQ", proto, name, qtype), ("AR", proto, name, qtype)]
    assert got == expected, r.stdout
    # The YAML view decodes the whole response too: the steered answer and the rcode.
    y = subprocess.run([DNSTAP_READ, "-y", str(tap)], capture_output=True, text=True,
                       timeout=30).stdout
    probes = y.count("'example.com. IN SOA'") // 2
    assert y.count("type: AUTH_QUERY") == 4 + probes
    assert y.count("type: AUTH_RESPONSE") == 4 + probes
    assert "www.example.com.\t60\tIN\tA\t192.0.2.20" in y
    assert "status: NXDOMAIN" in y
    assert "identity:" in y and "version: geodns " in y


@pytest.mark.skipif(DNSTAP_READ is None, reason="dnstap-read (bind9-dnsutils) not installed")
def test_sampling_and_the_previous_file_kept(tmp_path: Path) -> None:
    tap = tmp_path / "geodns.dnstap"
    tap.write_bytes(b"the previous run")
    cfg = config_with(tmp_path, f'file = "{tap}"\nsample = 0.25\n')
    with geodns_server(ZONES, ["--config", str(cfg)]) as srv:
        q = make_query("static.example.com", "A").to_wire()
        for _ in range(40):
            assert udp_query(srv.port, q) is not None
        stop(srv)
    assert DNSTAP_READ is not None
    out = subprocess.run([DNSTAP_READ, str(tap)], capture_output=True, text=True,
                         timeout=30).stdout
    # 40 queries at 0.25: exactly 10 (the sampler keeps exact fractions, no dice).
    # (geodns_server's readiness probe is one SOA query, sampled like the rest.)
    aq = [line for line in out.splitlines() if " AQ " in line]
    assert len(aq) in (10, 11), out
    assert Path(f"{tap}.1").read_bytes() == b"the previous run"


class Collector:
    """A minimal dnstap collector on a Unix socket: ACCEPTs, reads data, FINISHes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.controls: list[tuple[int, list[bytes]]] = []  # (type, content types)
        self.messages: list[pb.Dnstap] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = fstrm.FstrmCodec()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            codec.append(data)
            while codec.process():
                ctrl, types, payload = codec.decode()
                if ctrl == fstrm.FSTRM_DATA_FRAME:
                    msg = pb.Dnstap()
                    msg.ParseFromString(payload)
                    self.messages.append(msg)
                    continue
                self.controls.append((ctrl, types))
                if ctrl == fstrm.FSTRM_CONTROL_READY:
                    writer.write(codec.encode_ctrlaccept(CONTENT_TYPE))
                elif ctrl == fstrm.FSTRM_CONTROL_STOP:
                    writer.write(codec.encode(fstrm.FSTRM_CONTROL_FINISH))
                await writer.drain()
        writer.close()

    def __enter__(self) -> Collector:
        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(self._serve, str(self.path))

        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_socket_handshake_and_messages_reach_a_collector(tmp_path: Path) -> None:
    sock = tmp_path / "dnstap.sock"
    cfg = config_with(tmp_path, f'socket = "{sock}"\n')
    with Collector(sock) as collector, geodns_server(ZONES, ["--config", str(cfg)]) as srv:
        deadline = time.monotonic() + 10
        while not collector.controls and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = send_queries(srv.port)
        stop(srv)
        deadline = time.monotonic() + 10
        while len(collector.controls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    kinds = [c for c, _ in collector.controls]
    assert kinds == [fstrm.FSTRM_CONTROL_READY, fstrm.FSTRM_CONTROL_START,
                     fstrm.FSTRM_CONTROL_STOP]
    assert collector.controls[0][1] == [CONTENT_TYPE]
    assert collector.controls[1][1] == [CONTENT_TYPE]
    # Skip the readiness probe (example.com SOA); then one query/response pair each.
    msgs = [m.message for m in collector.messages]
    pairs = [(m.type, dns_name(m)) for m in msgs if dns_name(m) != "example.com."]
    expected = []
    for name, _ in sent:
        expected += [(pb.Message.AUTH_QUERY, name + "."), (pb.Message.AUTH_RESPONSE, name + ".")]
    assert pairs == expected
    resp = [m for m in msgs if m.type == pb.Message.AUTH_RESPONSE]
    assert all(m.socket_family == pb.INET and m.query_address == bytes([127, 0, 0, 1])
               for m in resp)
    assert [m.socket_protocol for m in resp][-3:] == [pb.UDP, pb.TCP, pb.UDP]
    assert all(m.response_time_sec >= m.query_time_sec > 1_600_000_000 for m in resp)


def test_steered_answers_carry_their_arm_and_fence(tmp_path: Path) -> None:
    """Analysts reading dnstap see each steered answer's experiment arm and fence in the
    Dnstap ``extra`` field, from fresh answers and packet-cache replays alike."""
    sock = tmp_path / "dnstap.sock"
    cfg = config_with(tmp_path, f'socket = "{sock}"\n')
    text = cfg.read_text().replace(
        "[pools.www]\n", "[pools.www]\narms = { control = 50, canary = 50 }\n", 1)
    cfg.write_text(text + '\n[fences.gb]\ncountries = ["GB"]\npops = ["fra"]\n')
    with Collector(sock) as collector, geodns_server(ZONES, ["--config", str(cfg)]) as srv:
        deadline = time.monotonic() + 10
        while not collector.controls and time.monotonic() < deadline:
            time.sleep(0.05)
        send_queries(srv.port)
        stop(srv)
        deadline = time.monotonic() + 10
        while len(collector.controls) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    www = [m for m in collector.messages if dns_name(m.message) == "www.example.com."]
    assert len(www) == 4  # two queries (fresh, then a packet-cache hit), two answers
    arms = {m.extra for m in www}
    assert arms in ({b"arm=control fence=gb"}, {b"arm=canary fence=gb"}), arms
    others = [m for m in collector.messages if dns_name(m.message) != "www.example.com."]
    assert others and not any(m.HasField("extra") for m in others)


def dns_name(m: pb.Message) -> str:
    import dns.message

    wire = m.query_message or m.response_message
    return dns.message.from_wire(wire).question[0].name.to_text()


def test_answers_never_wait_for_a_missing_collector(tmp_path: Path) -> None:
    sock = tmp_path / "nobody-listens.sock"
    cfg = config_with(tmp_path, f'socket = "{sock}"\nqueue = 5\n')
    with geodns_server(ZONES, ["--config", str(cfg)]) as srv:
        q = make_query("static.example.com", "A").to_wire()
        start = time.monotonic()
        for _ in range(200):
            assert udp_query(srv.port, q, timeout=2) is not None
        assert time.monotonic() - start < 10
        import urllib.request

        url = f"http://127.0.0.1:{srv.control_port()}/metrics"
        deadline = time.monotonic() + 10
        dropped = 0.0
        while time.monotonic() < deadline:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            m = re.search(r"^geodns_dnstap_dropped_total (\S+)$", body, re.M)
            dropped = float(m.group(1)) if m else 0.0
            if dropped >= 190:
                break
            time.sleep(0.2)
        assert dropped >= 190, body
        assert "cannot connect to socket" in srv.stderr_text()


# --------------------------------------------------------------------------- in-process


class Inner:
    """A stand-in for Handler.handle that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes, client: str, tcp: bool, out: object = None) -> bytes | None:
        self.calls += 1
        return b"R" + data


def test_wrap_samples_exactly_and_drops_when_full() -> None:
    metrics = Metrics(process=False)
    tap = Dnstap(DnstapConfig(file=Path("/dev/null"), sample=0.3, queue=4), metrics)
    inner = Inner()
    handle = tap.wrap(inner)
    for i in range(10):
        assert handle(bytes([i]), "192.0.2.1", False) == b"R" + bytes([i])
    assert inner.calls == 10  # every query answered, sampled or not
    assert tap.pending == 3  # 10 x 0.3
    for i in range(10):
        handle(bytes([i]), "192.0.2.1", False)
    assert tap.pending == 4 and tap.dropped == 2 == metrics.dnstap_dropped


def test_handler_is_not_wrapped_when_dnstap_is_off() -> None:
    """Zero cost when off: the listeners call Handler.handle itself."""
    from geodns.server import ServeOptions, Server
    from geodns.zones.store import build_store, read_zone_dir

    store = build_store(read_zone_dir(str(ZONES)))
    config = parse_config((REPO_ROOT / "geodns.toml").read_text(), REPO_ROOT / "geodns.toml")
    server = Server(ServeOptions(str(ZONES), []), store, config)
    assert server.dnstap is None
    assert server.handler.handle.__func__ is Handler.handle  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        server.runtime.geo.close()  # type: ignore[union-attr]
