"""Bytes in, bytes out: the per-query path shared by the UDP and TCP listeners.

Everything a query needs is reached through one ``State`` reference read once per
query, so a reload or health change (a new State or snapshot) is atomic.

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
from typing import Any, Final

import dns.rcode
from dns.rdatatype import RdataType as T

from geodns.defences import Defences
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
from geodns.zones.store import Direct, Lookup, Negative, ZoneStore

log = logging.getLogger("geodns.handler")

XFR_TYPES: Final = (T.AXFR, T.IXFR)
EXPLAIN_LABEL: Final = b"\x08_explain"
PACKET_CACHE_BYTES: Final = 32 << 20  # per transport and kind (static / steered)
COMPOSED_CACHE_BYTES: Final = 16 << 20
MAX_CACHED_QUERY: Final = 512  # longer queries (padding) are answered, never cached
ENTRY_OVERHEAD: Final = 200  # dict slot, tuple and object headers per cached entry
_HEAD: Final = struct.Struct("!HHHHH")

ExplainFn = Callable[[str, int, "str | bytes", "int | None"], list[str]]
OpcodeFn = Callable[[bytes, str, bool], bytes]  # (query, client, tcp) -> response
# (query, client, tcp, answer unsigned) -> signed response, or None: not signed after all
SignedFn = Callable[[bytes, str, bool, Callable[[bytes], bytes]], "bytes | None"]
# (response after the ID, qtype, rcode, pool, choice, scope, qname, ecs addr, ecs source,
#  RRL account key)
PacketEntry = tuple[bytes, int, int, "str | None", "Choice | None", int, bytes, "bytes | None",
                    int, "Token | None"]


class GenCache:
    """A cache bounded by bytes that keeps what is used: two generations; a hit in the
    old one moves the entry to the young one, and when the young one is full the old
    one is dropped.  A flood of one-off entries passes through without evicting the
    entries that keep being asked for, and memory never exceeds twice the budget."""

    __slots__ = ("budget", "old", "size", "young")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.young: dict[bytes, tuple[Any, int]] = {}
        self.old: dict[bytes, tuple[Any, int]] = {}
        self.size = 0

    def get(self, key: bytes) -> Any:
        hit = self.young.get(key)
        if hit is not None:
            return hit[0]
        hit = self.old.pop(key, None)
        if hit is None:
            return None
        self.put(key, hit[0], hit[1])
        return hit[0]

    def put(self, key: bytes, value: Any, cost: int) -> None:
        if self.size + cost > self.budget:
            self.old = self.young
            self.young = {}
            self.size = 0
        self.young[key] = (value, cost)
        self.size += cost

    def clear(self) -> None:
        self.young = {}
        self.old = {}
        self.size = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


class Template:
    """A lookup that ends at a steered (DYNA) name: its answer depends on the client.

    Rendered answers are kept per choice (a few per pool: one per POP combination)."""

    __slots__ = ("found", "owner", "pool", "qkey", "rendered")

    def __init__(self, qkey: bytes, found: Lookup) -> None:
        assert found.dynamic is not None
        self.qkey = qkey
        self.found = found
        self.owner = found.dynamic.owner
        self.pool = found.dynamic.pool
        self.rendered: dict[Hashable, Rendered] = {}

    def render(self, qtype: int, choice: Choice) -> Rendered:
        r = self.rendered.get(choice.key)
        if r is None:
            r = _render_choice(self, qtype, choice)
            if len(self.rendered) > 4096:
                self.rendered.clear()
            self.rendered[choice.key] = r
        return r


class State:
    """One consistent view: zones, the runtime (config, selector, health), caches."""

    def __init__(self, store: ZoneStore, udp_size: int = 1232, runtime: Runtime | None = None,
                 explain_allowed: Callable[[str], bool] | None = None,
                 additional: bool = True) -> None:
        self.store = store
        self.udp_size = udp_size
        self.runtime = runtime if runtime is not None and runtime.config.pools else None
        self.explain_allowed = explain_allowed
        self.additional = additional
        self.composed = GenCache(COMPOSED_CACHE_BYTES)  # qname + qtype -> Rendered | Template
        # Packet caches: query bytes after the ID -> PacketEntry.  Identical bytes
        # (ECS, payload size, RD, 0x20 case included) get an identical answer while this
        # State and the health snapshot stand; steered entries go on a health change.
        self.packets = (GenCache(PACKET_CACHE_BYTES), GenCache(PACKET_CACHE_BYTES))
        self.steered = (GenCache(PACKET_CACHE_BYTES), GenCache(PACKET_CACHE_BYTES))
        self.opt_plain = (opt_record(udp_size, False), opt_record(udp_size, True))
        self.hits = 0
        self.misses = 0


def _limit(q: wd.Query, udp_size: int) -> int:
    if not q.edns:
        return 512
    return q.payload if q.payload < udp_size else udp_size


class Handler:
    """Turns one query packet into one response packet (or None to drop)."""

    def __init__(self, state: State, on_answer: Callable[[str, Choice], None] | None = None,
                 metrics: Metrics | None = None, qlog: QueryLog | None = None) -> None:
        self.state = state
        self.on_answer = on_answer
        self.metrics = metrics
        self.qlog = qlog
        self._sel: tuple[str, Choice, int] | None = None  # last DYNA decision
        self._cacheable = False  # may the answer being built go to the packet cache?
        self._lat_left = LATENCY_EVERY  # [operator hook] uncached queries until one is timed
        # xfr hook: answers opcodes other than QUERY (NOTIFY, UPDATE, ...); None: NOTIMP
        self.other_opcode: OpcodeFn | None = None
        # xfr hook: verifies and signs TSIG-signed queries (a secondary's SOA check)
        self.signed_query: SignedFn | None = None
        self.guard: Defences | None = None  # RRL and DNS cookies (geodns/defences.py)

    # [operator hook: dnstap, geodns/ops/dnstap.py] Wraps handle() on this instance, so
    # the packet-cache path is covered too and nothing runs when dnstap is off. Install
    # it before the listeners exist (they look up handler.handle).
    def tap(self, wrap: Callable[[Callable[[bytes, str, bool], bytes | None]],
                                 Callable[[bytes, str, bool], bytes | None]]) -> None:
        self.handle = wrap(self.handle)  # type: ignore[method-assign,assignment]

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        st = self.state
        key = data[2:]
        hit = st.packets[tcp].get(key)
        if hit is None:
            hit = st.steered[tcp].get(key)
        if hit is not None:
            return self._replay(st, data, hit, client, tcp)
        self._lat_left -= 1  # [operator hook] latency histogram: 1 in LATENCY_EVERY timed
        timed = self._lat_left <= 0
        t0 = perf_counter() if timed or self.qlog is not None else 0.0
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
        # --- defences hook (geodns/defences.py): RRL accounting, slips, DNS cookies ---
        out: bytes | None = resp
        token = None
        guard = self.guard
        if guard is not None and (guard.rrl is not None or q.cookie is not None):
            sel = self._sel
            out, token = guard.answer(q, resp, client, tcp, sel[0] if sel else None,
                                      st.store, st.udp_size)
            if q.cookie is not None:
                self._cacheable = False  # our server cookie is per client and per time
        # --- end of the defences hook ---
        m = self.metrics
        rcode = resp[3] & 15
        if m is not None and out is not None:
            m.queries[("tcp" if tcp else "udp", q.qtype, rcode)] += 1
            if timed:  # [operator hook] latency histogram
                self._lat_left = LATENCY_EVERY
                m.latency(perf_counter() - t0)
        sel = self._sel
        qlog = self.qlog
        if qlog is not None and qlog.sampled():
            self._log(qlog, client, q.qname, q.qtype, rcode, q.ecs_addr if q.ecs else None,
                      q.ecs_source if q.ecs else None, sel, perf_counter() - t0)
        if self._cacheable and not q.error and len(data) <= MAX_CACHED_QUERY:
            tail = resp[2:]
            entry: PacketEntry = (
                tail, q.qtype, rcode, sel[0] if sel else None, sel[1] if sel else None,
                sel[2] if sel else 0, q.qname, q.ecs_addr if q.ecs else None,
                q.ecs_source if q.ecs else 0, token)
            cache = st.steered[tcp] if sel is not None else st.packets[tcp]
            cache.put(key, entry, len(key) + len(tail) + ENTRY_OVERHEAD)
        return out

    def _replay(self, st: State, data: bytes, hit: PacketEntry, client: str,
                tcp: bool) -> bytes | None:
        """A packet-cache hit: same bytes in, same bytes out, with the client's ID."""
        tail, qtype, rcode, pool, choice, scope, qname, ecs_addr, ecs_source, token = hit
        st.hits += 1
        resp = data[:2] + tail
        guard = self.guard
        if guard is not None and token is not None and not tcp:  # defences hook: RRL
            out = guard.replay(resp, token, client)  # a cached answer counts too
            if out is None:
                return None
            resp = out
        m = self.metrics
        if m is not None:
            m.queries[("tcp" if tcp else "udp", qtype, rcode)] += 1
        if choice is not None and self.on_answer is not None:
            self.on_answer(pool, choice)  # type: ignore[arg-type]
        qlog = self.qlog
        if qlog is not None and qlog.sampled():
            self._log(qlog, client, qname, qtype, rcode, ecs_addr,
                      ecs_source if ecs_addr is not None else None,
                      (pool, choice, scope) if choice is not None else None, 0.0)
        return resp

    def health_changed(self) -> None:
        """Cached steered answers may now be wrong: forget them (static ones stay)."""
        for cache in self.state.steered:
            cache.clear()

    def _log(self, qlog: QueryLog, client: str, qname: bytes, qtype: int, rcode: int,
             ecs_addr: bytes | None, ecs_source: int | None,
             sel: tuple[str | None, Choice, int] | None, latency: float) -> None:
        qlog.log(client, ecs_addr, ecs_source, qname, qtype, rcode,
                 sel[0] if sel else None, sel[1].pops if sel else None,
                 sel[2] if sel else None, sel[1].ttl if sel else None, latency)

    # ------------------------------------------------------------------ answers

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
        if q.qclass != 1:  # IN
            return error_response(q, dns.rcode.REFUSED, st.udp_size)
        qtype = q.qtype
        if qtype in XFR_TYPES:
            return error_response(q, dns.rcode.NOTIMP if tcp else dns.rcode.FORMERR, st.udp_size)
        qkey = q.qname
        if qtype == 16 and qkey.startswith(EXPLAIN_LABEL):
            # Who asks decides the answer (explain or a plain lookup): never packet-cache.
            self._cacheable = False
            if st.runtime is not None and st.explain_allowed is not None \
                    and st.explain_allowed(client):
                return self._finish(st, q, self._explain(st, q, client), 0, tcp)
        found = st.store.find(qkey, qtype)
        cls = found.__class__
        if cls is Direct:
            st.misses += 1
            blob = found.blob  # type: ignore[union-attr]
            flags = QR | AA | (RD if q.rd else 0)
            if q.edns:
                opt = opt_record(st.udp_size, q.do, 0, ecs_option(q, 0)) if q.ecs \
                    else st.opt_plain[q.do]
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
                opt = opt_record(st.udp_size, q.do, 0, ecs_option(q, 0)) if q.ecs \
                    else st.opt_plain[q.do]
                return data[:2] + _HEAD.pack(flags, 1, 0, 1, 1) + data[12:q.qend] + owner \
                    + tail + opt
            return data[:2] + _HEAD.pack(flags, 1, 0, 1, 0) + data[12:q.qend] + owner + tail
        if found is None:
            return error_response(q, dns.rcode.REFUSED, st.udp_size)
        ckey = qkey + qtype.to_bytes(2, "big")
        r = st.composed.get(ckey)
        if r is None:
            st.misses += 1
            assert isinstance(found, Lookup)
            if found.dynamic is not None:
                r = Template(qkey, found)
            else:
                r = compose(qkey, qtype, found, st.store, st.additional)
            st.composed.put(ckey, r, len(ckey) + ENTRY_OVERHEAD + (
                len(r.body) if isinstance(r, Rendered) else 512))
        else:
            st.hits += 1
        scope = 0
        if r.__class__ is Template:
            r, scope = self._dynamic(st, q, r, client)
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
        if not tcp:
            limit = _limit(q, st.udp_size)
            if len(resp) > limit:
                lean = r.lean  # the same answer without the optional additional records
                if lean is not None and len(resp) - len(r.body) + len(lean.body) <= limit:
                    return data[:2] + lean.heads[q.rd * 2 + q.edns] + data[12:q.qend] \
                        + lean.body + opt
                return truncated(q, r, opt)
        return resp

    def _dynamic(self, st: State, q: wd.Query, t: Template,
                 client: str) -> tuple[Rendered, int]:
        """Finish a DYNA answer for this client from the compiled steering maps."""
        rt = st.runtime
        if rt is None:
            return _servfail(), 0
        health = rt.health.snapshot
        if q.ecs is not None:
            choice, scope = rt.selector.decide(t.pool, q.qtype, 4 if q.ecs_family == 1 else 6,
                                               int.from_bytes(q.ecs_addr, "big"),
                                               q.ecs_source, health)
        else:
            cfam, addr = _source_address(client)
            choice, scope = rt.selector.decide(t.pool, q.qtype, cfam, addr, None, health)
            self._cacheable = False  # depends on the source address, not on the bytes
        if self.on_answer is not None:
            self.on_answer(t.pool, choice)
        self._sel = (t.pool, choice, scope)
        return t.render(q.qtype, choice), scope

    def _explain(self, st: State, q: wd.Query, client: str) -> Rendered:
        """`_explain.<name> TXT`: why this client gets what it gets (opt-in, allow-listed)."""
        from geodns.wire.explain import explain_answer

        rt = st.runtime
        assert rt is not None
        return explain_answer(st.store, rt, q, client)


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
