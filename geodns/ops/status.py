"""``/status`` and ``/traffic/mix`` as typed data: the one schema of what a server reports.

:mod:`geodns.ops.status_build` builds a :class:`Status` (and a :class:`TrafficMix`)
once per request from the live objects; ``GET /status`` is :func:`to_json` of it, the
status page (:mod:`geodns.ops.page`) renders it, and ``geodns simulate --from`` reads
a :class:`TrafficMix` back with :meth:`TrafficMix.from_json`.  Every value is frozen,
so a reader can never change what the server runs on.

JSON field names are the dataclass field names, except where ``metadata`` says
otherwise: ``json`` renames (``from_`` is ``"from"``), ``omit_none`` leaves a key out
while its value is None (the parts a server without a health monitor or steering
does not have), ``flatten`` merges a part's keys into its parent's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from geodns.traffic.mix import MixEntry

__all__ = [
    "AddressStatus",
    "AnswerShare",
    "Answers",
    "CheckStatus",
    "DnstapStatus",
    "FeedStatus",
    "GeoStatus",
    "GuardCounts",
    "HealthChange",
    "HealthStates",
    "LatencyStatus",
    "LoadFigures",
    "LoadStatus",
    "NodeStatus",
    "OverrideStatus",
    "PoolStatus",
    "PopLoadStatus",
    "PopStatus",
    "ProberStatus",
    "ReloadStatus",
    "Room",
    "ServerInfo",
    "SpillStatus",
    "Status",
    "SteeringStatus",
    "TrafficMix",
    "WorkerStatus",
    "ZoneStatus",
    "to_json",
]

_OMIT: Final = MappingProxyType({"omit_none": True})


def _frozen(value: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(value or {}))


def _none() -> Mapping[Any, Any]:
    return MappingProxyType({})


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """Which geodns, where, since when, with which config."""

    version: str
    host: str
    pid: int
    started: float
    uptime_seconds: float
    config: str | None


@dataclass(frozen=True, slots=True)
class ZoneStatus:
    name: str
    serial: int


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """The last reload attempt (the initial load counts, with reason ``start``)."""

    ok: bool
    time: float | None
    problems: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class GeoStatus:
    """The GeoIP database being used, and how old it is."""

    path: str
    type: str
    build_epoch: int
    built: str
    age_days: int
    max_age_days: int
    stale: bool


@dataclass(frozen=True, slots=True)
class DnstapStatus:
    target: str
    sample: float
    written: int
    dropped: int
    pending: int


# --------------------------------------------------------------------------- config + health


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """A pool: strategy, TTLs, the POPs it can answer with, its data-driven options."""

    name: str
    strategy: str
    ttl: int
    ttl_on_failure: int | None = None
    all_down: str = "fail_open"
    pops: tuple[str, ...] = ()
    spill: bool = False
    min_up: int | None = None
    max_share: float | None = None
    map: str | None = None
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class AddressStatus:
    """One address: effective ``state``, what its check said (``real``), ``forced``."""

    address: str
    state: str
    real: str = "up"
    forced: str | None = None


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """A POP's load feed against its capacity (steering only)."""

    load: float | None = None
    utilisation: float | None = None
    load_stale: bool | None = None


@dataclass(frozen=True, slots=True)
class PopStatus:
    """A POP with real, forced and effective state, its addresses and its load."""

    name: str
    state: str
    real: str = "up"
    forced: str | None = None
    capacity: float | None = None
    weight: float = 1.0
    check: str | None = None  # None: no health check, always treated as up
    lat: float | None = None
    lon: float | None = None
    cname: str | None = None
    addresses: tuple[AddressStatus, ...] = ()
    figures: LoadFigures | None = field(default=None,
                                        metadata={"omit_none": True, "flatten": True})


@dataclass(frozen=True, slots=True)
class OverrideStatus:
    """An operator override rule (``until`` as ISO 8601 UTC)."""

    pattern: str
    state: str
    until: str | None = None
    active: bool = True
    source: str = "api"
    force: bool = False


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """One checked target: the check's state, its last result and counts."""

    target: str
    pop: str
    address: str | None
    check: str
    type: str
    probe: str
    state: str
    forced: str | None
    effective: str
    ok: bool | None
    reason: str | None
    latency_ms: float | None
    last_check: float | None
    last_change: float | None
    successes: int
    failures: int
    probes: int
    interval: float
    timeout: float
    fall: int
    rise: int


# --------------------------------------------------------------------------- steering


@dataclass(frozen=True, slots=True)
class PopLoadStatus:
    capacity: float | None
    load: float | None
    utilisation: float | None
    stale: bool | None
    feed: str | None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One load feed: where from, whether its last poll worked, how old its data is."""

    type: str
    source: str
    interval: float
    max_age: float
    ok: bool | None
    problems: tuple[str, ...]
    stale: bool
    age: float | None
    last_success: float | None
    polls: int
    failures: int
    missing: tuple[str, ...]
    pops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Room:
    load: float
    capacity: float


@dataclass(frozen=True, slots=True)
class SpillStatus:
    """Shares each spill pool sheds per POP, where it starts, the room it weighs."""

    shares: Mapping[str, Mapping[str, float]] = field(default_factory=_none)
    spill_at: Mapping[str, float] = field(default_factory=_none)
    room: Mapping[str, Mapping[str, Room]] = field(default_factory=_none)


@dataclass(frozen=True, slots=True)
class LatencyStatus:
    path: str
    prefixes: int
    age_seconds: float | None
    stale: bool | None
    max_age: float | None
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GuardCounts:
    refused: Mapping[str, int] = field(default_factory=_none)
    forced: Mapping[str, int] = field(default_factory=_none)


@dataclass(frozen=True, slots=True)
class SteeringStatus:
    """Loads against capacity, spill shares, latency maps, guard counts."""

    pops: Mapping[str, PopLoadStatus] = field(default_factory=_none)
    feeds: Mapping[str, FeedStatus] = field(default_factory=_none)
    spill: SpillStatus = field(default_factory=SpillStatus)
    latency: Mapping[str, LatencyStatus] = field(default_factory=_none)
    guards: GuardCounts = field(default_factory=GuardCounts)


# --------------------------------------------------------------------------- traffic


@dataclass(frozen=True, slots=True)
class AnswerShare:
    """A POP's answers in the window: count, share, rate, closed minutes oldest first."""

    count: int = 0
    share: float = 0.0
    qps: float = 0.0
    series: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Answers:
    window_minutes: int = 5
    total: int = 0
    pops: Mapping[str, AnswerShare] = field(default_factory=_none)


@dataclass(frozen=True, slots=True)
class HealthChange:
    """One effective state change, with why (a check's result or an override)."""

    time: float
    target: str
    from_: str = field(metadata={"json": "from"})
    to: str
    forced: bool = False
    reason: str | None = None


# --------------------------------------------------------------------------- documents


# --------------------------------------------------------------------------- node


@dataclass(frozen=True, slots=True)
class ProberStatus:
    """The prober process of a node with workers (geodns/workers/prober.py)."""

    pid: int | None
    running: bool


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One DNS worker process, as its supervisor knows it."""

    index: int
    pid: int
    ready: bool
    generation: int  # the state generation it serves
    current: bool  # it serves the supervisor's newest generation
    problems: tuple[str, ...]  # why the last generation did not apply
    restarts: int
    health_generation: int  # the health snapshot it serves
    health_lag_ms: float | None  # how long the last snapshot took to reach it
    queries: int
    cpu_seconds: float
    rss_bytes: int
    uptime_seconds: float | None
    sockets: int


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """``/status``'s ``node``: a supervisor's workers (absent with ``--workers 1``)."""

    generation: int  # the newest state generation the supervisor has sent
    health_generation: int
    prober: ProberStatus
    workers: tuple[WorkerStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class Status:
    """Everything ``GET /status`` answers and the status page shows."""

    server: ServerInfo | None = None
    zones: tuple[ZoneStatus, ...] = ()
    pools: tuple[PoolStatus, ...] = ()
    pops: tuple[PopStatus, ...] = ()
    last_reload: ReloadStatus | None = None
    geoip: GeoStatus | None = None
    dnstap: DnstapStatus | None = None
    overrides: tuple[OverrideStatus, ...] | None = field(default=None, metadata=_OMIT)
    override_errors: tuple[str, ...] | None = field(default=None, metadata=_OMIT)
    checks: Mapping[str, CheckStatus] | None = field(default=None, metadata=_OMIT)
    node: NodeStatus | None = field(default=None, metadata=_OMIT)
    steering: SteeringStatus | None = field(default=None, metadata=_OMIT)
    answers: Answers = field(default_factory=Answers)
    recent_changes: tuple[HealthChange, ...] = ()
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class LoadStatus:
    """A POP's latest load value as the load monitor holds it."""

    load: float
    capacity: float | None
    feed: str
    utilisation: float | None
    stale: bool
    age: float | None


@dataclass(frozen=True, slots=True)
class HealthStates:
    """Checked states and overrides by target (``fra``, ``fra/192.0.2.20``)."""

    real: Mapping[str, str] = field(default_factory=_none)
    overrides: Mapping[str, str] = field(default_factory=_none)


@dataclass(frozen=True, slots=True)
class TrafficMix:
    """``GET /traffic/mix``: the recent answer mix and what selection depended on
    (health, loads, spill shares); what ``geodns simulate --from`` predicts with."""

    time: float = 0.0
    window_seconds: float = 0.0
    every: int = 1
    entries: tuple[MixEntry, ...] = ()
    health: HealthStates = field(default_factory=HealthStates)
    loads: Mapping[str, LoadStatus] = field(default_factory=_none)
    spill: SpillStatus = field(default_factory=SpillStatus)

    @classmethod
    def from_json(cls, doc: object, source: str) -> TrafficMix:
        """Read a mix document back; ValueError names what is wrong with it."""
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise ValueError(f"{source}: not a geodns answer mix (no entries)")
        try:
            entries = tuple(MixEntry(str(e["pool"]), int(e["qtype"]), str(e["client"]),
                                     e.get("prefix"), float(e["qps"]))
                            for e in doc["entries"])
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(f"{source}: bad entry in the answer mix") from None
        health = doc.get("health") or {}
        loads = {}
        for pop, v in (doc.get("loads") or {}).items():
            if isinstance(v, dict) and isinstance(v.get("load"), int | float):
                cap = v.get("capacity")
                loads[pop] = LoadStatus(float(v["load"]), float(cap) if isinstance(
                    cap, int | float) else None, str(v.get("feed", "")),
                    v.get("utilisation"), bool(v.get("stale")), v.get("age"))
        spill = doc.get("spill") or {}
        return cls(
            time=float(doc.get("time") or 0.0),
            window_seconds=float(doc.get("window_seconds") or 0),
            every=int(doc.get("every") or 1), entries=entries,
            health=HealthStates(_frozen(health.get("real")), _frozen(health.get("overrides"))),
            loads=_frozen(loads),
            spill=SpillStatus(
                _frozen({pool: _frozen({p: float(s) for p, s in shares.items()})
                         for pool, shares in (spill.get("shares") or {}).items()}),
                _frozen({pool: float(a) for pool, a in (spill.get("spill_at") or {}).items()}),
                _frozen({pool: _frozen({p: Room(float(v["load"]), float(v["capacity"]))
                                        for p, v in per_pop.items()})
                         for pool, per_pop in (spill.get("room") or {}).items()})))


# --------------------------------------------------------------------------- JSON


def to_json(value: Any) -> Any:
    """Plain JSON-able data (dicts, lists, numbers, strings) for a status value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None and f.metadata.get("omit_none"):
                continue
            if f.metadata.get("flatten"):
                out.update(to_json(item))
                continue
            out[f.metadata.get("json", f.name)] = to_json(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
