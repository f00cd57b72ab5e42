"""Bytes in, bytes out: the per-query path shared by the UDP and TCP listeners.

Everything a query needs is reached through one reference read once per query, the
served :class:`~geodns.generation.Generation`, plus the published health snapshot,
so a reload or a health change (a new generation or snapshot) is atomic.

The path, cheapest first: a packet-cache hit (the same query bytes were answered
before) is the cached reply with the client's ID; otherwise the query is decoded and
looked up on its lowercased wire name.  Most answers are one stored RRset
(:class:`~geodns.zones.store.Direct`) or a zone's SOA (:class:`Negative`), copied
behind the client's question; chains, referrals and answers with additional records
are composed once and cached; steered (DYNA) names are finished per client from the
compiled steering maps.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable, Hashable
from time import perf_counter
from typing import Final

import dns.rcode
from dns.rdatatype import RdataType as T

from geodns.defences import Defences
from geodns.generation import Generation
from geodns.health.snapshot import HealthHolder, HealthSnapshot
from geodns.ops.metrics import LATENCY_EVERY, Metrics
from geodns.ops.querylog import QueryLog
from geodns.rrl import Token
from geodns.runtime import Runtime
from geodns.select.plan import Answer as Choice
from geodns.wire import decode as wd
from geodns.wire.compose import compose, compose_lookup
from geodns.wire.encode import (
    AA,
    QR,
    RD,
    TC,
    Rendered,
    ecs_option,
    error_response,
    opt_record,
    truncated,
)
from geodns.zones.store import Direct, Lookup, Negative

log = logging.getLogger("geodns.handler")

XFR_TYPES: Final = (T.AXFR, T.IXFR)
EXPLAIN_LABEL: Final = b"\x08_explain"
MAX_CACHED_QUERY: Final = 512  # longer queries (padding) are answered, never cached
ENTRY_OVERHEAD: Final = 320  # dict slot, tuple and object headers per cached entry
_HEAD: Final = struct.Struct("!HHHHH")
_SCOPE: Final = [bytes((i,)) for i in range(129)]

ExplainFn = Callable[[str, int, "str | bytes", "int | None"], list[str]]
OpcodeFn = Callable[[bytes, str, bool], bytes]  # (query, client, tcp) -> response
# (query, client, tcp, answer unsigned) -> signed response, or None: not signed after all
SignedFn = Callable[[bytes, str, bool, Callable[[bytes], bytes]], "bytes | None"]
# (response after the ID, qtype, rcode, pool, choice, scope, qname, ecs addr, ecs source,
#  RRL account key, steering epoch and health snapshot a steered answer was chosen in)
Sel = tuple["str | None", Choice, int]  # a steered answer's pool, choice and ECS scope
HandleFn = Callable[[bytes, str, bool, "Outcome | None"], "bytes | None"]
PacketEntry = tuple[bytes, int, int, "str | None", "Choice | None", int, bytes, "bytes | None",
                    int, "Token | None", "int | None", "HealthSnapshot"]


# a steered answer for one shape: (the answer, the response from its header to the ECS
# scope byte, the query counter's key, the answer counter's key or None)
ShapeAnswer = tuple[Choice, bytes, tuple[str, int, int], "tuple[str, str, str] | None"]


class Template:
    """A lookup that ends at a steered (DYNA) name: its answer depends on the client.

    Rendered answers are kept per choice (a few per pool: one per POP combination)."""

    __slots__ = ("fam", "found", "owner", "plan", "pool", "qkey", "rendered")

    def __init__(self, qkey: bytes, qtype: int, found: Lookup, runtime: Runtime | None) -> None:
        assert found.dynamic is not None
        self.qkey = qkey
        self.found = found
        self.owner = found.dynamic.owner
        self.pool = found.dynamic.pool
        self.rendered: dict[Hashable, Rendered] = {}
        # The pool's compiled plan and answer family, resolved once for this question.
        self.plan = runtime.selector.plans.get(self.pool) if runtime is not None else None
        self.fam = self.plan.family(qtype) if self.plan is not None else None

    def render(self, qtype: int, choice: Choice) -> Rendered:
        r = self.rendered.get(choice.key)
        if r is None:
            r = _render_choice(self, qtype, choice)
            if len(self.rendered) > 4096:
                self.rendered.clear()
            self.rendered[choice.key] = r
        return r


class Shape:
    """A steered ECS query with the client's address bytes left out.

    Two queries whose bytes differ only in the ECS address (the last bytes of the
    packet, source prefix a multiple of 8) decode alike but for that address, so their
    answers differ only in what the steering map says for it: the question, the OPT
    and the rendered answers are reused, and the per-query work is one map lookup.
    """

    __slots__ = ("by_choice", "head", "limit", "n", "opt", "pad", "qname", "qtype", "question",
                 "shift", "source", "tally", "template", "width")

    def __init__(self, template: Template, qtype: int, head: int, question: bytes, opt: bytes,
                 n: int, width: int, shift: int, source: int, limit: int,
                 qname: bytes, tcp: bool) -> None:
        self.template = template
        self.qtype = qtype
        self.head = head  # index into Rendered.heads: RD and EDNS of the query
        self.question = question
        self.opt = opt  # our OPT with the ECS echo, up to the scope byte
        self.n = n  # address bytes at the end of the query
        self.width = width  # 4 or 16
        self.shift = shift
        self.source = source
        self.limit = limit  # UDP size limit of the asker (TCP: none)
        self.qname = qname
        self.pad = bytes(width - n)  # the ECS address's bytes beyond its prefix
        # the query counter's key per rcode (one tuple each, not one per query)
        self.tally = tuple(("tcp" if tcp else "udp", qtype, rcode) for rcode in range(16))
        # per steering-map answer object (a few per pool), found by identity (an Answer's
        # own hash walks all its fields): id -> (the answer, the response from the header
        # to the ECS scope byte, so a query costs its ID, the scope and the address on
        # top, and the keys of the query and answer counters it adds to, see :meth:`answer`)
        self.by_choice: dict[int, ShapeAnswer] = {}

    def answer(self, choice: Choice, metrics: Metrics | None) -> ShapeAnswer:
        """``choice`` rendered for this shape: the response from the header to the ECS
        scope byte, the query counter's key (transport, qtype, rcode) and the answer
        counter's key, when one key counts it (:meth:`Metrics.answer_key`)."""
        r = self.template.render(self.qtype, choice)
        pre = r.heads[self.head] + self.question + r.body + self.opt
        akey = metrics.answer_key(self.template.pool, choice) if metrics is not None else None
        known = (choice, pre, self.tally[pre[1] & 15], akey)  # pre[1]: RCODE byte
        if len(self.by_choice) >= 64:
            self.by_choice.clear()
        self.by_choice[id(choice)] = known  # the answer is kept: its id stays its own
        return known


def _limit(q: wd.Query, udp_size: int) -> int:
    if not q.edns:
        return 512
    return q.payload if q.payload < udp_size else udp_size


class Outcome:
    """What one answer decided besides its bytes, filled in as it is built: the steered
    choice (pool, choice, scope) that the query log, dnstap, RRL and the packet cache
    record, and whether identical query bytes may get the same answer again."""

    __slots__ = ("cacheable", "choice")

    def __init__(self) -> None:
        self.choice: Sel | None = None
        self.cacheable = True


class Handler:
    """Turns one query packet into one response packet (or None to drop)."""

    def __init__(self, generation: Generation, metrics: Metrics | None = None,
                 qlog: QueryLog | None = None, health: HealthHolder | None = None) -> None:
        self.generation = generation  # swapped whole by a reload (see geodns/generation.py)
        self.health = health or HealthHolder()  # published apart: it changes far more often
        self.metrics = metrics  # counts responses and steered answers (pool, POP)
        self.qlog = qlog
        self._lat_left = LATENCY_EVERY  # [operator hook] uncached queries until one is timed
        # xfr hook: answers opcodes other than QUERY (NOTIFY, UPDATE, ...); None: NOTIMP
        self.other_opcode: OpcodeFn | None = None
        # xfr hook: verifies and signs TSIG-signed queries (a secondary's SOA check)
        self.signed_query: SignedFn | None = None
        self.guard: Defences | None = None  # RRL and DNS cookies (geodns/defences.py)
        # xfr hook: EDNS EXPIRE seconds of a zone (secondary zones count down); None:
        # the SOA EXPIRE of zones from files
        self.expire_of: Callable[[dns.name.Name], int | None] | None = None
        # [traffic hook: recent answer mix, geodns/traffic/mix.py] gets 1 in N steered
        # answers (pool, query bytes, client) and returns the next N; None: off
        self.mix: Callable[[str, bytes, str], int] | None = None
        self._mix_left = 1

    # [operator hook: dnstap, geodns/ops/dnstap.py] Wraps handle() on this instance, so
    # the packet-cache path is covered too and nothing runs when dnstap is off. Install
    # it before the listeners exist (they look up handler.handle).
    def tap(self, wrap: Callable[[HandleFn], Callable[[bytes, str, bool], bytes | None]]) -> None:
        self.handle = wrap(self.handle)  # type: ignore[method-assign,assignment]

    def handle(self, data: bytes, client: str, tcp: bool,
               out: Outcome | None = None) -> bytes | None:
        """The response to ``data`` (None: drop it).  ``out``, when given, learns the
        steered choice of every answer, cached ones included (dnstap asks for it)."""
        st = self.generation
        key = data[2:]
        # GenCache.get, inlined: this runs for every query
        packets = st.packets[tcp]
        found = packets.young.get(key)
        if found is None and packets.old:
            found = packets.old.pop(key, None)
            if found is not None:
                packets.put(key, *found)
        if found is not None:
            hit = found[0]
            if hit[10] is None or (hit[10] == st.epoch and hit[11] is self.health.snapshot):
                return self._replay(st, data, hit, client, tcp, out)
        guard = self.guard
        if st.shape_lens and len(data) > 32 and (guard is None or guard.rrl is None):
            # (a query with a cookie never matches a shape: its bytes differ)
            shapes = st.shapes[tcp]
            for n in st.shape_lens:
                if data[-n - 2] != n << 3:  # not an ECS source prefix of n bytes
                    continue
                shape = shapes.get(data[2:-n])
                if shape is not None:
                    resp = self._steer(st, shape, data, key, client, tcp, out)
                    if resp is not None:
                        return resp
                    break
        self._lat_left -= 1  # [operator hook] latency histogram: 1 in LATENCY_EVERY timed
        timed = self._lat_left <= 0
        qlog = self.qlog
        logged = qlog is not None and qlog.sampled()  # drawn first: only those are timed
        t0 = perf_counter() if timed or logged else 0.0
        try:
            q = wd.decode(data)
            if q is None:
                return None
        except Exception:  # the decoder is bounds-checked; this is a last resort
            log.exception("decoder failure")
            return None
        if out is None:  # (not for packets that are dropped undecoded)
            out = Outcome()
        try:
            resp = self._answer(st, q, client, tcp, out)
        except Exception:
            log.exception("handler failure for query %r", data[:64])
            resp = error_response(q, dns.rcode.SERVFAIL, st.udp_size)
            out.cacheable = False
        # --- defences hook (geodns/defences.py): RRL accounting, slips, DNS cookies ---
        sent: bytes | None
        token = None
        guard = self.guard
        if guard is not None and (guard.rrl is not None or q.cookie is not None):
            sel = out.choice
            sent, token = guard.answer(q, resp, client, tcp, sel[0] if sel else None,
                                       st.store, st.udp_size)
            if q.cookie is not None:
                out.cacheable = False  # our server cookie is per client and per time
        else:
            sent = resp
        # --- end of the defences hook ---
        m = self.metrics
        rcode = resp[3] & 15
        if m is not None and sent is not None:
            m.queries[("tcp" if tcp else "udp", q.qtype, rcode)] += 1
            if timed:  # [operator hook] latency histogram
                self._lat_left = LATENCY_EVERY
                m.latency(perf_counter() - t0)
        sel = out.choice
        if logged and qlog is not None:
            self._log(qlog, client, q.qname, q.qtype, rcode, q.ecs_addr if q.ecs else None,
                      q.ecs_source if q.ecs else None, sel, perf_counter() - t0)
        cacheable = out.cacheable
        if sel is not None and q.ecs is not None and cacheable and not q.error \
                and q.cookie is None and (guard is None or guard.rrl is None):
            self._learn_shape(st, q, data, tcp)
        if cacheable and not q.error and len(data) <= MAX_CACHED_QUERY \
                and st.packets[tcp].admit(key):
            tail = resp[2:]
            entry: PacketEntry = (
                tail, q.qtype, rcode, sel[0] if sel else None, sel[1] if sel else None,
                sel[2] if sel else 0, q.qname, q.ecs_addr if q.ecs else None,
                q.ecs_source if q.ecs else 0, token, st.epoch if sel else None,
                self.health.snapshot)
            st.packets[tcp].put(key, entry, len(key) + len(tail) + ENTRY_OVERHEAD)
        return sent

    def _learn_shape(self, st: Generation, q: wd.Query, data: bytes, tcp: bool) -> None:
        """Remember the shape of a steered ECS query whose address ends the packet:
        every query with the same bytes but the address gets its answer from the
        steering map without being decoded (see :class:`Shape`)."""
        ecs = q.ecs
        assert ecs is not None
        n = len(ecs) - 4  # address bytes
        if n <= 0 or q.ecs_source % 8 or not data.endswith(ecs) or q.nsid or q.expire:
            return
        t = st.composed.get(q.qname + q.qtype.to_bytes(2, "big"))
        if not isinstance(t, Template) or t.plan is None or t.fam is None:
            return
        width = 4 if q.ecs_family == 1 else 16
        opt = st.opt_head[q.do] + (len(ecs) + 4).to_bytes(2, "big") + b"\x00\x08" \
            + len(ecs).to_bytes(2, "big") + ecs[:3]
        shape = Shape(t, q.qtype, q.rd * 2 + 1, data[12:q.qend], opt, n, width,
                      (width - n) * 8, q.ecs_source,
                      1 << 30 if tcp else _limit(q, st.udp_size), q.qname, tcp)
        st.shapes[tcp].put(data[2:-n], shape, len(data) + ENTRY_OVERHEAD)
        if n not in st.shape_lens:
            st.shape_lens = (*st.shape_lens, n)

    def _steer(self, st: Generation, shape: Shape, data: bytes, key: bytes, client: str,
               tcp: bool, out: Outcome | None) -> bytes | None:
        """A steered ECS query of a known shape: decide, render, done (None: the answer
        does not fit; take the long way)."""
        t = shape.template
        plan = t.plan
        if plan is None:
            return None
        raw = data[-shape.n:]
        health = self.health.snapshot
        choice, scope = plan.decide(t.fam, 4 if shape.width == 4 else 6,  # type: ignore[arg-type]
                                    int.from_bytes(raw, "big") << shape.shift, shape.source,
                                    health)
        known = shape.by_choice.get(id(choice))
        if known is None or known[0] is not choice:
            known = shape.answer(choice, self.metrics)
        resp = data[:2] + known[1] + _SCOPE[scope] + raw
        if len(resp) > shape.limit:
            return None
        st.hits += 1
        if out is not None:  # dnstap reads the arm and fence; no tuple per query without it
            out.choice = (t.pool, choice, scope)
        m = self.metrics
        if m is not None:  # the counters' keys were made with the rendered answer
            m.queries[known[2]] += 1
            if known[3] is not None:
                m.answers[known[3]] += 1
            else:
                m.on_answer(t.pool, choice)
        if self.mix is not None:  # [traffic hook] 1 in N into the answer mix
            self._mix_left -= 1
            if self._mix_left <= 0:
                self._mix_left = self.mix(t.pool, data, client)
        qlog = self.qlog
        if qlog is not None and qlog.sampled():
            self._log(qlog, client, shape.qname, shape.qtype, resp[3] & 15, raw + shape.pad,
                      shape.source, (t.pool, choice, scope), 0.0)
        packets = st.packets[tcp]
        if packets.admit(key):
            tail = resp[2:]
            packets.put(key, (tail, shape.qtype, resp[3] & 15, t.pool, choice, scope,
                              shape.qname, raw + shape.pad, shape.source, None, st.epoch,
                              health),
                        len(key) + len(tail) + ENTRY_OVERHEAD)
        return resp

    def _replay(self, st: Generation, data: bytes, hit: PacketEntry, client: str,
                tcp: bool, out: Outcome | None) -> bytes | None:
        """A packet-cache hit: same bytes in, same bytes out, with the client's ID."""
        tail, qtype, rcode, pool, choice, scope, qname, ecs_addr, ecs_source, token, _, _ = hit
        st.hits += 1
        if out is not None and choice is not None:  # dnstap reads the arm and fence
            out.choice = (pool, choice, scope)
        resp = data[:2] + tail
        guard = self.guard
        if guard is not None and token is not None and not tcp:  # defences hook: RRL
            limited = guard.replay(resp, token, client)  # a cached answer counts too
            if limited is None:
                return None
            resp = limited
        m = self.metrics
        if m is not None:
            m.queries[("tcp" if tcp else "udp", qtype, rcode)] += 1
        if choice is not None:
            if m is not None:
                m.on_answer(pool, choice)  # type: ignore[arg-type]
            if self.mix is not None:  # [traffic hook] 1 in N into the answer mix
                self._mix_left -= 1
                if self._mix_left <= 0:
                    self._mix_left = self.mix(pool, data, client)  # type: ignore[arg-type]
        qlog = self.qlog
        if qlog is not None and qlog.sampled():
            self._log(qlog, client, qname, qtype, rcode, ecs_addr,
                      ecs_source if ecs_addr is not None else None,
                      (pool, choice, scope) if choice is not None else None, 0.0)
        return resp

    def health_changed(self) -> None:
        """Steered answers may now be different (health, loads, a latency map): cached
        ones of an older epoch are no longer replayed; static ones stay."""
        self.generation.epoch += 1

    def _log(self, qlog: QueryLog, client: str, qname: bytes, qtype: int, rcode: int,
             ecs_addr: bytes | None, ecs_source: int | None,
             sel: Sel | None, latency: float) -> None:
        qlog.log(client, ecs_addr, ecs_source, qname, qtype, rcode,
                 sel[0] if sel else None, sel[1].pops if sel else None,
                 sel[2] if sel else None, sel[1].ttl if sel else None, latency,
                 sel[1].arm if sel else None, sel[1].fence if sel else None)  # [fences hook]

    # ------------------------------------------------------------------ answers

    def _answer(self, st: Generation, q: wd.Query, client: str, tcp: bool,
                out: Outcome) -> bytes:
        if q.error:
            if q.opcode and self.other_opcode is not None:  # xfr hook (off the hot path)
                return self.other_opcode(q.data, client, tcp)
            return error_response(q, q.error, st.udp_size)
        data = q.data
        if self.signed_query is not None and (data[10] or data[11] > q.edns):
            # xfr hook: an additional record besides OPT, e.g. a TSIG
            signed = self._signed(st, q, client, tcp, out)
            if signed is not None:
                return signed
        if q.qclass != 1 and q.qclass != 255:  # IN, or ANY: answered from IN (as Knot, NSD)
            return error_response(q, dns.rcode.REFUSED, st.udp_size)
        qtype = q.qtype
        if qtype in XFR_TYPES:
            return error_response(q, dns.rcode.NOTIMP if tcp else dns.rcode.FORMERR, st.udp_size)
        qkey = q.qname
        if qtype == 16 and qkey.startswith(EXPLAIN_LABEL):
            # Who asks decides the answer (explain or a plain lookup): never packet-cache.
            out.cacheable = False
            if st.steered and st.explain_allowed is not None and st.explain_allowed(client):
                return self._finish(st, q, self._explain(st, q, client), 0, tcp, out)
        if qkey in st.dyna:  # a steered name: its template is cached
            t = st.composed.get(qkey + qtype.to_bytes(2, "big"))
            if t is not None and t.__class__ is Template:
                st.hits += 1
                done, scope = self._dynamic(st, q, t, client, out)
                return self._finish(st, q, done, scope, tcp, out)
        found = st.store.find(qkey, qtype)
        cls = found.__class__
        if cls is Direct:
            st.misses += 1
            blob = found.blob  # type: ignore[union-attr]
            flags = QR | AA | (RD if q.rd else 0)
            if q.edns:
                opt = self._opt(st, q, 0, out)
                resp = data[:2] + _HEAD.pack(flags, 1, int.from_bytes(blob[2:4], "big"), 0, 1) \
                    + data[12:q.qend] + blob[4:] + opt
            else:
                opt = b""
                resp = data[:2] + _HEAD.pack(flags, 1, int.from_bytes(blob[2:4], "big"), 0, 0) \
                    + data[12:q.qend] + blob[4:]
            if not tcp and len(resp) > _limit(q, st.udp_size):
                return data[:2] + _HEAD.pack(flags | TC, 1, 0, 0, 1 if opt else 0) \
                    + data[12:q.qend] + opt
            return resp
        if cls is Negative:
            st.misses += 1
            zone = found.zone  # type: ignore[union-attr]
            tail = zone.negative_tail
            owner = (0xC000 | (12 + len(qkey) - len(zone.key))).to_bytes(2, "big")
            flags = QR | AA | (RD if q.rd else 0) | found.rcode  # type: ignore[union-attr]
            if q.edns:
                return data[:2] + _HEAD.pack(flags, 1, 0, 1, 1) + data[12:q.qend] + owner \
                    + tail + self._opt(st, q, 0, out)
            return data[:2] + _HEAD.pack(flags, 1, 0, 1, 0) + data[12:q.qend] + owner + tail
        if found is None:
            return error_response(q, dns.rcode.REFUSED, st.udp_size)
        ckey = qkey + qtype.to_bytes(2, "big")
        r: Rendered | Template | None = st.composed.get(ckey)
        if r is None:
            st.misses += 1
            assert isinstance(found, Lookup)
            if found.dynamic is not None:
                r = Template(qkey, qtype, found, st.runtime)
                st.composed.put(ckey, r, len(ckey) + ENTRY_OVERHEAD + 512)
            else:
                r = compose(qkey, qtype, found, st.store, st.additional)
                st.composed.put(ckey, r, len(ckey) + ENTRY_OVERHEAD + len(r.body))
        else:
            st.hits += 1
        if isinstance(r, Template):
            rendered, scope = self._dynamic(st, q, r, client, out)
            return self._finish(st, q, rendered, scope, tcp, out)
        return self._finish(st, q, r, 0, tcp, out)

    def _signed(self, st: Generation, q: wd.Query, client: str, tcp: bool,
                out: Outcome) -> bytes | None:
        """xfr hook: the TSIG checked and the answer signed (never packet-cached)."""
        assert self.signed_query is not None

        def unsigned(wire: bytes) -> bytes:
            plain = wd.decode(wire)
            assert plain is not None
            return self._answer(st, plain, client, tcp, out)

        resp = self.signed_query(q.data, client, tcp, unsigned)
        if resp is not None:
            out.cacheable = False
        return resp

    def _opt(self, st: Generation, q: wd.Query, scope: int, out: Outcome) -> bytes:
        """Our OPT record for ``q``: payload size, DO, the ECS echo with our scope, and the
        NSID and EXPIRE options when asked for."""
        ecs = q.ecs
        if not (q.nsid or q.expire):
            if ecs is None:
                return st.opt_plain[q.do]
            n = len(ecs)  # echo family, source and address with our scope
            return st.opt_head[q.do] + (n + 4).to_bytes(2, "big") + b"\x00\x08" \
                + n.to_bytes(2, "big") + ecs[:3] + _SCOPE[scope] + ecs[4:]
        options = ecs_option(q, scope) if ecs is not None else b""
        if q.nsid and st.nsid is not None:  # RFC 5001: who answered, in an anycast fleet
            options += struct.pack("!HH", 3, len(st.nsid)) + st.nsid
        if q.expire:  # RFC 7314: how long the answering zone stays valid (as Knot)
            zone = st.store.zone_for(q.qname, q.qtype)
            if zone is not None:
                seconds = self.expire_of(zone.origin) if self.expire_of is not None else None
                if seconds is None:
                    seconds = zone.soa[0].expire
                options += struct.pack("!HHI", 9, 4, max(0, min(seconds, 2**32 - 1)))
                out.cacheable = False  # a secondary's EXPIRE counts down
        return opt_record(st.udp_size, q.do, 0, options)

    def _finish(self, st: Generation, q: wd.Query, r: Rendered, scope: int, tcp: bool,
                out: Outcome) -> bytes:
        data = q.data
        if q.edns:
            opt = self._opt(st, q, scope, out)
            resp = data[:2] + r.heads[q.rd * 2 + 1] + data[12:q.qend] + r.body + opt
        else:
            opt = b""
            resp = data[:2] + r.heads[q.rd * 2] + data[12:q.qend] + r.body
        if not tcp:
            limit = _limit(q, st.udp_size)
            if len(resp) > limit:
                lean = r.lean  # the same answer without the optional additional records
                if lean is not None and len(resp) - len(r.body) + len(lean.body) <= limit:
                    return data[:2] + lean.heads[q.rd * 2 + q.edns] + data[12:q.qend] \
                        + lean.body + opt
                return truncated(q, r, opt)
        return resp

    def _dynamic(self, st: Generation, q: wd.Query, t: Template, client: str,
                 out: Outcome) -> tuple[Rendered, int]:
        """Finish a DYNA answer for this client from the compiled steering maps."""
        rt = st.runtime
        plan = t.plan
        if rt is None or plan is None:
            return _servfail(), 0
        fam = t.fam
        if fam is None:
            choice, scope = rt.selector.decide(t.pool, q.qtype, 4, 0, 0, self.health.snapshot)
        elif q.ecs is not None:
            choice, scope = plan.decide(fam, 4 if q.ecs_family == 1 else 6,
                                        int.from_bytes(q.ecs_addr, "big"), q.ecs_source,
                                        self.health.snapshot)
        else:
            cfam, addr = _source_address(client)
            choice, scope = plan.decide(fam, cfam, addr, None, self.health.snapshot)
            out.cacheable = False  # depends on the source address, not on the bytes
        if self.metrics is not None:
            self.metrics.on_answer(t.pool, choice)
        if self.mix is not None:  # [traffic hook] 1 in N into the answer mix
            self._mix_left -= 1
            if self._mix_left <= 0:
                self._mix_left = self.mix(t.pool, q.data, client)
        out.choice = (t.pool, choice, scope)
        return t.render(q.qtype, choice), scope

    def _explain(self, st: Generation, q: wd.Query, client: str) -> Rendered:
        """`_explain.<name> TXT`: why this client gets what it gets (opt-in, allow-listed)."""
        from geodns.wire.explain import explain_answer

        rt = st.runtime
        assert rt is not None
        return explain_answer(st.store, rt, q, client, self.health.snapshot)


def _source_address(client: str) -> tuple[int, int]:
    """(family, address) of a socket's source address text (IPv4-mapped is IPv4)."""
    if ":" in client:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, client.split("%", 1)[0]),
                               "big")
        if value >> 32 == 0xFFFF:
            return 4, value & 0xFFFFFFFF
        return 6, value
    return 4, int.from_bytes(socket.inet_aton(client), "big")


def _servfail() -> Rendered:
    return Rendered(QR | dns.rcode.SERVFAIL, 0, 0, 0, b"")


def _render_choice(t: Template, qtype: int, choice: Choice) -> Rendered:
    """The chain that led to the steered name, then the pool's choice for it."""
    if choice.kind == "servfail":
        return _servfail()
    found = t.found
    if choice.kind == "nodata" or (choice.kind == "addresses" and not choice.addresses):
        tail = Lookup(found.rcode, found.aa, answer=found.answer, negative=found.dynamic.zone
                      if found.dynamic is not None else None)
        return compose_lookup(t.qkey, tail)
    if choice.kind == "cname":
        assert choice.cname is not None
        rtype, rdatas = 5, [_name_wire(choice.cname)]
    else:
        v6 = ":" in choice.addresses[0]
        rtype = 28 if v6 else 1
        rdatas = [socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, a)
                  for a in choice.addresses]
    rr = struct.Struct("!HHIH")
    blob = struct.pack("!HH", rtype, len(rdatas)) + b"".join(
        b"\xc0\x0c" + rr.pack(rtype, 1, choice.ttl, len(rd)) + rd for rd in rdatas)
    return compose_lookup(t.qkey, Lookup(found.rcode, True, answer=found.answer),
                          final=[(t.owner, blob)])


def _name_wire(text: str) -> bytes:
    import dns.name

    return dns.name.from_text(text).to_wire()  # type: ignore[return-value]
