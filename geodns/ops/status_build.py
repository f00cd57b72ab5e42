"""Building the typed ``/status`` (:class:`~geodns.ops.status.Status`) and
``/traffic/mix`` (:class:`~geodns.ops.status.TrafficMix`) from the live objects.

The one place that reads the server's parts for reporting: the config, the zones'
serials and the health snapshot being served (:class:`~geodns.ops.serving.ServingView`),
the health monitor's probes and override rules, the steering's loads, spill shares,
latency maps and guard counts, the answer counters, the health change log.  Each part
is read, never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from geodns.config import Config
from geodns.health.override_rules import OverrideRule, format_time
from geodns.health.snapshot import HealthKey, HealthSnapshot, key_label
from geodns.ops.metrics import Metrics, sum_window
from geodns.ops.status import (
    AddressStatus,
    Answers,
    AnswerShare,
    CheckStatus,
    DnstapStatus,
    FeedStatus,
    GeoStatus,
    GuardCounts,
    HealthChange,
    HealthStates,
    LatencyStatus,
    LoadFigures,
    LoadStatus,
    OverrideStatus,
    PoolStatus,
    PopLoadStatus,
    PopStatus,
    ReloadStatus,
    Room,
    ServerInfo,
    SpillStatus,
    Status,
    SteeringStatus,
    TrafficMix,
    ZoneStatus,
)
from geodns.select.spill import SpillState

if TYPE_CHECKING:
    from geodns.health.monitor import ProbeView
    from geodns.health.overrides import Overrides
    from geodns.ops.dnstap import Dnstap
    from geodns.ops.geoip import GeoInfo
    from geodns.ops.serving import ServingView
    from geodns.traffic.feeds import LoadMonitor
    from geodns.traffic.steering import Steering

__all__ = [
    "ANSWER_WINDOW_MINUTES",
    "HealthSource",
    "answers",
    "build_status",
    "check_status",
    "dnstap_status",
    "feed_status",
    "geo_status",
    "load_status",
    "override_status",
    "pool_status",
    "pop_status",
    "probe_status",
    "reload_status",
    "rule_status",
    "spill_status",
    "steering_status",
    "traffic_mix",
    "zone_status",
]

ANSWER_WINDOW_MINUTES = 5  # "share of answers" on /status and the page


class HealthSource(Protocol):
    """What status reads of the health monitor (:class:`geodns.health.monitor.HealthMonitor`)."""

    @property
    def overrides(self) -> Overrides: ...

    @property
    def snapshot(self) -> HealthSnapshot: ...

    def checked(self) -> list[tuple[HealthKey, ProbeView]]: ...


def _hostport(address: str | None, port: int | None) -> str:
    if address is None:
        return "-"
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


# --------------------------------------------------------------------------- config + health


def pop_status(config: Config, health: HealthSnapshot,
               loads: Mapping[str, PopLoadStatus] | None = None) -> tuple[PopStatus, ...]:
    """Every POP (config order) with real, forced and effective state, its addresses,
    and with ``loads`` (steering) its load against capacity."""
    out = []
    for name, pop in config.pops.items():
        addrs = tuple(AddressStatus(address, health.address_state(name, address),
                                    health.real_state((name, address)),
                                    health.forced((name, address)))
                      for address in (*pop.ipv4, *pop.ipv6))
        figures = None
        if loads is not None:
            f = loads.get(name)
            figures = LoadFigures(f.load, f.utilisation, f.stale) if f is not None \
                else LoadFigures()
        out.append(PopStatus(
            name, health.state(name), health.real_state(name), health.forced(name),
            pop.capacity, pop.weight, pop.health, pop.lat, pop.lon, pop.cname, addrs,
            figures))
    return tuple(out)


def pool_status(config: Config) -> tuple[PoolStatus, ...]:
    """Every pool: name, strategy, TTLs, the POPs it can answer with, and its
    data-driven options (spill, guards, latency map)."""
    return tuple(PoolStatus(name, pool.strategy, pool.ttl, pool.ttl_on_failure, pool.all_down,
                            tuple(pool.referenced_pops()), pool.spill, pool.min_up,
                            pool.max_share, str(pool.map) if pool.map is not None else None,
                            pool.fallback)
                 for name, pool in config.pools.items())


def zone_status(serials: Mapping[str, int]) -> tuple[ZoneStatus, ...]:
    """Zones sorted by name with their serials."""
    return tuple(ZoneStatus(z, s) for z, s in sorted(serials.items()))


def reload_status(ok: bool | None, when: float | None, problems: Iterable[str] = (),
                  reason: str | None = None) -> ReloadStatus | None:
    """``last_reload`` (None before the first attempt; the initial load counts, with
    reason ``start``)."""
    if ok is None:
        return None
    return ReloadStatus(ok, when, tuple(problems), reason)


def geo_status(info: GeoInfo | None, now: float) -> GeoStatus | None:
    if info is None:
        return None
    return GeoStatus(info.path, info.type, info.build_epoch, info.built(), info.age_days(now),
                     info.max_age_days, info.stale(now))


def dnstap_status(tap: Dnstap | None) -> DnstapStatus | None:
    if tap is None:
        return None
    return DnstapStatus(tap.target, tap.sample, tap.written, tap.dropped, tap.pending)


def rule_status(rule: OverrideRule, now: float) -> OverrideStatus:
    return OverrideStatus(rule.pattern, rule.state,
                          format_time(rule.until) if rule.until is not None else None,
                          rule.active(now), rule.source, rule.force)


def override_status(overrides: Overrides) -> tuple[tuple[OverrideStatus, ...], tuple[str, ...]]:
    """The rules in force (with activity) and the last rejected file's problems."""
    now = overrides.clock()
    return tuple(rule_status(r, now) for r in overrides.rules), tuple(overrides.errors)


def probe_status(key: HealthKey, probe: ProbeView, snapshot: HealthSnapshot) -> CheckStatus:
    spec, last = probe.spec, probe.last
    return CheckStatus(
        target=key_label(key), pop=key if isinstance(key, str) else key[0],
        address=None if isinstance(key, str) else key[1], check=spec.check.name,
        type=spec.check.type, probe=_hostport(spec.address, spec.port), state=probe.state,
        forced=snapshot.forced(key), effective=snapshot.effective.get(key, "up"),
        ok=last.ok if last is not None else None,
        reason=last.reason if last is not None else None,
        latency_ms=last.latency_ms if last is not None else None,
        last_check=probe.last_check, last_change=probe.last_change,
        successes=probe.successes, failures=probe.failures, probes=probe.runs,
        interval=spec.check.interval, timeout=spec.check.timeout, fall=probe.fall,
        rise=probe.rise)


def check_status(monitor: HealthSource) -> dict[str, CheckStatus]:
    """Every checked target (``fra``, ``fra/192.0.2.20``), sorted, as the monitor's
    latest snapshot sees it."""
    snap = monitor.snapshot
    out = {key_label(key): probe_status(key, probe, snap) for key, probe in monitor.checked()}
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- steering


def feed_status(loads: LoadMonitor) -> dict[str, FeedStatus]:
    """Every load feed: where from, last poll, how old its data is, which POPs."""
    from geodns.traffic.feeds import feed_source

    now = loads.clock()
    out = {}
    for name, s in loads.feeds():
        newest = s.newest()
        out[name] = FeedStatus(
            s.feed.type, feed_source(s.feed), s.feed.interval, s.feed.max_age, s.ok,
            tuple(s.problems), s.stale, None if newest is None else max(0.0, now - newest),
            s.last_success, s.polls, s.failures, tuple(sorted(s.missing)),
            tuple(loads.feed_pops(name)))
    return out


def load_status(loads: LoadMonitor) -> dict[str, LoadStatus]:
    """Every POP's latest load value (sorted by POP)."""
    now = loads.clock()
    return {pop: LoadStatus(smp.value, smp.capacity, smp.feed, smp.utilisation, smp.stale,
                            smp.age(now))
            for pop, smp in sorted(loads.snapshot.samples.items())}


def spill_status(state: SpillState) -> SpillStatus:
    return SpillStatus(state.shares, state.spill_at,
                       {pool: {p: Room(pl.load, pl.capacity) for p, pl in room.items()}
                        for pool, room in state.room.items()})


def steering_status(steering: Steering) -> SteeringStatus:
    """Loads against capacity, spill shares, latency maps, guard counts."""
    now = steering.clock()
    samples = load_status(steering.loads)
    pops = {}
    for name, pop in steering.config.pops.items():
        smp = samples.get(name)
        pops[name] = PopLoadStatus(pop.capacity, smp.load if smp else None,
                                   smp.utilisation if smp else None,
                                   smp.stale if smp else None, pop.load)
    latency = {}
    selector = steering.selector_of()
    for name, book in steering.books.items():
        plan = selector.plans.get(name) if selector is not None else None
        latency[name] = LatencyStatus(
            book.path, len(book.map) if book.map is not None else 0,
            book.map.age(now) if book.map is not None else None,
            plan.latency_stale if plan is not None else None,
            plan.pool.max_age if plan is not None else None, tuple(book.problems))
    return SteeringStatus(pops, feed_status(steering.loads), spill_status(steering.spill.state),
                          latency, GuardCounts(dict(steering.refused), dict(steering.forced)))


def traffic_mix(steering: Steering | None) -> TrafficMix:
    """``GET /traffic/mix``: the recent answer mix, health, loads and spill shares."""
    if steering is None:
        return TrafficMix()
    entries, covered = steering.mix.entries()
    live = steering.health_of()
    return TrafficMix(
        time=steering.clock(), window_seconds=covered, every=steering.mix.every,
        entries=tuple(entries),
        health=HealthStates({key_label(k): s for k, s in live.real.items()},
                            {key_label(k): s for k, s in live.overrides.items()}),
        loads=load_status(steering.loads), spill=spill_status(steering.spill.state))


# --------------------------------------------------------------------------- answers


def answers(metrics: Metrics, pops: Sequence[str], now: float,
            minutes: int = ANSWER_WINDOW_MINUTES) -> Answers:
    """Answer shares per POP over the last ``minutes`` (``pops`` first, then any other
    POP that answered), with a per-minute series of the closed minutes."""
    metrics.tick()
    minutes_seen = metrics.per_minute()  # closed minutes oldest first, then the current
    history = minutes_seen[-max(1, minutes):]
    # Sparklines show closed minutes only: a partial current minute always looks like a
    # drop and would make every line slope down at its right end.
    closed = minutes_seen[:-1][-max(1, minutes):]
    counts = sum_window(minutes_seen, minutes)
    total = sum(counts.values())
    # The rate divides by the time actually covered (a fresh server has no 5 minutes).
    first = history[0][0] if history else now
    covered = max(1.0, now - max(first, metrics.started))
    names = list(pops) + sorted(p for p in counts if p not in pops)
    return Answers(minutes, total, {
        p: AnswerShare(counts.get(p, 0), counts.get(p, 0) / total if total else 0.0,
                       counts.get(p, 0) / covered,
                       tuple(minute.get(p, 0) for _, minute in closed))
        for p in names})


# --------------------------------------------------------------------------- the document


def build_status(view: ServingView, *, metrics: Metrics, now: float,
                 server: ServerInfo | None = None, last_reload: ReloadStatus | None = None,
                 geo: GeoInfo | None = None, dnstap: Dnstap | None = None,
                 monitor: HealthSource | None = None, steering: Steering | None = None,
                 changes: Sequence[HealthChange] = (),
                 minutes: int = ANSWER_WINDOW_MINUTES) -> Status:
    """The whole ``/status``, once, from what is served right now."""
    config = view.config
    steer = steering_status(steering) if steering is not None else None
    pops = pop_status(config, view.health, steer.pops if steer is not None else None)
    rules = errors = checks = None
    if monitor is not None:
        rules, errors = override_status(monitor.overrides)
        checks = check_status(monitor)
    return Status(
        server=server, zones=zone_status(view.serials), pools=pool_status(config), pops=pops,
        last_reload=last_reload, geoip=geo_status(geo, now), dnstap=dnstap_status(dnstap),
        overrides=rules, override_errors=errors, checks=checks, node=view.node,
        steering=steer,
        answers=answers(metrics, [p.name for p in pops], now, minutes),
        recent_changes=tuple(changes)[:50], time=now)
