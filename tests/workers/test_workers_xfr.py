"""Zone transfers on nodes with workers: a transfer or NOTIFY that the kernel hands to
any worker is answered by the supervisor (it owns the journals and the secondary
zones), and a secondary zone it receives is served by every worker."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import pytest

from tests.xfr.servers import (
    KEY,
    SECRET,
    answer,
    free_port,
    geodns,
    serial,
    tsig_toml,
    wait_until,
    write,
    zone,
)

pytestmark = pytest.mark.timeout(180)

ORIGIN = "workers.test."


def axfr(port: int, signed: bool = True) -> dns.message.Message | list[dns.message.Message]:
    """An AXFR over a fresh TCP connection (a new source port each time)."""
    q = dns.message.make_query(ORIGIN, "AXFR")
    if signed:
        q.use_tsig(dns.tsigkeyring.from_text({KEY: SECRET}), keyname=KEY,
                   algorithm="hmac-sha256")
    wire = q.to_wire()
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        soas = 0
        while soas < 2:
            head = s.recv(2, socket.MSG_WAITALL)
            if len(head) < 2:
                break
            body = s.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)
            m = dns.message.from_wire(body, keyring=False, one_rr_per_rrset=True)
            out.append(m)
            if m.rcode() != dns.rcode.NOERROR:
                break
            soas += sum(1 for rr in m.answer if rr.rdtype == dns.rdatatype.SOA)
    return out


def test_transfers_and_notify_through_workers(tmp_path: Path) -> None:
    zones = tmp_path / "primary" / "zones"
    zones.mkdir(parents=True)
    zonefile = zones / "workers.test.zone"
    write(zonefile, zone(ORIGIN, 1, "www IN A 192.0.2.1\n"))
    pport, sport = free_port(), free_port()
    primary_conf = f"""{tsig_toml()}
[transfer]
allow = ["127.0.0.0/8"]
key = "{KEY}"
notify = ["127.0.0.1:{sport}"]
"""
    secondary_conf = f"""{tsig_toml()}
[secondary."{ORIGIN}"]
primaries = ["127.0.0.1:{pport}"]
key = "{KEY}"
"""
    with geodns(primary_conf, zones, pport, workdir=tmp_path / "primary",
                ready_name=ORIGIN, watch_interval=0.1, workers=2) as primary, \
            geodns(secondary_conf, None, sport, workdir=tmp_path / "secondary",
                   workers=2) as secondary:
        for _ in range(6):  # several connections: both workers pass transfers on
            msgs = axfr(primary.port)
            assert msgs and all(m.rcode() == dns.rcode.NOERROR for m in msgs)
            names = {rr.name.to_text() for m in msgs for rr in m.answer}
            assert f"www.{ORIGIN}" in names
        refused = axfr(primary.port, signed=False)
        assert refused and refused[0].rcode() == dns.rcode.REFUSED  # key required

        wait_until(lambda: serial(secondary.port, ORIGIN) == 1, 30)
        for edit in range(2, 5):  # NOTIFY reaches a worker of the secondary; IXFR follows
            write(zonefile, zone(ORIGIN, edit, f"www IN A 192.0.2.{edit}\n"))
            wait_until(lambda e=edit: all(answer(secondary.port, f"www.{ORIGIN}")
                                          == ("NOERROR", [f"192.0.2.{e}"])
                                          for _ in range(12)), 10)
        log = secondary.stderr_text()
        assert "(via a worker): refreshing" in log
        assert "IXFR from 127.0.0.1" in log
