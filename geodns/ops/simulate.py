"""``geodns simulate``: where would traffic go if these POPs failed?

Clients (a CSV of ``ip_or_prefix,weight`` in qps, a JSON-lines query log, or a running
server's recent answer mix with ``--from``) are run through the very
:class:`~geodns.select.selector.Selector` the server uses, once with the current
health ("now": everything up, or the server's) and once with the given POPs forced
down or drained ("scenario").  Spill pools shed with the shares the given loads
settle at (``--loads``) or the server's live shares; latency pools read their map;
``asn.NNNN`` rules their database.  The table shows each POP's share of traffic in
both, and flags POPs the scenario pushes past their ``capacity`` and pools whose
guards (``min_up``, ``max_share``) it breaks (:func:`judge`, the verdict the server
gives an override); ``--check`` turns that into exit status 3 for CI of drill plans.

A client's traffic is split evenly over the addresses of its answer (resolvers
rotate RRsets) and attributed to the POPs owning them; a CNAME answer goes wholly
to its POP.  A prefix (``198.51.100.0/24``) is asked as an ECS client subnet, a bare
address as the query's source address, exactly as the server would see them.
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import json
import math
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import dns.rdatatype

from geodns.config import Config, ConfigError, load_config
from geodns.config.discover import DEFAULT_CONFIG, find_config
from geodns.geoip.configured import open_configured
from geodns.geoip.db import GeoDB
from geodns.health.override_rules import OverrideRule, check_matches, make_rule, resolve
from geodns.health.snapshot import STATES, HealthKey, HealthSnapshot, State, parse_key
from geodns.ops.status import TrafficMix
from geodns.problems import Problems
from geodns.select.inputs import Inputs, load_asn, load_books
from geodns.select.selector import Selector
from geodns.select.spill import PopLoad, SpillHolder, SpillState
from geodns.select.types import Selection
from geodns.traffic.guards import (
    Guards,
    GuardVerdict,
    PopFigures,
    check_capacity,
    check_guards,
    combine,
)
from geodns.traffic.spill import steady_shares

__all__ = [
    "Client",
    "ClientsError",
    "LiveState",
    "SimResult",
    "judge",
    "parse_live",
    "plot",
    "read_clients",
    "run",
    "scenario_rules",
    "scenario_snapshot",
    "serving_state",
    "simulate",
]

NO_ANSWER: Final = "(no answer)"
EXIT_BROKEN: Final = 3  # --check: the scenario breaks a guard or a capacity


class ClientsError(Problems):
    """The clients file is unusable."""


@dataclass(frozen=True, slots=True)
class Client:
    """One traffic source: an address (prefix None) or an ECS subnet, with its qps."""

    address: str
    prefix: int | None
    weight: float
    pool: str | None = None  # from a query log line
    qtype: int | None = None  # from a query log line

    @property
    def text(self) -> str:
        return self.address if self.prefix is None else f"{self.address}/{self.prefix}"


def _parse_source(text: str) -> tuple[str, int | None]:
    """``192.0.2.7`` -> (addr, None); ``198.51.100.9/24`` -> (``198.51.100.0``, 24)."""
    text = text.strip()
    if "/" in text:
        net = ipaddress.ip_network(text, strict=False)
        return str(net.network_address), net.prefixlen
    return str(ipaddress.ip_address(text)), None


def read_clients(path: str | Path, text: str | None = None) -> list[Client]:
    """CSV (``ip_or_prefix,weight``, optional header, ``#`` comments) or JSON lines."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientsError([f"{name}:0: cannot read: {exc}"]) from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    clients, problems = (_read_jsonl(name, text) if first.startswith("{")
                         else _read_csv(name, text))
    if problems:
        raise ClientsError(problems)
    if not clients:
        raise ClientsError([f"{name}:0: no clients in the file"])
    return clients


def _read_csv(name: str, text: str) -> tuple[list[Client], list[str]]:
    clients: list[Client] = []
    problems: list[str] = []
    seen_data = False
    header_row = _first_row(text)
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        try:
            addr, prefix = _parse_source(cells[0])
        except ValueError:
            if not seen_data and lineno == header_row:
                continue  # a header such as "ip_or_prefix,weight"
            problems.append(f"{name}:{lineno}: {cells[0]!r} is not an IP address or prefix")
            continue
        seen_data = True
        weight = 1.0
        if len(cells) > 1 and cells[1]:
            try:
                weight = float(cells[1])
            except ValueError:
                problems.append(f"{name}:{lineno}: weight {cells[1]!r} is not a number")
                continue
            if not math.isfinite(weight) or weight < 0:
                problems.append(f"{name}:{lineno}: weight must be a finite number >= 0")
                continue
        if len(cells) > 2 and any(cells[2:]):
            problems.append(f"{name}:{lineno}: expected 'ip_or_prefix,weight', got "
                            f"{len(cells)} columns")
            continue
        clients.append(Client(addr, prefix, weight))
    return clients, problems


def _first_row(text: str) -> int:
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            return lineno
    return 0


def _read_jsonl(name: str, text: str) -> tuple[list[Client], list[str]]:
    clients: list[Client] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            problems.append(f"{name}:{lineno}: not JSON: {exc}")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{name}:{lineno}: expected a JSON object")
            continue
        if not rec.get("pool"):
            continue  # not a steered query: nothing to simulate
        source = rec.get("ecs") or rec.get("client")
        try:
            addr, prefix = _parse_source(str(source))
        except ValueError:
            problems.append(f"{name}:{lineno}: no usable client or ecs ({source!r})")
            continue
        qtype = None
        if rec.get("qtype"):
            try:
                qtype = int(dns.rdatatype.from_text(str(rec["qtype"])))
            except Exception:
                problems.append(f"{name}:{lineno}: unknown qtype {rec['qtype']!r}")
                continue
        clients.append(Client(addr, prefix, 1.0, str(rec["pool"]), qtype))
    return clients, problems


def scenario_rules(config: Config, down: Sequence[str] = (), drain: Sequence[str] = (),
                   now: float | None = None) -> list[OverrideRule]:
    """``--down``/``--drain`` targets (POP, ``POP/*``, ``POP/ADDR``) as override rules,
    in the one override language; OverrideError (a ValueError) when a target is
    malformed or matches nothing in the config."""
    now = time.time() if now is None else now
    rules: list[OverrideRule] = []
    for state, targets in (("drain", drain), ("down", down)):
        for target in targets:
            rule = make_rule(target, state, now=now, source="simulate")
            check_matches(rule, config.pops)
            rules.append(rule)
    return rules


def scenario_snapshot(config: Config, down: Sequence[str] = (),
                      drain: Sequence[str] = (),
                      base: Sequence[OverrideRule] = (),
                      now: HealthSnapshot | None = None) -> HealthSnapshot:
    """A snapshot with ``down``/``drain`` targets forced, on top of ``base`` rules (e.g.
    the admin-state file's) and of ``now`` (a server's checked states and overrides,
    for ``--from``).

    ValueError when a target is malformed or matches nothing in the config.
    """
    at = time.time()
    rules = [*base, *scenario_rules(config, down, drain, at)]
    forced: dict[HealthKey, State] = dict(now.overrides) if now is not None else {}
    forced.update(resolve(rules, config.pops, at))
    return HealthSnapshot.build(real=now.real if now is not None else None,
                                overrides=forced, generation=(now.generation + 1)
                                if now is not None else 1)


def serving_state(config: Config, health: HealthSnapshot, pop: str) -> State:
    """A POP's state for guards: its own, or down when every address of it is."""
    state = health.state(pop)
    if state != "up":
        return state
    p = config.pops[pop]
    addresses = (*p.ipv4, *p.ipv6)
    if addresses and all(health.address_state(pop, a) != "up" for a in addresses):
        return "down"
    return "up"


@dataclass(slots=True)
class SimResult:
    """Traffic (qps) per POP now and under the scenario, plus capacity verdicts.

    ``loads`` (the POPs' current loads, when known) turn qps into capacity units: the
    traffic a scenario moves from one POP to another carries the load per query of the
    POP it leaves (:meth:`usage`; ``flows`` are the qps moving between POPs)."""

    pools: list[str]
    qtype: str
    clients: int
    total: float
    now: dict[str, float]
    scenario: dict[str, float]
    capacity: dict[str, float | None]
    scenario_text: str = "nothing changed"
    skipped: dict[str, int] = field(default_factory=dict)
    forced: dict[str, str] = field(default_factory=dict)  # POP -> down/drain (scenario)
    source: str = ""  # where the clients came from (the chart's title says it)
    pool_now: dict[str, dict[str, float]] = field(default_factory=dict)
    pool_scenario: dict[str, dict[str, float]] = field(default_factory=dict)
    states_now: dict[str, State] = field(default_factory=dict)
    states_scenario: dict[str, State] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)
    flows: dict[tuple[str, str], float] = field(default_factory=dict)  # (now, then) -> qps
    verdict: GuardVerdict | None = None
    # issue 15: fence label -> POP (NO_ANSWER: on_empty/all_down) -> qps, now and then
    fence_now: dict[str, dict[str, float]] = field(default_factory=dict)
    fence_scenario: dict[str, dict[str, float]] = field(default_factory=dict)
    arms: dict[str, dict[str, float]] = field(default_factory=dict)  # pool -> arm -> qps

    def pops(self) -> list[str]:
        """POPs in config order, then anything else that got traffic (NO_ANSWER last)."""
        names = list(self.capacity)
        extra = sorted((set(self.now) | set(self.scenario)) - set(names) - {NO_ANSWER})
        names += extra
        if self.now.get(NO_ANSWER) or self.scenario.get(NO_ANSWER):
            names.append(NO_ANSWER)
        return names

    def load_per_qps(self, pop: str | None = None) -> float | None:
        """Load (capacity units) per answered query per second of ``pop``, else (or
        when it answered nothing now) of every POP whose load is known."""
        if pop is not None and self.now.get(pop, 0.0) > 0 and pop in self.loads:
            return self.loads[pop] / self.now[pop]
        known = [p for p in self.loads if self.now.get(p, 0.0) > 0]
        qps = sum(self.now[p] for p in known)
        return sum(self.loads[p] for p in known) / qps if qps > 0 else None

    def usage(self, pop: str, which: str = "scenario") -> float:
        """What counts against ``pop``'s capacity: its qps; or with loads, its load now,
        and under the scenario that load less what leaves it plus what arrives, each
        at the load per query of the POP the traffic comes from."""
        now, then = self.now.get(pop, 0.0), self.scenario.get(pop, 0.0)
        avg = self.load_per_qps() if self.loads else None
        if avg is None:
            return then if which == "scenario" else now
        mine = self.load_per_qps(pop) or avg
        base = self.loads.get(pop, now * mine)
        if which == "now":
            return base
        moved = 0.0
        for (src, dst), qps in self.flows.items():
            if src == dst:
                continue
            if src == pop:
                moved -= qps * mine
            elif dst == pop:
                moved += qps * (self.load_per_qps(src) or avg)
        return max(0.0, base + moved)

    def over(self, which: str = "scenario") -> list[str]:
        """POPs past their capacity (``which``: "now" or "scenario")."""
        return [p for p, cap in self.capacity.items()
                if cap is not None and self.usage(p, which) > cap]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (``--json``, the dry-run answer)."""
        verdict = self.verdict
        return {
            "pools": self.pools, "qtype": self.qtype, "clients": self.clients,
            "total_qps": self.total, "scenario": self.scenario_text,
            "pops": {p: {"capacity": self.capacity.get(p),
                         "now_qps": self.now.get(p, 0.0),
                         "now_share": self.now.get(p, 0.0) / self.total if self.total else 0,
                         "scenario_qps": self.scenario.get(p, 0.0),
                         "scenario_share": (self.scenario.get(p, 0.0) / self.total
                                            if self.total else 0),
                         "now_state": self.states_now.get(p),
                         "scenario_state": self.states_scenario.get(p),
                         "now_load": self.usage(p, "now") if self.loads else None,
                         "scenario_load": self.usage(p) if self.loads else None,
                         "over_capacity_now": p in self.over("now"),
                         "over_capacity_scenario": p in self.over("scenario")}
                     for p in self.pops()},
            "by_pool": {pool: {p: {"now_qps": self.pool_now.get(pool, {}).get(p, 0.0),
                                   "scenario_qps": self.pool_scenario.get(pool, {}).get(p, 0.0)}
                               for p in sorted(set(self.pool_now.get(pool, {}))
                                               | set(self.pool_scenario.get(pool, {})))}
                        for pool in self.pools},
            "fences": {f: {"now": dict(self.fence_now.get(f, {})),
                           "scenario": dict(self.fence_scenario.get(f, {}))}
                       for f in sorted(set(self.fence_now) | set(self.fence_scenario))},
            "arms": {pool: {arm: {"qps": qps, "share": qps / sum(arms.values())
                                  if sum(arms.values()) else 0.0}
                            for arm, qps in arms.items()}
                     for pool, arms in self.arms.items()},
            "skipped": self.skipped,
            "allowed": verdict.allowed if verdict is not None else True,
            "broken": [v.message for v in verdict.violations] if verdict is not None else [],
            "forced": [v.message for v in verdict.forced] if verdict is not None else [],
            "notes": list(verdict.notes) if verdict is not None else [],
        }


def _attribute(sel: Selection, weight: float, owner: Mapping[str, str],
               out: dict[str, float]) -> dict[str, float]:
    """Add ``weight`` to the POPs of the answer in ``out``; returns this client's part."""
    mine: dict[str, float] = defaultdict(float)
    if sel.kind == "addresses" and sel.addresses:
        share = weight / len(sel.addresses)
        for address in sel.addresses:
            mine[owner.get(address, sel.pops[0] if sel.pops else NO_ANSWER)] += share
    elif sel.kind == "cname" and sel.pops:
        mine[sel.pops[0]] += weight
    else:
        mine[NO_ANSWER] += weight
    for pop, qps in mine.items():
        out[pop] += qps
    return mine


def simulate(config: Config, selector: Selector, clients: Iterable[Client], *,
             scenario: HealthSnapshot, pool: str | None = None, qtype: int | None = None,
             scale: float = 1.0, scenario_text: str = "",
             now: HealthSnapshot | None = None,
             loads: Mapping[str, float] | None = None) -> SimResult:
    """Run every client through ``selector`` with ``now`` (default: all up) and with
    ``scenario``; per POP and per pool.  ``loads``: current POP loads (see SimResult)."""
    owner: dict[str, str] = {}
    for name, pop in config.pops.items():
        for address in (*pop.ipv4, *pop.ipv6):
            owner.setdefault(address, name)
    now_health = now if now is not None else HealthSnapshot.all_up()
    by_pool_now: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_pool_then: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    skipped: dict[str, int] = defaultdict(int)
    flows: dict[tuple[str, str], float] = defaultdict(float)
    fence_now: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    fence_then: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    arms: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pools: dict[str, None] = {}
    qtypes: dict[str, None] = {}
    total = 0.0
    count = 0
    for c in clients:
        p = pool or c.pool
        if p is None:
            raise ValueError("no pool: pass --pool")
        if p not in config.pools:
            skipped[f"unknown pool {p}"] += 1
            continue
        qt = qtype if qtype is not None else (c.qtype if c.qtype is not None else 1)
        weight = c.weight * scale
        sel_now = selector.select(p, qt, c.address, c.prefix, now_health)
        sel_then = selector.select(p, qt, c.address, c.prefix, scenario)
        before = _attribute(sel_now, weight, owner, by_pool_now[p])
        after = _attribute(sel_then, weight, owner, by_pool_then[p])
        if sel_now.fence is not None:  # issue 15: traffic inside each fence
            for where, qps in before.items():
                fence_now[sel_now.fence][where] += qps
        if sel_then.fence is not None:
            for where, qps in after.items():
                fence_then[sel_then.fence][where] += qps
        if sel_now.arm is not None:  # issue 15: experiment arms
            arms[p][sel_now.arm] += weight
        if weight > 0:
            for src, a in before.items():
                for dst, b in after.items():
                    flows[(src, dst)] += a * b / weight
        pools.setdefault(p)
        qtypes.setdefault(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qt)))
        total += weight
        count += 1
    return SimResult(
        pools=list(pools), qtype=",".join(qtypes) or "-", clients=count, total=total,
        now=_sum(by_pool_now), scenario=_sum(by_pool_then),
        capacity={name: pop.capacity for name, pop in config.pops.items()},
        scenario_text=scenario_text or "nothing changed", skipped=dict(skipped),
        forced={p: scenario.state(p) for p in config.pops if scenario.state(p) != "up"},
        pool_now={k: dict(v) for k, v in by_pool_now.items()},
        pool_scenario={k: dict(v) for k, v in by_pool_then.items()},
        states_now={p: serving_state(config, now_health, p) for p in config.pops},
        states_scenario={p: serving_state(config, scenario, p) for p in config.pops},
        loads=dict(loads or {}), flows=dict(flows),
        fence_now={k: dict(v) for k, v in fence_now.items()},
        fence_scenario={k: dict(v) for k, v in fence_then.items()},
        arms={k: dict(v) for k, v in arms.items()})


def _sum(per_pool: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for figures in per_pool.values():
        for pop, qps in figures.items():
            out[pop] += qps
    return dict(out)


def judge(config: Config, r: SimResult, *, force: bool = False,
          guarded_only: bool = False) -> GuardVerdict:
    """The guards of every pool that has some, and POP capacities, under ``r``'s
    scenario: what an override is refused for (``force``: let through, reported as
    forced).  ``guarded_only``: capacities only of the POPs of pools with guards (the
    server's rule: a pool opts in with min_up or max_share); else every POP's."""
    verdicts = []
    guarded: set[str] = set()
    for name, pool in config.pools.items():
        if not Guards.of(pool).active:
            continue
        guarded.update(pool.referenced_pops())
        now = r.pool_now.get(name, {})
        then = r.pool_scenario.get(name, {})
        figures = {p: PopFigures(now.get(p, 0.0), then.get(p, 0.0),
                                 r.states_now.get(p, "up"), r.states_scenario.get(p, "up"))
                   for p in pool.referenced_pops()}
        verdicts.append(check_guards(name, Guards.of(pool), figures, force=force))
    pops = [p for p in r.capacity if not guarded_only or p in guarded]
    verdicts.append(check_capacity({p: r.usage(p, "now") for p in pops},
                                   {p: r.usage(p) for p in pops},
                                   {p: r.capacity[p] for p in pops},
                                   force=force, unit=" load" if r.loads else " qps"))
    verdict = combine(verdicts)
    r.verdict = verdict
    return verdict


@dataclass(slots=True)
class LiveState:
    """What a running server told ``simulate --from``: its recent answer mix, health,
    loads and spill shares."""

    clients: list[Client]
    health: HealthSnapshot
    loads: dict[str, float]
    spill: SpillState
    window: float
    source: str


def live_state(mix: TrafficMix, source: str) -> LiveState:
    """What ``--from`` predicts with, from a server's typed answer mix."""
    clients = [Client(e.client, e.prefix, e.qps, e.pool, e.qtype) for e in mix.entries]

    def states(raw: Mapping[str, str]) -> dict[HealthKey, State]:
        return {parse_key(k): cast(State, v) for k, v in raw.items() if v in STATES}

    snap = HealthSnapshot.build(real=states(mix.health.real),
                                overrides=states(mix.health.overrides), generation=1)
    loads = {p: v.load for p, v in mix.loads.items() if not v.stale}
    caps = {p: v.capacity for p, v in mix.loads.items() if v.capacity is not None}
    room = {pool: {p: PopLoad(r.load, r.capacity) for p, r in per_pop.items()}
            for pool, per_pop in mix.spill.room.items()}
    spill = SpillState(1, mix.spill.shares,
                       {p: PopLoad(v, caps[p]) for p, v in loads.items() if p in caps},
                       mix.spill.spill_at, room)
    return LiveState(clients, snap, loads, spill, mix.window_seconds, source)


def parse_live(doc: Any, source: str) -> LiveState:
    """The ``GET /traffic/mix`` document; ValueError when it is not one."""
    return live_state(TrafficMix.from_json(doc, source), source)


def fetch_live(base: str, token: str | None = None, timeout: float = 10.0) -> LiveState:
    """GET ``base``/traffic/mix (a server's control API); ValueError explains failures."""
    url = base.rstrip("/") + "/traffic/mix"
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{url}: HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ValueError(f"{url}: {exc}") from None
    return parse_live(doc, url)


# --------------------------------------------------------------------------- output


def _fmt_qps(v: float) -> str:
    return f"{v:,.1f}" if v < 1e6 else f"{v:,.0f}"


def render_table(r: SimResult) -> str:
    """The human report printed by ``geodns simulate``."""
    lines = [
        f"pool {', '.join(r.pools) or '-'}, qtype {r.qtype}: {r.clients} clients, "
        f"{_fmt_qps(r.total)} qps",
        f"scenario: {r.scenario_text}",
        "",
    ]
    head = ("POP", "capacity", "now qps", "now %", "scenario qps", "scenario %", "change", "")
    rows: list[tuple[str, ...]] = [head]
    over_now, over_then = set(r.over("now")), set(r.over("scenario"))
    for p in r.pops():
        a, b = r.now.get(p, 0.0), r.scenario.get(p, 0.0)
        cap = r.capacity.get(p)
        flag = ""
        unit = "qps" if not r.loads else "load"
        if p in over_then and cap:
            flag = f"OVER CAPACITY ({r.usage(p) / cap:.0%} of {_fmt_qps(cap)} {unit})"
            if p not in over_now:
                flag += " <- pushed over by the scenario"
        elif p in over_now and cap:
            flag = f"over capacity now ({r.usage(p, 'now') / cap:.0%})"
        elif cap and r.loads:
            flag = f"load {r.usage(p, 'now') / cap:.0%} -> {r.usage(p) / cap:.0%} of capacity"
        rows.append((
            p, "-" if cap is None else _fmt_qps(cap), _fmt_qps(a),
            f"{a / r.total:.1%}" if r.total else "-", _fmt_qps(b),
            f"{b / r.total:.1%}" if r.total else "-",
            f"{b - a:+,.1f}" if a != b else "=", flag))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i])
                                             for i in range(1, len(head) - 1)]
        lines.append("  ".join(cells) + ("  " + row[-1] if row[-1] else ""))
    lines += _fence_lines(r) + _arm_lines(r)
    if r.skipped:
        lines.append("")
        lines += [f"skipped {n} client(s): {why}" for why, n in sorted(r.skipped.items())]
    pushed = sorted(over_then - over_now)
    lines.append("")
    if pushed:
        lines.append(f"WARNING: the scenario pushes {', '.join(pushed)} past capacity")
    elif over_then:
        lines.append(f"WARNING: over capacity under the scenario: {', '.join(sorted(over_then))}")
    else:
        lines.append("every POP with a capacity stays within it under the scenario")
    v = r.verdict
    if v is not None:
        broken = [x.message for x in v.violations if x.guard != "capacity"]
        lines += [f"GUARD BROKEN: {m}" for m in broken]
        lines += [f"note: {n}" for n in v.notes if not n.startswith("capacity")]
        if not broken:
            lines.append("no guard (min_up, max_share) is broken by the scenario")
    return "\n".join(lines)


def _split_text(figures: Mapping[str, float]) -> str:
    total = sum(figures.values())
    if not total:
        return "nothing"
    return ", ".join(f"{pop} {qps / total:.1%}" for pop, qps in
                     sorted(figures.items(), key=lambda kv: (-kv[1], kv[0])))


def _fence_lines(r: SimResult) -> list[str]:
    """Traffic of clients inside each fence: where it goes now and under the scenario
    (``none``: answered SERVFAIL/NODATA, no allowed POP)."""
    out = []
    for f in sorted(set(r.fence_now) | set(r.fence_scenario)):
        now, then = r.fence_now.get(f, {}), r.fence_scenario.get(f, {})
        out.append(f"fence {f}: {_fmt_qps(sum(now.values()))} qps; now {_split_text(now)}; "
                   f"scenario {_split_text(then)}")
    return ["", *out] if out else []


def _arm_lines(r: SimResult) -> list[str]:
    """Each experiment's arms: their share of the pool's traffic."""
    out = []
    for pool, arms in sorted(r.arms.items()):
        total = sum(arms.values())
        split = ", ".join(f"{arm} {qps / total:.1%} ({_fmt_qps(qps)} qps)"
                          for arm, qps in arms.items()) if total else "nothing"
        out.append(f"pool {pool} arms: {split}")
    return ["", *out] if out else []


PLOT_DPI: Final = 200  # sharp on slides and high-density screens


def _bar_label(qps: float, cap: float | None, usage: float | None = None) -> str:
    """``qps`` and, with a capacity, the % of it used (``usage``: in load units)."""
    text = f"{qps:,.0f}" if qps >= 10 or qps == 0 else f"{qps:,.1f}"
    if cap:
        text += f"\n{(qps if usage is None else usage) / cap:.0%}"
    return text


def plot(r: SimResult, path: str | Path) -> None:
    """Write :func:`figure` as a PNG at :data:`PLOT_DPI`."""
    import matplotlib.pyplot as plt

    fig = figure(r)
    fig.savefig(str(path), format="png", dpi=PLOT_DPI)
    plt.close(fig)


def figure(r: SimResult) -> Any:
    """The bar chart: qps per POP now and under the scenario, each bar labelled with its
    qps and % of capacity; over-capacity bars (now or scenario) are red.  ImportError
    (with the install hint) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("--plot needs matplotlib, an optional extra: "
                          "pip install 'geodns[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = r.pops()
    xs = list(range(len(names)))
    # bars are qps, or with loads what counts against capacity (labels still say qps)
    now = [r.usage(p, "now") if r.loads else r.now.get(p, 0.0) for p in names]
    then = [r.usage(p) if r.loads else r.scenario.get(p, 0.0) for p in names]
    over_now, over_then = set(r.over("now")), set(r.over("scenario"))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(names) + 2), 5.0))
    w = 0.38
    ax.bar([x - w / 2 for x in xs], now, w,
           color=["#f0b6ba" if p in over_now else "#8c959f" for p in names],
           edgecolor=["#cf222e" if p in over_now else "none" for p in names],
           hatch=None, linewidth=1.5)
    ax.bar([x + w / 2 for x in xs], then, w,
           color=["#cf222e" if p in over_then else "#0969da" for p in names])
    top = max([*now, *then, *(c for c in r.capacity.values() if c)], default=1.0) or 1.0
    labelled = False
    for x, p in zip(xs, names, strict=True):
        cap = r.capacity.get(p)
        if cap is not None:
            ax.hlines(cap, x - 0.45, x + 0.45, colors="#1f2328", linestyles="--",
                      linewidth=1.5, label="capacity" if not labelled else "_nolegend_")
            labelled = True
        for dx, v, use, over in (
                (-w / 2, r.now.get(p, 0.0), r.usage(p, "now"), p in over_now),
                (w / 2, r.scenario.get(p, 0.0), r.usage(p), p in over_then)):
            ax.annotate(_bar_label(v, cap, use if r.loads else None),
                        (x + dx, use if r.loads else v),
                        ha="center", va="bottom", fontsize=7.5,
                        color="#cf222e" if over else "#1f2328",
                        fontweight="bold" if over else "normal")
    ax.set_ylim(0, top * 1.3)
    handles: list[Any] = [Patch(color="#8c959f", label="now"),
                          Patch(color="#0969da", label="scenario")]
    if over_now:
        handles.append(Patch(facecolor="#f0b6ba", edgecolor="#cf222e",
                             label="now: over capacity"))
    if over_then:
        handles.append(Patch(color="#cf222e", label="scenario: over capacity"))
    caps, _ = ax.get_legend_handles_labels()
    handles += caps
    ax.set_xticks(xs, [f"{p}\n({r.forced[p]})" if p in r.forced else p for p in names])
    ax.set_ylabel("load, in capacity units (labels: qps, % of capacity)" if r.loads
                  else "queries per second (labels: qps, % of capacity)")
    source = f" from {r.source}" if r.source else ""
    ax.set_title(f"pool {', '.join(r.pools)} ({r.qtype}): {r.scenario_text}\n"
                 f"total {_fmt_qps(r.total)} qps, {r.clients} clients{source}",
                 fontsize=11)
    ax.legend(handles=handles, loc="upper right", frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- CLI


def read_loads(path: str | None, pairs: Sequence[str], config: Config) -> dict[str, float]:
    """``--loads FILE`` and ``--load POP=LOAD``; ValueError names the problem."""
    from geodns.traffic.feed_parse import FeedError, parse_csv_loads, parse_json_loads

    out: dict[str, float] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}:0: cannot read: {exc}") from None
        parse = parse_csv_loads if path.lower().endswith(".csv") else parse_json_loads
        try:
            data = parse(text, path)
        except FeedError as exc:
            raise ValueError("\n".join(exc.problems)) from None
        keys = {pop.feed_key: name for name, pop in config.pops.items()}
        for key, value in data.values.items():
            out[keys.get(key, key)] = value
    for pair in pairs:
        pop, sep, text = pair.partition("=")
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not sep or not math.isfinite(number) or number < 0:
            raise ValueError(f"--load {pair!r}: expected POP=LOAD, e.g. fra=950")
        out[pop] = number
    unknown = sorted(set(out) - set(config.pops))
    if unknown:
        raise ValueError(f"loads for unknown POPs: {', '.join(unknown)} "
                         f"(POPs: {', '.join(config.pops)})")
    return out


def _fail(err: Any, lines: Iterable[str], code: int = 1) -> int:
    for line in lines:
        print(line, file=err)
    return code


def run(args: argparse.Namespace) -> int:
    """``geodns simulate ...`` (its arguments are parsed in :mod:`geodns.cli`): 0 done,
    1 bad input, 2 usage, 3 (``--check``) the scenario breaks a capacity or a guard."""
    err = sys.stderr
    choice = find_config(args.config)
    if choice.path is None:
        print("geodns simulate: needs a config with pools: --config FILE (or run it where "
              f"./{DEFAULT_CONFIG} is)", file=err)
        return 2
    args.config = choice.path
    print(choice.describe(), file=err)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(err, exc.problems)
    live: LiveState | None = None
    clients: list[Client] = []
    try:
        if args.from_url:
            live = fetch_live(args.from_url, args.token)
            clients = live.clients
        if args.clients:
            clients = read_clients(args.clients)
        elif not clients:
            return _fail(err, [f"geodns simulate: {args.from_url}: no steered answers in "
                               "the last minutes (nothing to predict)"])
    except ClientsError as exc:
        return _fail(err, exc.problems)
    except ValueError as exc:
        return _fail(err, [f"geodns simulate: {exc}"])
    if not config.pools:
        print(f"geodns simulate: {args.config} defines no pools", file=err)
        return 1
    pool = args.pool
    if pool is not None and pool not in config.pools:
        print(f"geodns simulate: unknown pool {pool!r} (pools: {', '.join(config.pools)})",
              file=err)
        return 1
    if pool is None and any(c.pool is None for c in clients):
        if len(config.pools) != 1:
            print(f"geodns simulate: several pools ({', '.join(config.pools)}); choose one "
                  "with --pool", file=err)
            return 1
        pool = next(iter(config.pools))
    qtype: int | None = None
    if args.qtype is not None:
        try:
            qtype = int(dns.rdatatype.from_text(args.qtype.upper()))
        except Exception:
            print(f"geodns simulate: unknown qtype {args.qtype!r}", file=err)
            return 1
    if not math.isfinite(args.scale) or args.scale <= 0:
        print("geodns simulate: --scale must be a positive number", file=err)
        return 1
    try:
        loads = read_loads(args.loads, args.load, config)
        scenario = scenario_snapshot(config, args.down, args.drain,
                                     now=live.health if live is not None else None)
    except ValueError as exc:
        return _fail(err, [f"geodns simulate: {exc}"])
    if live is not None:
        spill = live.spill
        loads = {**live.loads, **loads}
    else:
        spill = steady_shares(config, loads)
    try:
        inputs = Inputs(load_asn(config), load_books(config), SpillHolder(spill))
    except Problems as exc:
        return _fail(err, exc.problems)
    try:
        geo = GeoDB.open(args.geoip) if args.geoip else open_configured(config)
    except ConfigError as exc:
        return _fail(err, exc.problems)
    except Exception as exc:  # maxminddb raises InvalidDatabaseError, OSError, ValueError
        print(f"geodns simulate: cannot open GeoIP database {args.geoip}: {exc}", file=err)
        return 1
    parts = [f"{t} down" for t in args.down] + [f"{t} drained" for t in args.drain]
    try:
        result = simulate(config, Selector(config, geo, inputs=inputs), clients,
                          scenario=scenario, pool=pool, qtype=qtype, scale=args.scale,
                          scenario_text=", ".join(parts),
                          now=live.health if live is not None else None, loads=loads)
        result.source = str(args.clients) if args.clients else live.source \
            if live is not None else "-"
    finally:
        geo.close()
    verdict = judge(config, result)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render_table(result))
    if args.plot:
        try:
            plot(result, args.plot)
        except ImportError:
            print("geodns simulate: --plot needs matplotlib, an optional extra: "
                  "pip install 'geodns[plot]'", file=err)
            return 1
        except OSError as exc:
            print(f"geodns simulate: cannot write {args.plot}: {exc}", file=err)
            return 1
        if not args.json:
            print(f"chart written to {args.plot}")
    if args.check and not verdict.allowed:
        for v in verdict.violations:
            print(f"geodns simulate: broken: {v.message}", file=err)
        return EXIT_BROKEN
    return 0

