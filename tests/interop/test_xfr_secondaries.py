"""geodns as the primary, Knot DNS and NSD as its secondaries, with TSIG.

After start-up (AXFR) and after each of several edits of the zone file (each sent by
NOTIFY and fetched by IXFR from geodns's journal), both secondaries must answer
exactly like geodns for every static name of the zone; the DYNA records reach them
as an unknown type (RFC 3597), byte for byte.
"""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

from tests.helpers.knot import knotd_path
from tests.helpers.queries import ask, make_query, tcp_query
from tests.xfr.servers import (
    KEY,
    ask_other,
    free_port,
    geodns,
    knot,
    metric,
    metrics,
    nsd_path,
    nsd_secondary,
    serial,
    tsig_toml,
    wait_until,
    write,
    zone,
)

pytestmark = [
    pytest.mark.skipif(knotd_path() is None, reason="knotd (Debian package knot) not installed"),
    pytest.mark.skipif(nsd_path() is None, reason="nsd (Debian package nsd) not installed"),
    pytest.mark.timeout(120),
]

ORIGIN = "geo.test."
# Each version of the zone: (serial, body).  Static names only, plus one DYNA.
VERSIONS = [
    (1, """www IN A 192.0.2.10
mail IN A 192.0.2.25
@ IN MX 10 mail
@ IN TXT "v=spf1 mx -all"
docs IN CNAME www
*.wild IN A 192.0.2.99
steered 60 IN DYNA web
"""),
    # change an address, add a name
    (2, """www IN A 192.0.2.11
mail IN A 192.0.2.25
@ IN MX 10 mail
@ IN TXT "v=spf1 mx -all"
docs IN CNAME www
*.wild IN A 192.0.2.99
steered 60 IN DYNA web
new IN TXT "added in 2"
"""),
    # delete a name, change a TTL, add an AAAA and a second MX
    (3, """www 120 IN A 192.0.2.11
www IN AAAA 2001:db8::11
@ IN MX 10 mail2
@ IN MX 20 mail2
mail2 IN A 192.0.2.26
@ IN TXT "v=spf1 mx -all"
docs IN CNAME www
*.wild IN A 192.0.2.99
steered 60 IN DYNA web
new IN TXT "added in 2"
"""),
    # a delegation with glue, a CNAME retargeted, the DYNA moved to another pool
    (4, """www 120 IN A 192.0.2.11
www IN AAAA 2001:db8::11
@ IN MX 20 mail2
mail2 IN A 192.0.2.26
@ IN TXT "v=spf1 mx -all"
docs IN CNAME mail2
*.wild IN A 192.0.2.98
steered 60 IN DYNA web2
new IN TXT "added in 2"
sub IN NS ns.sub
ns.sub IN A 192.0.2.53
"""),
]
QUESTIONS = [
    (ORIGIN, "SOA"), (ORIGIN, "NS"), (ORIGIN, "MX"), (ORIGIN, "TXT"), (ORIGIN, "A"),
    ("ns1", "A"), ("www", "A"), ("www", "AAAA"), ("mail", "A"), ("mail2", "A"),
    ("docs", "A"), ("docs", "CNAME"), ("x.wild", "A"), ("new", "TXT"), ("nothere", "A"),
    ("sub", "NS"), ("www.sub", "A"),
]
POOLS = """
[pops.a]
lat = 50.1
lon = 8.7
ipv4 = ["192.0.2.20"]

[pools.web]
strategy = "failover"
pops = ["a"]

[pools.web2]
strategy = "failover"
pops = ["a"]
"""


def knot_secondary(gport: int):  # type: ignore[no-untyped-def]
    def body(rundir: object) -> str:
        return f"""\
remote:
  - id: primary
    address: 127.0.0.1@{gport}
    key: {KEY}
acl:
  - id: notify
    address: 127.0.0.1
    key: {KEY}
    action: notify
template:
  - id: default
    storage: "{rundir}"
    zonefile-sync: -1
    semantic-checks: off
zone:
  - domain: {ORIGIN}
    master: primary
    acl: notify
"""
    return body


def _canon(m: dns.message.Message) -> tuple[str, list[str]]:
    return (dns.rcode.to_text(m.rcode()),
            sorted(line.lower() for r in m.answer for line in r.to_text().splitlines()))


def _name(rel: str) -> str:
    return rel if rel.endswith(".") else f"{rel}.{ORIGIN}"


def test_knot_and_nsd_follow_geodns_through_edits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    zones = tmp_path / "zones"
    zones.mkdir()
    zonefile = zones / "geo.test.zone"
    write(zonefile, zone(ORIGIN, *VERSIONS[0]))
    gport, kport, nport = free_port(), free_port(), free_port()
    config = f"""{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = ["127.0.0.1:{kport}", "127.0.0.1:{nport}"]
state_dir = "{tmp_path / 'state'}"
{POOLS}"""
    with geodns(config, zones, gport, workdir=tmp_path, ready_name=ORIGIN) as g, \
            knot(knot_secondary(gport), kport, ORIGIN) as (kd, _), \
            nsd_secondary([ORIGIN], gport, nport) as nsd:
        for number, (version, _) in enumerate(VERSIONS):
            if number:
                write(zonefile, zone(ORIGIN, *VERSIONS[number]))
            for port in (kd.port, nsd.port):
                wait_until(lambda p=port, v=version: serial(p, ORIGIN) == v, 15, step=0.05)
            for rel, qtype in QUESTIONS:
                q = make_query(_name(rel), qtype)
                ours = _canon(ask(g.port, q))
                assert _canon(ask_other(kd.port, q)) == ours, (version, rel, qtype, "knot")
                assert _canon(ask_other(nsd.port, q)) == ours, (version, rel, qtype, "nsd")
            # The DYNA record travels as TYPE65280: its RDATA is the pool name.
            pool = "web" if version < 4 else "web2"
            q = make_query(_name("steered"), "TYPE65280")
            for port in (kd.port, nsd.port):
                got = ask_other(port, q)
                rdatas = [rd.to_digestable() for r in got.answer for rd in r]
                assert rdatas == [bytes([len(pool)]) + pool.encode()], (version, port)

        log = g.stderr_text()
        text = metrics(g)
        # Start-up: whole zones; every edit after: from the journal, for both.
        assert (metric(text, "geodns_transfers_out_total", type="IXFR", outcome="incremental")
                or 0) >= 2 * (len(VERSIONS) - 1), log
        assert "IXFR of geo.test. to 127.0.0.1 (serial 4): incremental from 3" in log
        assert f"key {KEY}" in log
        assert (metric(text, "geodns_notify_sent_total", result="ok") or 0) >= 2

        # Unsigned, or signed with no key at all: refused (the key is required).
        axfr = make_query(ORIGIN, "AXFR")
        reply = dns.message.from_wire(tcp_query(g.port, axfr.to_wire()))
        assert reply.rcode() == dns.rcode.REFUSED
        assert "refused AXFR of geo.test. to 127.0.0.1: not signed" in g.stderr_text()
