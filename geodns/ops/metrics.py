"""Prometheus metrics whose per-query cost is one dict increment.

The query path never touches prometheus-client objects (their locks and label
lookups cost microseconds): it bumps plain ``defaultdict(int)`` counters through
tiny methods (:meth:`Metrics.query`, :meth:`Metrics.answer`, :meth:`Metrics.on_answer`),
keyed by raw ints where that saves work (qtype and rcode numbers are turned into
text only at scrape time).  A custom collector builds the metric families from
those dicts when ``/metrics`` is scraped.  Everything runs on the event loop
thread, so no locking is needed.

Each :class:`Metrics` owns its own :class:`CollectorRegistry` (never the global
one), so tests and several servers in one process do not collide.
"""

from __future__ import annotations

import bisect
import platform
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol

import dns.rcode
import dns.rdatatype
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "LATENCY_EVERY",
    "NO_ARM",
    "NO_POP",
    "AnswerHistory",
    "Metrics",
    "qtype_label",
    "rcode_label",
    "sum_window",
]

# What generate_latest() emits (text format 0.0.4), whatever the library's "latest" is.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
NO_POP: Final = "none"  # answers label for NODATA/SERVFAIL selections (no POP chosen)
NO_ARM: Final = ""  # answers' arm label in pools without experiment arms (same as absent)
HEALTH_STATES: Final = ("up", "drain", "down")
# Query latency: the handler times 1 in LATENCY_EVERY queries that miss the packet cache
# (a hit is a dictionary lookup and a copy: timing it would cost more than it measures).
LATENCY_EVERY: Final = 32
LATENCY_BUCKETS: Final = (0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                          0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)

_RRL_CLASSES: Final = ("positive", "nxdomain", "error")  # geodns.rrl.CLASS_NAMES

# qtypes that get their own label; anything else is "other" so a client sending
# every one of the 65536 types cannot blow up the label cardinality.
_QTYPES: Final = frozenset({
    "A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "NAPTR", "DS", "RRSIG",
    "NSEC", "DNSKEY", "NSEC3", "NSEC3PARAM", "TLSA", "SVCB", "HTTPS", "CAA", "SPF",
    "ANY", "AXFR", "IXFR", "DYNA",
})


class _SelectionLike(Protocol):
    @property
    def pops(self) -> tuple[str, ...]: ...
    @property
    def kind(self) -> str: ...
    @property
    def arm(self) -> str | None: ...
    @property
    def fence(self) -> str | None: ...


def qtype_label(qtype: int | str) -> str:
    """Label text for a qtype number or name (unusual types fold into ``other``)."""
    if isinstance(qtype, int):
        try:
            text = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
        except ValueError:
            return "other"
    else:
        text = qtype.upper()
    return text if text in _QTYPES else "other"


def rcode_label(rcode: int | str) -> str:
    """Label text for an rcode number or name (``NOERROR``, ``NXDOMAIN``, ...)."""
    if isinstance(rcode, str):
        return rcode.upper()
    try:
        return dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
    except ValueError:
        return "other"


class AnswerHistory:
    """Ring buffer of per-minute answer counts per POP (for the status page).

    Fed from the cumulative answer counters by :meth:`tick` (called every few seconds
    by the control listener, and on every status read), so the query path pays
    nothing for it.  A minute's count is what the counters grew by between its
    first and last tick.
    """

    def __init__(self, minutes: int = 15, clock: Callable[[], float] = time.time) -> None:
        if minutes < 1:
            raise ValueError("history needs at least one minute")
        self.minutes = minutes
        self.clock = clock
        self.ring: deque[tuple[int, dict[str, int]]] = deque(maxlen=minutes)
        self._minute = int(clock() // 60)  # counters start at zero with the history
        self._base: dict[str, int] = {}

    def tick(self, totals: Mapping[str, int]) -> None:
        """Close the current minute if the clock moved on; ``totals`` are cumulative."""
        minute = int(self.clock() // 60)
        if minute <= self._minute:
            return
        self.ring.append((self._minute * 60, _diff(totals, self._base)))
        gap = min(minute - self._minute - 1, self.minutes)
        for i in range(gap, 0, -1):  # idle minutes are zero, not missing
            self.ring.append(((minute - i) * 60, {}))
        self._minute, self._base = minute, dict(totals)

    def per_minute(self, totals: Mapping[str, int]) -> list[tuple[int, dict[str, int]]]:
        """Closed minutes oldest first, then the current (partial) minute."""
        self.tick(totals)
        return [*self.ring, (self._minute * 60, _diff(totals, self._base))]

    def window(self, totals: Mapping[str, int], minutes: int) -> dict[str, int]:
        """Answers per POP in the last ``minutes`` minutes (the current one included)."""
        return sum_window(self.per_minute(totals), minutes)


def sum_window(per_minute: Sequence[tuple[int, Mapping[str, int]]],
               minutes: int) -> dict[str, int]:
    """Answers per POP over the last ``minutes`` entries of a :meth:`Metrics.per_minute`
    series; one definition for :meth:`Metrics.recent_answers` and ``/status``, which
    needs the series too and sums the copy it already has."""
    out: dict[str, int] = defaultdict(int)
    for _, counts in per_minute[-max(1, minutes):]:
        for pop, n in counts.items():
            out[pop] += n
    return dict(out)


def _diff(now: Mapping[str, int], base: Mapping[str, int]) -> dict[str, int]:
    return {k: v - base.get(k, 0) for k, v in now.items() if v - base.get(k, 0) > 0}


class Metrics:
    """Counters the server bumps, exposed as Prometheus metrics at scrape time.

    Hot path (per query): :meth:`query`, :meth:`answer` / :meth:`on_answer`.
    Everything else (health, reloads, zones, cache, query log) is updated on events.
    """

    def __init__(self, *, history_minutes: int = 15,
                 clock: Callable[[], float] = time.time, version: str = "unknown",
                 process: bool = True) -> None:
        self.queries: defaultdict[tuple[str, int | str, int | str], int] = defaultdict(int)
        # (pool, POP, experiment arm or NO_ARM) -> steered answers
        self.answers: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        # (fence label, pool, FENCE_RESULTS entry) -> answers to clients inside fences
        self.fenced: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.health_states: dict[str, str] = {}  # target ("fra", "fra/192.0.2.20") -> state
        self.check_latency: dict[str, float] = {}  # target -> seconds of the last probe
        self.health_changes: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.reloads: dict[str, int] = {"success": 0, "failure": 0}
        self.last_reload_time: float | None = None
        self.last_reload_ok: bool | None = None
        self.zone_serials: dict[str, int] = {}
        # Answer cache: the live Generation's counters come from cache_source; one that is
        # replaced (reload) hands its final counts to cache_retired() so totals never drop.
        self.cache_source: Callable[[], tuple[int, int]] | None = None
        self._cache_hits_base = 0
        self._cache_misses_base = 0
        self.querylog_dropped = 0
        self.querylog_written = 0
        self.dnstap_written = 0
        self.dnstap_dropped = 0
        # Sampled latency histogram: bucket counts (the last one is +Inf) and the sum.
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.version = version
        # GeoIP database in use: (type, path, build time) or None (no database open).
        self.geoip: tuple[str, str, float] | None = None
        # Zone transfers (geodns.xfr): answers given as a primary, NOTIFYs sent, and per
        # secondary zone its serial, last good refresh, refresh failures and expiry.
        self.xfr_out: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.notify_sent: defaultdict[str, int] = defaultdict(int)
        self.secondary_serial: dict[str, int] = {}
        self.secondary_refreshed: dict[str, float] = {}
        self.secondary_failures: defaultdict[str, int] = defaultdict(int)
        self.secondary_expired: dict[str, bool] = {}
        # Defences: (action, answer class) of rate-limited responses; cookie outcomes.
        self.rrl: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.cookies: defaultdict[str, int] = defaultdict(int)
        self.started = clock()
        self.clock = clock
        self.history = AnswerHistory(history_minutes, clock)
        self.registry = CollectorRegistry()
        self.registry.register(_GeodnsCollector(self))
        if process:  # process_* (CPU, memory, fds, start time) and python_info
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    # --- hot path --------------------------------------------------------------------

    def query(self, transport: str, qtype: int | str, rcode: int | str) -> None:
        """One response sent (``transport`` "udp"/"tcp"; qtype/rcode as numbers is cheapest)."""
        self.queries[(transport, qtype, rcode)] += 1

    def answer(self, pool: str, pop: str, arm: str = NO_ARM) -> None:
        """One steered answer from ``pool`` that chose ``pop``."""
        self.answers[(pool, pop, arm)] += 1

    def answer_key(self, pool: str, selection: _SelectionLike) -> tuple[str, str, str] | None:
        """The one ``answers`` key that :meth:`on_answer` counts for this selection, or
        None when it counts more (several POPs, a fence): lets the handler keep the key
        with a rendered answer and count it with one dict update."""
        pops = selection.pops
        if selection.fence is not None or len(pops) > 1:
            return None
        return (pool, pops[0] if pops else NO_POP, selection.arm or NO_ARM)

    def on_answer(self, pool: str, selection: _SelectionLike) -> None:
        """One steered answer: count each chosen POP once (NO_POP if none), under the
        answer's experiment arm; answers inside a fence once more per fence."""
        pops = selection.pops
        arm = selection.arm or NO_ARM
        if len(pops) == 1:
            self.answers[(pool, pops[0], arm)] += 1
        elif not pops:
            self.answers[(pool, NO_POP, arm)] += 1
        else:
            for pop in pops:
                self.answers[(pool, pop, arm)] += 1
        fence = selection.fence
        if fence is not None:
            kind = selection.kind
            self.fenced[(fence, pool, kind if kind == "servfail" or kind == "nodata"
                         else "answered")] += 1

    def latency(self, seconds: float) -> None:
        """One timed query (sampled by the handler, 1 in LATENCY_EVERY uncached)."""
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
    def rrl_limited(self, action: str, cls: int) -> None:
        """One response over its RRL limit: ``action`` dropped, slipped or logged."""
        self.rrl[(action, cls)] += 1

    # --- events ----------------------------------------------------------------------

    def set_health(self, target: str, state: str, latency: float | None = None) -> None:
        """Current effective state of a health target (and the last probe's latency)."""
        self.health_states[target] = state
        if latency is not None:
            self.check_latency[target] = latency

    def replace_health(self, states: Mapping[str, str]) -> None:
        """Every target's state at once (after a config reload drops or adds targets)."""
        self.health_states = dict(states)
        self.check_latency = {t: s for t, s in self.check_latency.items() if t in states}

    def health_changed(self, target: str, state: str) -> None:
        """A target's effective state changed to ``state``."""
        self.health_changes[(target, state)] += 1
        self.health_states[target] = state

    def reloaded(self, ok: bool, serials: Mapping[str, int] | None = None) -> None:
        """A reload attempt finished; on success pass the zone serials now served."""
        self.reloads["success" if ok else "failure"] += 1
        self.last_reload_time = self.clock()
        self.last_reload_ok = ok
        if ok and serials is not None:
            self.zone_serials = dict(serials)

    def cache_retired(self, hits: int, misses: int) -> None:
        """Fold in the final counts of an answer cache that is being replaced."""
        self._cache_hits_base += hits
        self._cache_misses_base += misses

    def cache_counts(self) -> tuple[int, int]:
        """Total answer-cache hits and misses since start."""
        hits, misses = self.cache_source() if self.cache_source is not None else (0, 0)
        return self._cache_hits_base + hits, self._cache_misses_base + misses

    # --- reading ---------------------------------------------------------------------

    def answers_by_pop(self) -> dict[str, int]:
        """Cumulative answers per POP, summed over pools (NO_POP excluded)."""
        out: dict[str, int] = defaultdict(int)
        for (_, pop, _), n in list(self.answers.items()):
            if pop != NO_POP:
                out[pop] += n
        return dict(out)

    def tick(self) -> None:
        """Advance the per-minute answer history (cheap; call every few seconds)."""
        self.history.tick(self.answers_by_pop())

    def recent_answers(self, minutes: int) -> dict[str, int]:
        """Answers per POP over the last ``minutes`` minutes."""
        return self.history.window(self.answers_by_pop(), minutes)

    def per_minute(self) -> list[tuple[int, dict[str, int]]]:
        """Per-minute answers per POP, oldest first, current minute last."""
        return self.history.per_minute(self.answers_by_pop())

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4, see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _GeodnsCollector(Collector):
    """Turns the plain counters of one :class:`Metrics` into metric families."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        m = self.m
        q = CounterMetricFamily("geodns_queries", "DNS responses sent, by transport, query "
                                "type and response code.", labels=("transport", "qtype",
                                                                   "rcode"))
        for labels, n in _fold(((t, qtype_label(qt), rcode_label(rc)), n)
                               for (t, qt, rc), n in list(m.queries.items())):
            q.add_metric(labels, n)
        yield q

        a = CounterMetricFamily("geodns_answers", "Steered (DYNA) answers by pool, chosen "
                                f"POP ({NO_POP!r}: NODATA/SERVFAIL, no POP) and experiment "
                                "arm (empty: the pool has no arms).",
                                labels=("pool", "pop", "arm"))
        for (pool, pop, arm), n in sorted(m.answers.items()):
            a.add_metric((pool, pop, arm), n)
        yield a

        fa = CounterMetricFamily("geodns_fenced_answers", "Steered answers to clients inside "
                                 "fences, by fence (\"a+b\": inside both), pool and result "
                                 "(answered; servfail or nodata: no allowed POP could answer, "
                                 "on_empty or all_down).", labels=("fence", "pool", "result"))
        for (fence, pool, result), n in sorted(m.fenced.items()):
            fa.add_metric((fence, pool, result), n)
        yield fa

        up = GaugeMetricFamily("geodns_health_up", "Effective health per target (POP or "
                               "POP/address): 1 up, 0 down or drained.", labels=("target",))
        st = GaugeMetricFamily("geodns_health_state", "Effective health state per target: "
                               "1 for the current state, 0 for the others (every state "
                               "always present, so series never come and go).",
                               labels=("target", "state"))
        for target, state in sorted(m.health_states.items()):
            up.add_metric((target,), 1.0 if state == "up" else 0.0)
            for s in HEALTH_STATES:
                st.add_metric((target, s), 1.0 if state == s else 0.0)
        yield up
        yield st

        lat = GaugeMetricFamily("geodns_health_check_latency_seconds", "Duration of the "
                                "last health probe per target.", labels=("target",))
        for target, sec in sorted(m.check_latency.items()):
            lat.add_metric((target,), sec)
        yield lat

        ch = CounterMetricFamily("geodns_health_state_changes", "Effective health state "
                                 "changes per target, by new state.", labels=("target",
                                                                              "state"))
        for (target, state), n in sorted(m.health_changes.items()):
            ch.add_metric((target, state), n)
        yield ch

        rl = CounterMetricFamily("geodns_reloads", "Reload attempts (zones and config) by "
                                 "result.", labels=("result",))
        for result in ("success", "failure"):
            rl.add_metric((result,), m.reloads[result])
        yield rl

        if m.last_reload_time is not None:
            yield GaugeMetricFamily("geodns_last_reload_timestamp_seconds", "Unix time of "
                                    "the last reload attempt.", value=m.last_reload_time)
            yield GaugeMetricFamily("geodns_last_reload_success", "1 if the last reload "
                                    "attempt succeeded, else 0.",
                                    value=1.0 if m.last_reload_ok else 0.0)

        zs = GaugeMetricFamily("geodns_zone_serial", "SOA serial of each zone served.",
                               labels=("zone",))
        for zone, serial in sorted(m.zone_serials.items()):
            zs.add_metric((zone,), serial)
        yield zs

        hits, misses = m.cache_counts()
        yield CounterMetricFamily("geodns_answer_cache_hits", "Answer cache lookups that "
                                  "hit (hit ratio = hits / (hits + misses)).", value=hits)
        yield CounterMetricFamily("geodns_answer_cache_misses", "Answer cache lookups that "
                                  "missed.", value=misses)

        yield CounterMetricFamily("geodns_querylog_dropped", "Query-log lines dropped "
                                  "(queue full or write error).", value=m.querylog_dropped)
        yield CounterMetricFamily("geodns_querylog_written", "Query-log lines written.",
                                  value=m.querylog_written)
        yield from _xfr_families(m)
        rr = CounterMetricFamily("geodns_rrl_responses", "Responses over their rate limit, "
                                 "by action (dropped; slipped: sent truncated; logged: "
                                 "log_only) and answer class.", labels=("action", "class"))
        for (action, cls), n in sorted(m.rrl.items()):
            rr.add_metric((action, _RRL_CLASSES[cls]), n)
        yield rr
        ck = CounterMetricFamily("geodns_cookies", "Queries with a DNS cookie, by what "
                                 "they carried (client_only, valid, invalid server cookie); "
                                 "badcookie_sent: BADCOOKIE sent instead of a slip.",
                                 labels=("result",))
        for result, n in sorted(m.cookies.items()):
            ck.add_metric((result,), n)
        yield ck
        yield GaugeMetricFamily("geodns_start_time_seconds", "Unix time the metrics (the "
                                "server) started.", value=m.started)
        yield CounterMetricFamily("geodns_dnstap_written", "Queries written to dnstap "
                                  "(AUTH_QUERY + AUTH_RESPONSE each).", value=m.dnstap_written)
        yield CounterMetricFamily("geodns_dnstap_dropped", "Queries not written to dnstap "
                                  "(queue full, write error or no collector).",
                                  value=m.dnstap_dropped)

        info = GaugeMetricFamily("geodns_build_info", "Always 1; the labels say which "
                                 "geodns and Python are running.",
                                 labels=("version", "python"))
        info.add_metric((m.version, platform.python_version()), 1.0)
        yield info

        hist = HistogramMetricFamily(
            "geodns_query_duration_seconds", f"Time to build an answer inside geodns (no "
            f"network), sampled: 1 in {LATENCY_EVERY} queries that miss the packet cache.")
        cumulative = 0
        buckets = []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), m.latency_counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        hist.add_metric((), buckets, m.latency_sum)
        yield hist

        if m.geoip is not None:
            dbtype, path, built = m.geoip
            geo = GaugeMetricFamily("geodns_geoip_build_timestamp_seconds", "Build time of "
                                    "the GeoIP database in use (alert on time() - this).",
                                    labels=("type", "path"))
            geo.add_metric((dbtype, path), built)
            yield geo


def _xfr_families(m: Metrics) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Zone transfer metrics: primary answers, NOTIFYs, secondary zones."""
    out = CounterMetricFamily("geodns_transfers_out", "AXFR/IXFR requests answered as a "
                              "primary, by type and outcome (full, incremental, uptodate, "
                              "refused, notauth, servfail).", labels=("type", "outcome"))
    for (kind, outcome), n in sorted(m.xfr_out.items()):
        out.add_metric((kind, outcome), n)
    yield out
    sent = CounterMetricFamily("geodns_notify_sent", "NOTIFY messages to secondaries by "
                               "result (ok, rejected, error, timeout, superseded).",
                               labels=("result",))
    for result, n in sorted(m.notify_sent.items()):
        sent.add_metric((result,), n)
    yield sent
    serial = GaugeMetricFamily("geodns_secondary_serial", "SOA serial of each secondary "
                               "zone's copy.", labels=("zone",))
    for zone, value in sorted(m.secondary_serial.items()):
        serial.add_metric((zone,), value)
    yield serial
    last = GaugeMetricFamily("geodns_secondary_last_refresh_timestamp_seconds", "Unix time "
                             "of each secondary zone's last successful refresh.",
                             labels=("zone",))
    for zone, when in sorted(m.secondary_refreshed.items()):
        last.add_metric((zone,), when)
    yield last
    failures = CounterMetricFamily("geodns_secondary_refresh_failures", "Refreshes of a "
                                   "secondary zone that reached no primary or got no valid "
                                   "zone.", labels=("zone",))
    for zone, n in sorted(m.secondary_failures.items()):
        failures.add_metric((zone,), n)
    yield failures
    expired = GaugeMetricFamily("geodns_secondary_expired", "1 while a secondary zone is "
                                "past its SOA expire (answered SERVFAIL).", labels=("zone",))
    for zone, flag in sorted(m.secondary_expired.items()):
        expired.add_metric((zone,), 1.0 if flag else 0.0)
    yield expired


def _fold(items: Iterable[tuple[tuple[str, ...], int]]) -> list[tuple[tuple[str, ...], int]]:
    """Sum counts whose labels became equal (1 and "A" are both qtype A)."""
    out: dict[tuple[str, ...], int] = defaultdict(int)
    for labels, n in items:
        out[labels] += n
    return sorted(out.items())
