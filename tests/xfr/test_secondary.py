"""The secondary against a scripted primary in the same process: what is installed,
what is refused, what is kept on disk, when a zone expires, and who may NOTIFY."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import dns.tsig
import pytest

from geodns.config import HostPort, SecondaryZone, TransferConfig
from geodns.ops.metrics import Metrics
from geodns.xfr import expire
from geodns.xfr.notify import make_notify
from geodns.xfr.outbound import Responder
from geodns.xfr.secondary import Secondary
from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone
from tests.xfr.zones import ORIGIN, store

NAME = dns.name.from_text(ORIGIN)
KEY = dns.tsig.Key("xfr-key.", "l8uyAXzRkSBIePfhdq6Am5jEaJGp3tXAlq3lT/eFCzQ=", "hmac-sha256")
WRONG = dns.tsig.Key("xfr-key.", "3w9cdJtmXKFYnUZ2pQe8uJfFhDhQ8n2bSxMbq5a1Ki4=", "hmac-sha256")

Script = Callable[[dns.message.Message], "tuple[list[bytes], bool]"]


class Primary:
    """UDP SOA answers and TCP transfers on one loopback port; by default the
    transfers come from geodns's own responder, or from ``script`` (messages, and
    whether to hang up before the end)."""

    def __init__(self, zones: ZoneStore) -> None:
        self.zones = zones
        self.expire_opt: int | None = None
        self.script: Script | None = None
        self.port = 0
        self.transfers = 0

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.tcp = await asyncio.start_server(self._stream, "127.0.0.1", port)
        self.port = self.tcp.sockets[0].getsockname()[1]
        primary = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                q = dns.message.from_wire(data)
                r = dns.message.make_response(q)
                r.flags |= dns.flags.AA
                zone = next(iter(primary.zones.zones.values()))
                r.answer.append(zone.soa)
                if primary.expire_opt is not None and q.edns >= 0:
                    r.use_edns(0, options=[expire.option(primary.expire_opt)])
                self.transport.sendto(r.to_wire(), addr)  # type: ignore[attr-defined]

        self.udp, _ = await loop.create_datagram_endpoint(
            Udp, local_addr=("127.0.0.1", self.port))

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            wire = await reader.readexactly(n)
            self.transfers += 1
            if self.script is not None:
                msgs, hang_up = self.script(dns.message.from_wire(wire))
            else:
                r = Responder()
                r.transfer = TransferConfig(allow=(ipaddress.ip_network("127.0.0.0/8"),))
                r.store = self.zones
                r.expire = lambda origin: self.expire_opt
                msgs, hang_up = r.answer(wire, "127.0.0.1") or [], False
            for m in msgs:
                writer.write(struct.pack("!H", len(m)) + m)
            await writer.drain()
            if not hang_up:
                await reader.read()  # until the secondary closes
        finally:
            writer.close()

    def stop(self) -> None:
        self.tcp.close()
        self.udp.close()

    def host(self) -> HostPort:
        return HostPort("127.0.0.1", self.port)


class Installs:
    """The server's install function: records what it was given, or refuses."""

    def __init__(self) -> None:
        self.calls: list[dict[dns.name.Name, Zone]] = []
        self.refuse: list[str] = []

    def __call__(self, zones: Mapping[dns.name.Name, Zone]) -> list[str]:
        if self.refuse:
            return self.refuse
        self.calls.append(dict(zones))
        return []

    def serial(self) -> int | None:
        zone = self.calls[-1].get(NAME) if self.calls else None
        return zone.serial if zone is not None else None


def secondary(tmp_path: Path, primary: Primary, installs: Installs, key: str | None = None,
              metrics: Metrics | None = None) -> Secondary:
    sec = Secondary(tmp_path, installs, metrics)
    conf = SecondaryZone(zone=ORIGIN, primaries=(primary.host(),), key=key)
    sec.configure({ORIGIN: conf}, {KEY.name: KEY})
    return sec


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def axfr_of(records: list[str]) -> Script:
    """A primary that sends these RRs (text, absolute names) as its AXFR answer."""
    def script(q: dns.message.Message) -> tuple[list[bytes], bool]:
        r = dns.message.make_response(q)
        for line in records:
            r.answer.append(dns.rrset.from_text(*line.split(None, 4)))
        return [r.to_wire()], False
    return script


SOA2 = "unit.test. 60 IN SOA ns1.unit.test. hm.unit.test. 2 3600 600 600 300"
NS = "unit.test. 60 IN NS ns1.unit.test."
NS1 = "ns1.unit.test. 60 IN A 192.0.2.1"


def test_transfer_installs_writes_the_copy_and_a_restart_serves_it(tmp_path: Path) -> None:
    metrics = Metrics()
    installs = Installs()

    async def go() -> None:
        p = Primary(store(1, "www IN A 192.0.2.10\nsteered 60 IN DYNA web\n"))
        await p.start()
        sec = secondary(tmp_path, p, installs, metrics=metrics)
        assert await sec.refresh(sec.zones[NAME]) is True
        assert installs.serial() == 1
        await sec.saved()  # written in a thread
        assert "steered.unit.test. 60 IN DYNA web" in (tmp_path / "unit.test.zone").read_text()
        meta = json.loads((tmp_path / "unit.test.json").read_text())
        assert meta["serial"] == 1 and meta["expires"] - meta["refreshed"] == 600
        # the same serial again: no transfer, no install, timers restarted
        assert await sec.refresh(sec.zones[NAME]) is True
        assert len(installs.calls) == 1 and p.transfers == 1
        # a newer serial: IXFR (the responder has no journal: the whole zone in IXFR form)
        p.zones = store(2, "www IN A 192.0.2.11\n")
        assert await sec.refresh(sec.zones[NAME]) is True
        assert installs.serial() == 2
        await sec.saved()
        p.stop()

    run(go())
    assert metrics.secondary_serial[ORIGIN] == 2
    assert metrics.secondary_expired[ORIGIN] is False
    # A restart: the copy is served before anything is asked of a primary.
    later = Installs()
    sec = Secondary(tmp_path, later)
    assert sec.configure({ORIGIN: SecondaryZone(ORIGIN, (HostPort("127.0.0.1", 9),))}, {})
    zone = sec.served()[NAME]
    assert zone.serial == 2 and not zone.expired and zone.file == str(tmp_path / "unit.test.zone")


@pytest.mark.parametrize(("records", "problem"), [
    ([SOA2, NS, NS1, "www.unit.test. 60 IN CNAME ns1.unit.test.",
      "www.unit.test. 60 IN A 192.0.2.9", SOA2], "www.unit.test. has CNAME and other data (A)"),
    ([SOA2, NS, "unit.test. 60 IN NS ns2.unit.test.", NS1, SOA2],
     "NS target ns2.unit.test. is inside the zone but has no A or AAAA record"),
    ([SOA2, NS, NS1, "www.unit.test. 60 IN A 192.0.2.9"], "connection closed"),
])
def test_a_bad_or_half_transfer_changes_nothing(tmp_path: Path, records: list[str],
                                                problem: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    installs = Installs()

    async def go() -> None:
        p = Primary(store(1))
        await p.start()
        sec = secondary(tmp_path, p, installs)
        st = sec.zones[NAME]
        assert await sec.refresh(st)
        await sec.saved()
        before = (tmp_path / "unit.test.zone").read_text()
        p.zones = store(2)  # the SOA query says 2 ...
        half = records[-1] != SOA2
        script = axfr_of(records)
        p.script = (lambda q: (script(q)[0], True)) if half else script  # ... the data is bad
        assert await sec.refresh(st) is False
        assert installs.serial() == 1 and len(installs.calls) == 1
        assert st.zone is not None and st.zone.serial == 1
        await sec.saved()
        assert (tmp_path / "unit.test.zone").read_text() == before
        assert st.failures == 1
        p.stop()

    run(go())
    assert problem in caplog.text
    if "NS target" in problem:  # zone-file rules: located in the rejected copy
        rejected = tmp_path / "unit.test.zone.rejected"
        assert f"{rejected}:" in caplog.text and "ns2.unit.test." in rejected.read_text()


def test_a_zone_the_server_will_not_serve_is_not_kept(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    installs = Installs()
    installs.refuse = ["x.zone:7: DYNA at steered.unit.test. names unknown pool 'web'"]

    async def go() -> None:
        p = Primary(store(1, "steered 60 IN DYNA web\n"))
        await p.start()
        sec = secondary(tmp_path, p, installs)
        assert await sec.refresh(sec.zones[NAME]) is False
        assert sec.zones[NAME].zone is None and not (tmp_path / "unit.test.zone").exists()
        p.stop()

    run(go())
    assert "unknown pool 'web'" in caplog.text


def test_expires_per_the_expire_option_then_serves_again(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    installs = Installs()
    metrics = Metrics()

    async def go() -> None:
        p = Primary(store(1))
        p.expire_opt = 1  # RFC 7314: an upstream secondary with 1 s left (SOA says 600)
        await p.start()
        sec = secondary(tmp_path, p, installs, metrics=metrics)
        sec.start()
        for _ in range(100):
            if installs.serial() == 1:
                break
            await asyncio.sleep(0.02)
        p.stop()  # the primary is gone
        await asyncio.sleep(1.5)
        assert installs.calls[-1][NAME].expired  # served as SERVFAIL now
        assert sec.zones[NAME].expired and sec.remaining(NAME) == 0
        assert metrics.secondary_expired[ORIGIN] is True
        back = Primary(store(1))  # back, same serial: the copy is good again
        await back.start(p.port)
        sec.zones[NAME].wake.set()  # as a NOTIFY would
        for _ in range(100):
            if not installs.calls[-1][NAME].expired:
                break
            await asyncio.sleep(0.02)
        assert not installs.calls[-1][NAME].expired and not sec.zones[NAME].expired
        assert back.transfers == 0  # same serial: the SOA check was enough
        await sec.stop()
        back.stop()

    run(go())
    assert "answering SERVFAIL until a refresh succeeds" in caplog.text


def test_notify_only_from_a_primary_and_with_the_required_key(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    installs = Installs()

    async def go() -> None:
        p = Primary(store(1))
        await p.start()
        sec = secondary(tmp_path, p, installs, key="xfr-key")
        st = sec.zones[NAME]
        soa = next(iter(store(5).zones.values())).soa

        def notify(peer: str, key: dns.tsig.Key | None,
                   zone: dns.rrset.RRset = soa) -> dns.message.Message:
            q = make_notify(zone, key)
            st.wake.clear()
            wire = sec.notify(q.to_wire(), peer)
            return dns.message.from_wire(wire, keyring=False)

        r = notify("127.0.0.1", KEY)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert r.opcode() == dns.opcode.NOTIFY and r.had_tsig and st.wake.is_set()
        assert notify("::ffff:127.0.0.1", KEY).rcode() == dns.rcode.NOERROR
        for peer, key, rcode in [("192.0.2.7", KEY, dns.rcode.REFUSED),  # not a primary
                                 ("127.0.0.1", None, dns.rcode.REFUSED),  # key required
                                 ("127.0.0.1", WRONG, dns.rcode.NOTAUTH)]:  # BADSIG
            r = notify(peer, key)
            assert r.rcode() == rcode, (peer, key)
            assert not st.wake.is_set()
        other = next(iter(store(5).zones.values())).soa.copy()
        other.name = dns.name.from_text("other.test.")
        assert notify("127.0.0.1", KEY, other).rcode() == dns.rcode.REFUSED
        p.stop()

    run(go())
    assert "NOTIFY for unit.test. from 192.0.2.7 refused: not one of its primaries" \
        in caplog.text
    assert "refused: TSIG BADSIG" in caplog.text
