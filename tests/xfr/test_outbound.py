"""AXFR/IXFR answers of the primary, read back with dnspython's own inbound
transfer (which checks the sequence and every TSIG of a multi-message answer)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.xfr
import pytest
from dns.rdatatype import RdataType as T

from geodns.config import TransferConfig
from geodns.xfr import expire
from geodns.xfr.journal import Journal
from geodns.xfr.outbound import Responder, is_transfer
from geodns.xfr.secondary import expired_copy
from geodns.xfr.zonedata import TransferZone
from geodns.zones.store import ZoneStore
from tests.xfr.zones import ORIGIN, store, text

NAME = dns.name.from_text(ORIGIN)
KEY = dns.tsig.Key("xfr-key.", "l8uyAXzRkSBIePfhdq6Am5jEaJGp3tXAlq3lT/eFCzQ=", "hmac-sha256")
OTHER = dns.tsig.Key("xfr-key.", "3w9cdJtmXKFYnUZ2pQe8uJfFhDhQ8n2bSxMbq5a1Ki4=", "hmac-sha256")
STRANGER = dns.tsig.Key("who.", "3w9cdJtmXKFYnUZ2pQe8uJfFhDhQ8n2bSxMbq5a1Ki4=", "hmac-sha256")
ALLOW = (ipaddress.ip_network("127.0.0.0/8"),)
BIG = "".join(f"host{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(3000)) \
    + "steered 60 IN DYNA web\n"


def responder(zones: ZoneStore, key: str | None = None, journal: Journal | None = None,
              expire_secs: int | None = 600) -> Responder:
    r = Responder()
    r.transfer = TransferConfig(allow=ALLOW, key=key)
    r.keys = {KEY.name: KEY}
    r.store = zones
    r.journal = lambda origin: journal
    r.expire = lambda origin: expire_secs
    return r


def query(qtype: str = "AXFR", serial: int | None = None, key: dns.tsig.Key | None = None,
          expire_opt: bool = False) -> dns.message.Message:
    zone = TransferZone(NAME)
    q, _ = dns.xfr.make_query(zone, serial=serial if qtype == "IXFR" else None,
                              use_edns=0 if expire_opt else None,
                              options=[expire.request_option()] if expire_opt else None,
                              keyring=key)
    return q


def receive(wires: list[bytes], q: dns.message.Message,
            base: TransferZone | None = None) -> tuple[TransferZone, list[dns.message.Message]]:
    """Apply the answer to ``base`` (empty: AXFR) with dns.xfr.Inbound, validating
    every TSIG on the way; the zone and the messages."""
    target = base if base is not None else TransferZone(NAME)
    rdtype = q.question[0].rdtype
    serial = dns.xfr.extract_serial_from_query(q) if rdtype == T.IXFR else None
    msgs = []
    ctx = None
    with dns.xfr.Inbound(target, rdtype, serial) as inbound:
        done = False
        for i, wire in enumerate(wires):
            assert not done, "messages after the end of the transfer"
            r = dns.message.from_wire(wire, keyring=q.keyring, request_mac=q.mac, xfr=True,
                                      tsig_ctx=ctx, multi=True,
                                      one_rr_per_rrset=rdtype == T.IXFR)
            assert q.is_response(r, xfr_continuation=i > 0)
            ctx = r.tsig_ctx
            msgs.append(r)
            done = inbound.process_message(r)
        assert done, "the transfer did not end with the SOA"
    return target, msgs


def test_is_transfer_is_a_cheap_exact_test() -> None:
    assert is_transfer(query().to_wire())
    assert is_transfer(query("IXFR", 1).to_wire())
    assert not is_transfer(dns.message.make_query(ORIGIN, "SOA").to_wire())
    notify = dns.message.make_query(ORIGIN, "AXFR")
    notify.set_opcode(4)
    assert not is_transfer(notify.to_wire())
    response = dns.message.make_response(query())
    assert not is_transfer(response.to_wire())
    assert not is_transfer(b"\x00" * 11)
    assert not is_transfer(query().to_wire()[:20])


def test_axfr_of_a_big_zone_is_many_signed_messages_with_every_record() -> None:
    zones = store(7, BIG)
    q = query(key=KEY)
    wires = responder(zones, key="xfr-key").answer(q.to_wire(), "127.0.0.1")
    assert wires is not None and len(wires) > 3
    assert all(len(w) <= 17_000 for w in wires)
    got, msgs = receive(wires, q)
    assert all(m.had_tsig for m in msgs)  # every message signed (RFC 8945 5.3.1)
    assert msgs[0].question and not any(m.question for m in msgs[1:])
    assert got.lines() == TransferZone.of(next(iter(zones.zones.values())), NAME).lines()
    assert "steered.unit.test. 60 IN DYNA web" in got.lines()


def test_not_allowed_unsigned_or_badly_signed_requests_are_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    zones = store(1)
    r = responder(zones, key="xfr-key")

    def rcode(wires: list[bytes] | None, keyring: object = False) -> tuple[str, int | None]:
        assert wires is not None and len(wires) == 1
        m = dns.message.from_wire(wires[0], keyring=keyring)
        return dns.rcode.to_text(m.rcode()), m.tsig[0].error if m.tsig else None

    assert rcode(r.answer(query().to_wire(), "192.0.2.7")) == ("REFUSED", None)
    assert rcode(r.answer(query().to_wire(), "127.0.0.1")) == ("REFUSED", None)
    assert "refused AXFR of unit.test. to 127.0.0.1: not signed (key 'xfr-key' required)" \
        in caplog.text
    assert rcode(r.answer(query(key=OTHER).to_wire(), "127.0.0.1")) == \
        ("NOTAUTH", dns.rcode.BADSIG)
    assert "TSIG BADSIG (bad signature) for key xfr-key" in caplog.text
    assert rcode(r.answer(query(key=STRANGER).to_wire(), "127.0.0.1")) == \
        ("NOTAUTH", dns.rcode.BADKEY)
    # UDP never gets here: the listener only hands over TCP; a zone we do not serve:
    other = dns.message.make_query("other.test.", "AXFR")
    assert rcode(r.answer(other.to_wire(), "127.0.0.1")) == ("REFUSED", None)  # unsigned
    open_r = responder(zones)
    assert rcode(open_r.answer(other.to_wire(), "127.0.0.1")) == ("NOTAUTH", None)
    assert rcode(open_r.answer(query().to_wire(), "127.0.0.1"))[0] == "NOERROR"
    nothing = Responder()
    nothing.store = zones
    assert rcode(nothing.answer(query().to_wire(), "127.0.0.1")) == ("REFUSED", None)


def test_ixfr_from_the_journal_up_to_date_and_full_fallback(tmp_path: Path) -> None:
    journal = Journal(tmp_path, NAME, 1 << 20)
    journal.record(next(iter(store(1).zones.values())))
    v2 = store(2, "www IN A 192.0.2.11\nnew IN TXT \"two\"\n")
    journal.record(next(iter(v2.zones.values())))
    v3 = store(3, "www 120 IN A 192.0.2.11\nnew IN TXT \"two\"\nmx IN MX 10 www\n")
    journal.record(next(iter(v3.zones.values())))
    r = responder(v3, journal=journal)
    want = TransferZone.of(next(iter(v3.zones.values())), NAME).lines()

    q = query("IXFR", 1, key=KEY)
    wires = r.answer(q.to_wire(), "127.0.0.1")
    assert wires is not None
    base = TransferZone.of(next(iter(store(1).zones.values())), NAME)
    got, msgs = receive(wires, q, base)
    soas = [rr[0].serial for m in msgs for rr in m.answer if rr.rdtype == T.SOA]
    assert soas == [3, 1, 2, 2, 3, 3]  # incremental: two differences, no other SOA
    assert len([rr for m in msgs for rr in m.answer]) == 6 + 2 + 4  # only the changes
    assert got.lines() == want

    q = query("IXFR", 3)
    (wire,) = r.answer(q.to_wire(), "127.0.0.1") or []
    m = dns.message.from_wire(wire)
    assert [rr[0].serial for rr in m.answer] == [3]  # up to date: the SOA alone

    q = query("IXFR", 9)  # newer than ours (serial arithmetic): also just the SOA
    (wire,) = r.answer(q.to_wire(), "127.0.0.1") or []
    assert len(dns.message.from_wire(wire).answer) == 1

    q = query("IXFR", 2**32 - 1)  # older, but not in the journal: the whole zone
    wires = r.answer(q.to_wire(), "127.0.0.1")
    assert wires is not None
    got, msgs = receive(wires, q, TransferZone.of(next(iter(store(1).zones.values())), NAME))
    assert got.lines() == want
    assert [rr[0].serial for m in msgs for rr in m.answer if rr.rdtype == T.SOA] == [3, 3]


def test_expire_option_in_the_first_message_when_asked() -> None:
    zones = store(1, BIG)
    q = query(expire_opt=True)
    wires = responder(zones, expire_secs=1234).answer(q.to_wire(), "127.0.0.1")
    assert wires is not None and len(wires) > 1
    first = dns.message.from_wire(wires[0], xfr=True)
    assert expire.value(first) == 1234
    assert all(expire.value(dns.message.from_wire(w, xfr=True)) is None for w in wires[1:])
    plain = responder(zones).answer(query().to_wire(), "127.0.0.1")
    assert plain is not None
    assert dns.message.from_wire(plain[0], xfr=True).edns == -1  # not asked, no OPT


def test_expired_secondary_copy_is_not_transferred() -> None:
    zone = next(iter(store(1).zones.values()))
    r = responder(ZoneStore([expired_copy(zone)]))
    (wire,) = r.answer(query().to_wire(), "127.0.0.1") or []
    assert dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL


def test_ixfr_without_its_soa_is_formerr() -> None:
    q = dns.message.make_query(ORIGIN, "IXFR")
    (wire,) = responder(store(1)).answer(q.to_wire(), "127.0.0.1") or []
    assert dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR


def test_text_helper_is_a_valid_zone() -> None:
    assert text(1).startswith("$ORIGIN unit.test.")
