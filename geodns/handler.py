"""Bytes in, bytes out: the per-query path shared by the UDP and TCP listeners.

Everything a query needs is reached through one ``State`` reference read once per
query, so a reload or health change (a new State or generation) is atomic.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdatatype import RdataType as T

from geodns.ops.metrics import LATENCY_EVERY, Metrics
from geodns.ops.querylog import QueryLog
from geodns.select.types import Selection
from geodns.wire import decode as wd
from geodns.wire.encode import (
    AA,
    QR,
    Rendered,
    ecs_option,
    error_response,
    opt_record,
    render,
    truncated,
)
from geodns.zones.store import Answer, ZoneStore

log = logging.getLogger("geodns.handler")

CACHE_LIMIT = 100_000
XFR_TYPES = (T.AXFR, T.IXFR)


SelectFn = Callable[[str, int, "str | bytes", "int | None"], Selection]


class Template:
    """A cached lookup result whose answer still depends on the client (DYNA)."""

    __slots__ = ("answer", "pool", "qname", "rendered")

    def __init__(self, qname: dns.name.Name, answer: Answer) -> None:
        assert answer.dynamic is not None
        self.qname = qname
        self.answer = answer
        self.pool = answer.dynamic.pool
        self.rendered: dict[Any, Rendered] = {}


PacketEntry = tuple[bytes, int, int, "str | None", "Selection | None"]
PACKET_CACHE_LIMIT = 200_000
ExplainFn = Callable[[str, int, "str | bytes", "int | None"], list[str]]
OpcodeFn = Callable[[bytes, str, bool], bytes]  # (query, client, tcp) -> response
# (query, client, tcp, answer unsigned) -> signed response, or None: not signed after all
SignedFn = Callable[[bytes, str, bool, Callable[[bytes], bytes]], "bytes | None"]
EXPLAIN_LABEL = b"\x08_explain"


class State:
    """One consistent view: zones, answer caches and the selector."""

    def __init__(self, store: ZoneStore, udp_size: int = 1232,
                 select: SelectFn | None = None, explain: ExplainFn | None = None,
                 explain_allowed: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.udp_size = udp_size
        self.select = select
        self.explain = explain
        self.explain_allowed = explain_allowed
        self.cache: dict[bytes, Rendered | Template] = {}
        self.negative_bodies: dict[int, bytes] = {}  # id(zone SOA RRset) -> uncompressed wire
        # Packet cache: query bytes after the ID -> (response after the ID, qtype, rcode,
        # pool, selection). Identical bytes (incl. ECS, payload size, RD, 0x20 case) give an
        # identical answer while this State and the health snapshot stand.
        self.packets: tuple[dict[bytes, PacketEntry], dict[bytes, PacketEntry]] = ({}, {})
        self.opt_plain = (opt_record(udp_size, False), opt_record(udp_size, True))
        self.hits = 0
        self.misses = 0


def _limit(q: wd.Query, udp_size: int) -> int:
    if not q.edns:
        return 512
    return q.payload if q.payload < udp_size else udp_size


class Handler:
    """Turns one query packet into one response packet (or None to drop)."""

    def __init__(self, state: State, on_answer: Callable[[str, Selection], None] | None = None,
                 metrics: Metrics | None = None, qlog: QueryLog | None = None) -> None:
        self.state = state
        self.on_answer = on_answer
        self.metrics = metrics
        self.qlog = qlog
        self._sel: tuple[str, Selection] | None = None  # last DYNA decision (pool, selection)
        self._cacheable = False  # may the answer being built go to the packet cache?
        self._lat_left = LATENCY_EVERY  # [operator hook] uncached queries until one is timed
        # xfr hook: answers opcodes other than QUERY (NOTIFY, UPDATE, ...); None: NOTIMP
        self.other_opcode: OpcodeFn | None = None
        # xfr hook: verifies and signs TSIG-signed queries (a secondary's SOA check)
        self.signed_query: SignedFn | None = None
        # [traffic hook: recent answer mix, geodns/traffic/mix.py] gets 1 in N steered
        # answers (pool, query bytes, client) and returns the next N; None: off
        self.mix: Callable[[str, bytes, str], int] | None = None
        self._mix_left = 1

    # [operator hook: dnstap, geodns/ops/dnstap.py] Wraps handle() on this instance, so
    # the packet-cache path is covered too and nothing runs when dnstap is off. Install
    # it before the listeners exist (they look up handler.handle).
    def tap(self, wrap: Callable[[Callable[[bytes, str, bool], bytes | None]],
                                 Callable[[bytes, str, bool], bytes | None]]) -> None:
        self.handle = wrap(self.handle)  # type: ignore[method-assign,assignment]

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        st = self.state
        qlog = self.qlog
        if qlog is None:
            hit = st.packets[tcp].get(data[2:])
            if hit is not None:
                return self._replay(st, data, hit, tcp, client)
        self._lat_left -= 1  # [operator hook] latency histogram: 1 in LATENCY_EVERY timed
        timed = self._lat_left <= 0
        t0 = perf_counter() if qlog is not None or timed else 0.0
        self._sel = None
        self._cacheable = True
        try:
            q = wd.decode(data)
            if q is None:
                return None
        except Exception:  # the decoder is bounds-checked; this is a last resort
            log.exception("decoder failure")
            return None
        try:
            resp = self._answer(st, q, client, tcp)
        except Exception:
            log.exception("handler failure for query %r", data[:64])
            resp = error_response(q, dns.rcode.SERVFAIL, st.udp_size)
            self._cacheable = False
        m = self.metrics
        rcode = resp[3] & 15
        if m is not None:
            m.queries[("tcp" if tcp else "udp", q.qtype, rcode)] += 1
            if timed:  # [operator hook] latency histogram
                self._lat_left = LATENCY_EVERY
                m.latency(perf_counter() - t0)
        if qlog is not None:
            self._log(qlog, q, client, resp, t0)
        elif self._cacheable and not q.error:
            packets = st.packets[tcp]
            if len(packets) >= PACKET_CACHE_LIMIT:
                packets.clear()
            sel = self._sel
            packets[data[2:]] = (resp[2:], q.qtype, rcode, sel[0] if sel else None,
                                 sel[1] if sel else None)
        return resp

    def _replay(self, st: State, data: bytes, hit: PacketEntry, tcp: bool,
                client: str) -> bytes:
        """A packet-cache hit: same bytes in, same bytes out, with the client's ID."""
        tail, qtype, rcode, pool, sel = hit
        st.hits += 1
        m = self.metrics
        if m is not None:
            m.queries[("tcp" if tcp else "udp", qtype, rcode)] += 1
        if sel is not None:
            if self.on_answer is not None:
                self.on_answer(pool, sel)  # type: ignore[arg-type]
            if self.mix is not None:  # [traffic hook] 1 in N into the answer mix
                self._mix_left -= 1
                if self._mix_left <= 0:
                    self._mix_left = self.mix(pool, data, client)  # type: ignore[arg-type]
        return data[:2] + tail

    def health_changed(self) -> None:
        """Cached packets for steered names may now be wrong: forget them all."""
        for packets in self.state.packets:
            packets.clear()

    def _log(self, qlog: QueryLog, q: wd.Query, client: str, resp: bytes, t0: float) -> None:
        sel, self._sel = self._sel, None
        ecs = q.ecs is not None
        qlog.query(client, q.ecs_addr if ecs else None, q.ecs_source if ecs else None,
                   q.qname, q.qtype, resp[3] & 15, sel[0] if sel else None,
                   sel[1].pops if sel else None, sel[1].scope if sel else None,
                   sel[1].ttl if sel else None, perf_counter() - t0)

    def _answer(self, st: State, q: wd.Query, client: str, tcp: bool) -> bytes:
        if q.error:
            if q.opcode and self.other_opcode is not None:  # xfr hook (off the hot path)
                return self.other_opcode(q.data, client, tcp)
            return error_response(q, q.error, st.udp_size)
        data = q.data
        if self.signed_query is not None and (data[10] or data[11] > q.edns):
            # xfr hook: an additional record besides OPT, e.g. a TSIG
            signed = self._signed(st, q, client, tcp)
            if signed is not None:
                return signed
        if q.qclass != dns.rdataclass.IN:
            return error_response(q, dns.rcode.REFUSED, st.udp_size)
        qtype = q.qtype
        if qtype in XFR_TYPES:
            return error_response(q, dns.rcode.NOTIMP if tcp else dns.rcode.FORMERR, st.udp_size)
        if qtype == T.TXT and q.qname.startswith(EXPLAIN_LABEL):
            # Who asks decides the answer (explain or a plain lookup): never packet-cache.
            self._cacheable = False
            if st.explain is not None and st.explain_allowed is not None \
                    and st.explain_allowed(client):
                return self._finish(st, q, self._explain(st, q, client), 0, tcp)
        key = q.qname + qtype.to_bytes(2, "big")
        r = st.cache.get(key)
        if r is None:
            st.misses += 1
            r = self._build(st, q)
            if len(st.cache) >= CACHE_LIMIT:
                st.cache.clear()
            st.cache[key] = r
        else:
            st.hits += 1
        scope = 0
        if r.__class__ is Template:
            r, scope = self._dynamic(st, q, r, client)
        assert isinstance(r, Rendered)
        return self._finish(st, q, r, scope, tcp)

    def _signed(self, st: State, q: wd.Query, client: str, tcp: bool) -> bytes | None:
        """xfr hook: the TSIG checked and the answer signed (never packet-cached)."""
        assert self.signed_query is not None

        def unsigned(wire: bytes) -> bytes:
            plain = wd.decode(wire)
            assert plain is not None
            return self._answer(st, plain, client, tcp)

        resp = self.signed_query(q.data, client, tcp, unsigned)
        if resp is not None:
            self._cacheable = False
        return resp

    def _finish(self, st: State, q: wd.Query, r: Rendered, scope: int, tcp: bool) -> bytes:
        data = q.data
        if q.edns:
            opt = opt_record(st.udp_size, q.do, 0, ecs_option(q, scope)) if q.ecs \
                else st.opt_plain[q.do]
            resp = data[:2] + r.heads[q.rd * 2 + 1] + data[12:q.qend] + r.body + opt
        else:
            opt = b""
            resp = data[:2] + r.heads[q.rd * 2] + data[12:q.qend] + r.body
        if not tcp and len(resp) > _limit(q, st.udp_size):
            return truncated(q, r, opt)
        return resp

    def _build(self, st: State, q: wd.Query) -> Rendered | Template:
        qname = wd.wire_name(q.qname)
        answer = st.store.lookup(qname, q.qtype)
        if answer.dynamic is not None:
            return Template(qname, answer)
        if not answer.answer and not answer.additional and len(answer.authority) == 1:
            # NXDOMAIN/NODATA: only the zone's SOA, rendered once per zone without name
            # compression so the bytes fit after any question (random-name floods).
            soa = answer.authority[0]
            body = st.negative_bodies.get(id(soa))
            if body is None:
                f = io.BytesIO()
                soa.to_wire(f)
                body = st.negative_bodies[id(soa)] = f.getvalue()
            return Rendered(QR | (AA if answer.aa else 0) | answer.rcode, 0, 1, 0, body)
        return _render_answer(qname, q.qtype, answer)

    def _dynamic(self, st: State, q: wd.Query, t: Template,
                 client: str) -> tuple[Rendered, int]:
        """Finish a DYNA answer for this client; rendered bytes are cached by selection."""
        if st.select is None:
            return _servfail(t.qname, q.qtype), 0
        if q.ecs is not None:
            sel = st.select(t.pool, q.qtype, q.ecs_addr, q.ecs_source)
        else:
            sel = st.select(t.pool, q.qtype, client, None)
            self._cacheable = False  # depends on the source address, not on the bytes
        r = t.rendered.get(sel.key)
        if r is None:
            r = _render_selection(t, q.qtype, sel)
            if len(t.rendered) > 10_000:
                t.rendered.clear()
            t.rendered[sel.key] = r
        if self.on_answer is not None:
            self.on_answer(t.pool, sel)
        if self.mix is not None:  # [traffic hook] 1 in N into the answer mix
            self._mix_left -= 1
            if self._mix_left <= 0:
                self._mix_left = self.mix(t.pool, q.data, client)
        self._sel = (t.pool, sel)
        return r, sel.scope


    def _explain(self, st: State, q: wd.Query, client: str) -> Rendered:
        """`_explain.<name> TXT`: why this client gets what it gets (opt-in, allow-listed)."""
        qname = wd.wire_name(q.qname)
        target = qname.parent()
        answer = st.store.lookup(target, T.A)
        if answer.dynamic is None:
            lines = [f"{target} is not a steered (DYNA) name here: static answer, ECS scope 0"]
        else:
            assert st.explain is not None
            if q.ecs is not None:
                lines = st.explain(answer.dynamic.pool, T.A, q.ecs_addr, q.ecs_source)
            else:
                lines = st.explain(answer.dynamic.pool, T.A, client, None)
        texts = [f"{i:02d} {line}"[:255] for i, line in enumerate(lines, 1)]
        quoted = ['"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in texts]
        rrset = dns.rrset.from_text_list(qname, 0, "IN", "TXT", quoted)
        return render(qname, T.TXT, dns.rdataclass.IN, AA, [rrset], (), ())


def _render_answer(qname: dns.name.Name, qtype: int, a: Answer) -> Rendered:
    flags = (AA if a.aa else 0) | a.rcode
    return render(qname, qtype, dns.rdataclass.IN, flags, a.answer, a.authority, a.additional)


def _servfail(qname: dns.name.Name, qtype: int) -> Rendered:
    return render(qname, qtype, dns.rdataclass.IN, dns.rcode.SERVFAIL, (), (), ())


def _render_selection(t: Template, qtype: int, sel: Selection) -> Rendered:
    a = t.answer
    dyn = a.dynamic
    assert dyn is not None
    answer = list(a.answer)
    authority: list[dns.rrset.RRset] = []
    if sel.kind == "servfail":
        return _servfail(t.qname, qtype)
    if sel.kind == "cname" and sel.cname:
        answer.append(dns.rrset.from_text(dyn.owner, sel.ttl, "IN", "CNAME", sel.cname))
    elif sel.kind == "addresses" and sel.addresses:
        rdtype = "AAAA" if ":" in sel.addresses[0] else "A"
        answer.append(dns.rrset.from_text_list(dyn.owner, sel.ttl, "IN", rdtype,
                                               list(sel.addresses)))
    else:
        authority.append(dyn.zone.negative_soa)
    return render(t.qname, qtype, dns.rdataclass.IN, AA | a.rcode, answer, authority, ())

