"""`geodns explain` and `_explain.<name> TXT`: why a client gets the POP it gets."""

from __future__ import annotations

import subprocess
import sys

import dns.edns
import dns.message
import dns.rcode

from geodns.config import load_config
from geodns.generation import Generation
from geodns.handler import Handler
from geodns.runtime import Runtime
from geodns.zones.store import build_store, read_zone_dir
from tests.helpers.paths import REPO_ROOT
from tests.helpers.queries import ask, make_query
from tests.helpers.servers import geodns_server
from tests.helpers.wirecheck import dnslib_check

CONFIG = REPO_ROOT / "geodns.toml"


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geodns", "explain", *args,
                           "--config", str(CONFIG)], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def test_cli_explains_nearest_choice() -> None:
    r = explain("www.example.com", "A", "--client", "81.2.69.160")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "geoip 81.2.68.0/23: continent=EU country=GB" in out
    assert "#1 fra 647km up [CHOSEN]" in out
    assert "answer A ttl=60 scope=/" in out


def test_cli_what_if_down_shows_real_and_forced() -> None:
    r = explain("www.example.com", "--client", "81.2.69.0/24", "--down", "fra")
    assert r.returncode == 0, r.stderr
    assert "fra 647km down (real up, forced down) [skipped]" in r.stdout
    assert "#2 iad 5888km up [CHOSEN]" in r.stdout
    assert "ttl=10" in r.stdout  # ttl_on_failure: the decision passed over a down POP


def test_cli_static_and_errors() -> None:
    r = explain("static.example.com", "--client", "81.2.69.160")
    assert r.returncode == 0 and "not a steered (DYNA) name" in r.stdout
    bad = explain("www.example.com", "--client", "not-an-ip")
    assert bad.returncode == 2 and "geodns explain:" in bad.stderr
    typo = explain("www.example.com", "--client", "81.2.69.1", "--down", "frq")
    assert typo.returncode == 1 and "matches no POP" in typo.stderr


def test_explain_over_dns_with_dig_semantics() -> None:
    with geodns_server(REPO_ROOT / "zones", ["--config", str(CONFIG)]) as srv:
        q = make_query("_explain.www.example.com.", "TXT",
                       options=[dns.edns.ECSOption("81.2.69.0", 24)])
        m = ask(srv.port, q, tcp=True)
        lines = sorted(b"".join(rd.strings).decode() for r in m.answer for rd in r)
        assert lines[0].startswith("01 pool www (nearest) qtype A client 81.2.69.0")
        assert any("fra 647km up [CHOSEN]" in x for x in lines)
        # The plain question still gets its answer: _explain does not change it.
        www = ask(srv.port, make_query("www.example.com.", "A",
                                       options=[dns.edns.ECSOption("81.2.69.0", 24)]))
        assert [rd.to_text() for r in www.answer for rd in r] == ["192.0.2.20"]


def test_explain_is_only_for_allowed_clients() -> None:
    config = load_config(CONFIG)
    runtime = Runtime.load(config)
    store = build_store(read_zone_dir(str(REPO_ROOT / "zones")))
    h = Handler(Generation(store, runtime=runtime, explain_allowed=config.explain.allows))
    wire = dns.message.make_query("_explain.www.example.com.", "TXT").to_wire()
    outside = h.handle(wire, "198.51.100.7", True)  # first, so a cached answer would leak
    inside = h.handle(wire, "127.0.0.1", True)
    assert inside is not None and outside is not None
    dnslib_check(inside)
    dnslib_check(outside)
    assert dns.message.from_wire(inside).answer
    # Not allowed: the name is looked up like any other (no such name under www).
    refused = dns.message.from_wire(outside)
    assert not refused.answer and refused.rcode() == dns.rcode.NXDOMAIN
