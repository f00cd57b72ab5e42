"""The primary side of a transfer: AXFR (RFC 5936) and IXFR (RFC 1995) answers.

The TCP listener hands every AXFR/IXFR query here (:meth:`Responder.answer`) and
sends the messages it returns, each framed.  Who may transfer is ``[transfer]
allow``; with ``[transfer] key`` the query must be signed with that key, and every
message of the answer is signed (RFC 8945 5.3.1).  IXFR is answered from the
journal when it holds the differences from the client's serial, else with the whole
zone in IXFR form (RFC 1995 4).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import dns.xfr
from dns.rdatatype import RdataType as T

from geodns.config import TransferConfig
from geodns.ops.metrics import Metrics
from geodns.xfr import expire, tsig
from geodns.xfr.journal import Diff, Journal
from geodns.xfr.replies import PAYLOAD, rcode_only, reply
from geodns.xfr.zonedata import is_soa, newer, parse_line, zone_rrsets
from geodns.zones.store import ZoneStore
from geodns.zones.zone import Zone

log = logging.getLogger("geodns.xfr")

MESSAGE_BYTES = 16_384  # records per message are packed up to about this size
ExpireFn = Callable[[dns.name.Name], "int | None"]


def is_transfer(wire: bytes) -> bool:
    """A query (QR=0, opcode QUERY, one question) for AXFR or IXFR? Cheap, no parsing
    beyond the question name's labels."""
    end = len(wire)
    if end < 17 or wire[2] & 0xF8 or wire[4] != 0 or wire[5] != 1:
        return False
    i = 12
    while True:
        if i >= end:
            return False
        n = wire[i]
        if n == 0:
            break
        if n > 63:
            return False
        i += n + 1
    if i + 3 > end:
        return False
    qtype = (wire[i + 1] << 8) | wire[i + 2]
    return qtype in (T.AXFR, T.IXFR)


def _size(rrset: dns.rrset.RRset) -> int:
    f = io.BytesIO()
    rrset.to_wire(f)
    return f.tell()


def _pieces(rrsets: Iterable[dns.rrset.RRset]) -> Iterable[tuple[dns.rrset.RRset, int]]:
    """RRsets with their (uncompressed) size; an RRset too big for one message is split."""
    for rrset in rrsets:
        size = _size(rrset)
        if size <= MESSAGE_BYTES or len(rrset) == 1:
            yield rrset, size
            continue
        for rd in rrset:
            one = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
            one.add(rd, rrset.ttl)
            yield one, _size(one)


def build_messages(query: dns.message.Message, rrsets: Iterable[dns.rrset.RRset],
                   expire_secs: int | None) -> list[bytes]:
    """The answer as wire messages: records packed up to MESSAGE_BYTES each, the
    question only in the first, EXPIRE in the first when asked, every message signed
    when the query was (each TSIG covering the previous one, RFC 8945 5.3.1)."""
    chunks: list[list[dns.rrset.RRset]] = [[]]
    used = 0
    for rrset, size in _pieces(rrsets):
        if used + size > MESSAGE_BYTES and chunks[-1]:
            chunks.append([])
            used = 0
        chunks[-1].append(rrset)
        used += size
    wires: list[bytes] = []
    ctx = None
    for i, chunk in enumerate(chunks):
        r = dns.message.make_response(query, our_payload=PAYLOAD)
        r.flags |= dns.flags.AA
        if i:
            r.question = []
        elif expire_secs is not None and query.edns >= 0:
            r.use_edns(0, 0, PAYLOAD, options=[expire.option(expire_secs)])
        r.answer = chunk
        wires.append(r.to_wire(max_size=65535, multi=True, tsig_ctx=ctx))
        ctx = r.tsig_ctx
    return wires


def axfr_sequence(zone: Zone) -> list[dns.rrset.RRset]:
    """SOA, every record, SOA (RFC 5936 2.2)."""
    return [*zone_rrsets(zone), zone.soa]


def ixfr_sequence(zone: Zone, diffs: Sequence[Diff]) -> list[dns.rrset.RRset]:
    """SOA(new), then per difference: SOA(old), deletions, SOA(next), additions;
    then SOA(new) (RFC 1995 4)."""
    out: list[dns.rrset.RRset] = [zone.soa]
    for diff in diffs:
        for part in (diff.deleted, diff.added):
            soa = [line for line in part if is_soa(line)]
            out += [parse_line(line) for line in soa]
            out += [parse_line(line) for line in part if not is_soa(line)]
    out.append(zone.soa)
    return out


class Responder:
    """Answers AXFR/IXFR from the served zones; reconfigured on every reload."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.transfer: TransferConfig | None = None
        self.keys: tsig.Keyring = {}
        self.store: ZoneStore | None = None
        self.journal: Callable[[dns.name.Name], Journal | None] = lambda origin: None
        self.expire: ExpireFn = lambda origin: None

    def answer(self, wire: bytes, peer: str) -> list[bytes] | None:
        """The messages answering a transfer query; None when ``wire`` is not one."""
        if not is_transfer(wire):
            return None
        try:
            return self._answer(wire, peer)
        except Exception:  # never let a transfer take the listener down
            log.exception("transfer request from %s failed", peer)
            return [rcode_only(wire, dns.rcode.SERVFAIL)]

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.xfr_out[(kind, outcome)] += 1

    def _answer(self, wire: bytes, peer: str) -> list[bytes]:
        try:
            checked = tsig.check(wire, self.keys)
        except dns.exception.DNSException:
            return [rcode_only(wire, dns.rcode.FORMERR)]
        msg = checked.msg
        q = msg.question[0]
        kind = "AXFR" if q.rdtype == T.AXFR else "IXFR"
        what = f"{kind} of {q.name} to {peer}"
        tc = self.transfer
        if tc is None or not tc.allows(peer):
            return self._refuse(kind, what, checked, "not allowed by [transfer] allow")
        if checked.error:
            log.warning("refused %s: TSIG %s (%s) for key %s", what, checked.error_text(),
                        checked.detail, checked.key_text())
            self._count(kind, "notauth")
            return [tsig.error_wire(checked, self.keys, PAYLOAD)]
        if tc.key is not None:
            if not checked.signed:
                return self._refuse(kind, what, checked, f"not signed (key {tc.key!r} "
                                    "required)")
            if checked.key is None or checked.key.name != dns.name.from_text(tc.key):
                return self._refuse(kind, what, checked, f"signed with key "
                                    f"{checked.key_text()!r}, {tc.key!r} required")
        store = self.store
        zone = store.zones.get(q.name) if store is not None else None
        if zone is None:
            log.info("refused %s: not a zone served here", what)
            self._count(kind, "notauth")
            return [reply(msg, dns.rcode.NOTAUTH)]
        if getattr(zone, "expired", False):
            log.warning("refused %s: our copy has expired", what)
            self._count(kind, "servfail")
            return [reply(msg, dns.rcode.SERVFAIL)]
        if kind == "AXFR":
            seq, outcome, style = axfr_sequence(zone), "full", "full zone"
        else:
            try:
                client = dns.xfr.extract_serial_from_query(msg)
            except (ValueError, KeyError, IndexError):
                return [reply(msg, dns.rcode.FORMERR)]
            assert client is not None
            seq, outcome, style = self._ixfr(zone, client)
        secs = self.expire(zone.origin) if expire.asked(msg) else None
        wires = build_messages(msg, seq, secs)
        log.info("%s (serial %d): %s, %d messages, %d records%s", what, zone.serial, style,
                 len(wires), len(seq), f", key {checked.key_text()}" if checked.key else "")
        self._count(kind, outcome)
        return wires

    def _ixfr(self, zone: Zone, client: int) -> tuple[list[dns.rrset.RRset], str, str]:
        """(records, metric outcome, log text) for an IXFR from serial ``client``."""
        if not newer(zone.serial, client):
            return [zone.soa], "uptodate", f"up to date at {client}"
        journal = self.journal(zone.origin)
        diffs = journal.chain(client, zone.serial) if journal is not None else None
        if diffs is None:
            return (axfr_sequence(zone), "full",
                    f"full zone (the journal has no path from {client})")
        return ixfr_sequence(zone, diffs), "incremental", f"incremental from {client}"

    def _refuse(self, kind: str, what: str, checked: tsig.Checked, why: str) -> list[bytes]:
        log.warning("refused %s: %s", what, why)
        self._count(kind, "refused")
        return [reply(checked.msg, dns.rcode.REFUSED)]

