"""RRL and cookies in a real `geodns serve`: a flood from one client is limited, TCP and
other clients are not, and a client with a valid server cookie is exempt."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import tcp_connect, tcp_read_message
from tests.helpers.servers import ServerProcess, geodns_server
from tests.helpers.wirecheck import dnslib_check

CONFIG = """
[server]
zones = "{zones}"

[rrl]
responses_per_second = 5
window = 2
slip = 2

[cookies]
secret = "e5e973e5a6b2a43f48e7dc849e37bfcf"
"""
FLOOD = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("rrl")
    zones = tmp / "zones"
    zones.mkdir()
    text = (REPO_ROOT / "zones" / "example.com.zone").read_text()
    (zones / "example.com.zone").write_text(
        "\n".join(line for line in text.splitlines() if "DYNA" not in line) + "\n")
    cfg = tmp / "geodns.toml"
    cfg.write_text(CONFIG.format(zones=zones))
    with geodns_server(zones, ["--config", str(cfg)]) as srv:
        yield srv


def query(name: str, cookie: bytes | None = None, qid: int = 0) -> bytes:
    options = [dns.edns.GenericOption(10, cookie)] if cookie is not None else []
    q = dns.message.make_query(name, "A", use_edns=0, options=options)
    q.id = qid
    return q.to_wire()


def flood(port: int, wire: bytes, count: int = FLOOD,
          source: str = "127.0.0.1") -> list[dns.message.Message]:
    """Send ``count`` copies at once from ``source``; every reply that came back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for _ in range(count):
            s.sendto(wire, ("127.0.0.1", port))
        s.settimeout(0.5)
        replies = []
        try:
            while True:
                replies.append(dnslib_check(s.recv(4096)))
        except TimeoutError:
            pass
    return replies


def full(replies: list[dns.message.Message]) -> int:
    return sum(1 for r in replies if r.answer and not r.flags & dns.flags.TC)


def slipped(replies: list[dns.message.Message]) -> int:
    return sum(1 for r in replies if r.flags & dns.flags.TC and not r.answer)


def cookie_of(m: dns.message.Message) -> bytes | None:
    return next((o.to_wire() for o in m.options if o.otype == 10), None)


def test_flood_from_one_client_is_limited(server: ServerProcess) -> None:
    replies = flood(server.port, query("static.example.com."))
    # 5 per second (and at most one more second's worth if the burst straddles one);
    # every other limited response slips as TC=1, the rest are dropped
    assert full(replies) <= 10, len(replies)
    assert slipped(replies) >= 30
    assert len(replies) <= FLOOD - 30
    assert all(r.rcode() == dns.rcode.NOERROR for r in replies)


def test_tcp_is_not_limited(server: ServerProcess) -> None:
    flood(server.port, query("mail.example.com."))
    with tcp_connect(server.port) as s:
        wire = query("mail.example.com.")
        s.sendall(b"".join(len(wire).to_bytes(2, "big") + wire for _ in range(30)))
        answers = [dns.message.from_wire(tcp_read_message(s)) for _ in range(30)]
    assert all(a.answer and not a.flags & dns.flags.TC for a in answers)


def test_another_client_is_unaffected(server: ServerProcess) -> None:
    flood(server.port, query("docs.example.com."))
    other = flood(server.port, query("docs.example.com."), count=5, source="127.0.1.1")
    assert full(other) == 5  # another /24


def test_valid_cookie_exempts(server: ServerProcess) -> None:
    wire = query("ns1.example.com.", cookie=bytes(range(8)))
    flood(server.port, wire)  # this client and name are now over the limit
    with tcp_connect(server.port) as s:  # TCP answers, with our server cookie
        s.sendall(len(wire).to_bytes(2, "big") + wire)
        server_cookie = cookie_of(dns.message.from_wire(tcp_read_message(s)))
    assert server_cookie is not None and len(server_cookie) == 24
    replies = flood(server.port, query("ns1.example.com.", cookie=server_cookie))
    assert full(replies) == FLOOD
    assert all(cookie_of(r) == server_cookie for r in replies)
    # without it, the same client is still limited, and gets BADCOOKIE rather than TC
    replies = flood(server.port, wire)
    assert full(replies) <= 10
    bad = [r for r in replies if r.rcode() == dns.rcode.BADCOOKIE]
    assert len(bad) >= 30 and all(cookie_of(r) is not None for r in bad)


def test_limits_show_in_metrics(server: ServerProcess) -> None:
    flood(server.port, query("nothere.example.com."))
    url = f"http://127.0.0.1:{server.control_port()}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()

    def value(action: str, cls: str) -> float:
        m = re.search(rf'geodns_rrl_responses_total{{action="{action}",class="{cls}"}} (\S+)',
                      text)
        return float(m.group(1)) if m else 0.0

    assert value("dropped", "nxdomain") >= 30 and value("slipped", "nxdomain") >= 30
    assert value("dropped", "positive") >= 30
    assert re.search(r'geodns_cookies_total{result="badcookie_sent"} [1-9]', text), text
    assert "rrl: limiting" in server.stderr_text()



@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_dig_retries_badcookie_and_is_answered(server: ServerProcess) -> None:
    client = "00112233445566ff"
    flood(server.port, query("static.example.com.", cookie=bytes.fromhex(client)))
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+norec", "+tries=3", "+time=1",
         f"+cookie={client}", "static.example.com", "A"],
        capture_output=True, text=True, timeout=15).stdout
    # limited: a try is dropped or (slip 2: every other one) answered with BADCOOKIE and
    # our server cookie; dig's retry with that cookie is exempt
    assert ";; BADCOOKIE, retrying." in out, out
    assert "status: NOERROR" in out and "192.0.2.200" in out, out
    assert re.search(rf"COOKIE: {client}01000000[0-9a-f]{{24}} \(good\)", out), out


def test_reload_turns_rrl_on_and_off(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "rl.test.zone").write_text(
        "$ORIGIN rl.test.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 300\n"
        "@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.2\n")
    cfg = tmp_path / "geodns.toml"
    cfg.write_text(f'[server]\nzones = "{zones}"\n')
    with geodns_server(zones, ["--config", str(cfg)]) as srv:
        wire = query("www.rl.test.")
        assert full(flood(srv.port, wire, count=50)) == 50
        cfg.write_text(f'[server]\nzones = "{zones}"\n[rrl]\nresponses_per_second = 5\n'
                       "slip = 0\n")
        assert reload(srv) == 200
        assert full(flood(srv.port, wire, count=50)) <= 10
        cfg.write_text(f'[server]\nzones = "{zones}"\n')
        assert reload(srv) == 200
        assert full(flood(srv.port, wire, count=50)) == 50


def reload(srv: ServerProcess) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.control_port()}/reload", data=b"",
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)
