"""``geodns simulate``: where would traffic go if these POPs failed?

Clients (a CSV of ``ip_or_prefix,weight`` in qps, or a JSON-lines query log) are
run through the very :class:`~geodns.select.selector.Selector` the server uses,
once with everything up ("now") and once with the given POPs forced down or drained
("scenario").  The table shows each POP's share of traffic in both, and flags POPs
the scenario pushes past their configured ``capacity`` (qps).

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
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import dns.rdatatype

from geodns.config import Config, ConfigError, load_config
from geodns.config.discover import DEFAULT_CONFIG, find_config
from geodns.geo import GeoDB
from geodns.health.overrides import OverrideRule, parse_pattern, resolve
from geodns.health.snapshot import HealthKey, HealthSnapshot, State
from geodns.problems import Problems
from geodns.select.selector import Selector
from geodns.select.types import Selection

__all__ = [
    "Client",
    "ClientsError",
    "SimResult",
    "build_parser",
    "main",
    "plot",
    "read_clients",
    "scenario_snapshot",
    "simulate",
]

NO_ANSWER: Final = "(no answer)"


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


def scenario_snapshot(config: Config, down: Sequence[str] = (),
                      drain: Sequence[str] = (),
                      base: Sequence[OverrideRule] = ()) -> HealthSnapshot:
    """A snapshot with ``down``/``drain`` targets (POP, ``POP/*``, ``POP/ADDR``) forced,
    on top of ``base`` rules (e.g. the admin-state file's).

    ValueError when a target is malformed or matches nothing in the config.
    """
    rules: list[OverrideRule] = list(base)
    for state, targets in (("drain", drain), ("down", down)):
        for target in targets:
            pattern = parse_pattern(target)
            rule = OverrideRule(pattern, cast(State, state), None, "simulate")
            if not any(True for _ in rule.matches(config.pops)):
                raise ValueError(f"{target!r} matches no POP or address (POPs: "
                                 f"{', '.join(config.pops) or 'none'})")
            rules.append(rule)
    forced: dict[HealthKey, State] = resolve(rules, config.pops, time.time())
    return HealthSnapshot.build(overrides=forced, generation=1)


@dataclass(slots=True)
class SimResult:
    """Traffic (qps) per POP now and under the scenario, plus capacity verdicts."""

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

    def pops(self) -> list[str]:
        """POPs in config order, then anything else that got traffic (NO_ANSWER last)."""
        names = list(self.capacity)
        extra = sorted((set(self.now) | set(self.scenario)) - set(names) - {NO_ANSWER})
        names += extra
        if self.now.get(NO_ANSWER) or self.scenario.get(NO_ANSWER):
            names.append(NO_ANSWER)
        return names

    def over(self, which: str = "scenario") -> list[str]:
        """POPs whose qps exceed their capacity (``which``: "now" or "scenario")."""
        load = self.scenario if which == "scenario" else self.now
        return [p for p, cap in self.capacity.items()
                if cap is not None and load.get(p, 0.0) > cap]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (``--json``)."""
        return {
            "pools": self.pools, "qtype": self.qtype, "clients": self.clients,
            "total_qps": self.total, "scenario": self.scenario_text,
            "pops": {p: {"capacity": self.capacity.get(p),
                         "now_qps": self.now.get(p, 0.0),
                         "now_share": self.now.get(p, 0.0) / self.total if self.total else 0,
                         "scenario_qps": self.scenario.get(p, 0.0),
                         "scenario_share": (self.scenario.get(p, 0.0) / self.total
                                            if self.total else 0),
                         "over_capacity_now": p in self.over("now"),
                         "over_capacity_scenario": p in self.over("scenario")}
                     for p in self.pops()},
            "skipped": self.skipped,
        }


def _attribute(sel: Selection, weight: float, owner: Mapping[str, str],
               out: dict[str, float]) -> None:
    if sel.kind == "addresses" and sel.addresses:
        share = weight / len(sel.addresses)
        for address in sel.addresses:
            out[owner.get(address, sel.pops[0] if sel.pops else NO_ANSWER)] += share
    elif sel.kind == "cname" and sel.pops:
        out[sel.pops[0]] += weight
    else:
        out[NO_ANSWER] += weight


def simulate(config: Config, selector: Selector, clients: Iterable[Client], *,
             scenario: HealthSnapshot, pool: str | None = None, qtype: int | None = None,
             scale: float = 1.0, scenario_text: str = "") -> SimResult:
    """Run every client through ``selector`` with all-up health and with ``scenario``."""
    owner: dict[str, str] = {}
    for name, pop in config.pops.items():
        for address in (*pop.ipv4, *pop.ipv6):
            owner.setdefault(address, name)
    now_health = HealthSnapshot.all_up()
    now: dict[str, float] = defaultdict(float)
    then: dict[str, float] = defaultdict(float)
    skipped: dict[str, int] = defaultdict(int)
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
        _attribute(selector.select(p, qt, c.address, c.prefix, now_health), weight, owner,
                   now)
        _attribute(selector.select(p, qt, c.address, c.prefix, scenario), weight, owner,
                   then)
        pools.setdefault(p)
        qtypes.setdefault(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qt)))
        total += weight
        count += 1
    return SimResult(
        pools=list(pools), qtype=",".join(qtypes) or "-", clients=count, total=total,
        now=dict(now), scenario=dict(then),
        capacity={name: pop.capacity for name, pop in config.pops.items()},
        scenario_text=scenario_text or "nothing changed", skipped=dict(skipped),
        forced={p: scenario.state(p) for p in config.pops if scenario.state(p) != "up"})


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
        if p in over_then and cap:
            flag = f"OVER CAPACITY ({b / cap:.0%} of {_fmt_qps(cap)} qps)"
            if p not in over_now:
                flag += " <- pushed over by the scenario"
        elif p in over_now and cap:
            flag = f"over capacity now ({a / cap:.0%})"
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
    return "\n".join(lines)


PLOT_DPI: Final = 200  # sharp on slides and high-density screens


def _bar_label(qps: float, cap: float | None) -> str:
    text = f"{qps:,.0f}" if qps >= 10 or qps == 0 else f"{qps:,.1f}"
    if cap:
        text += f"\n{qps / cap:.0%}"
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
    now = [r.now.get(p, 0.0) for p in names]
    then = [r.scenario.get(p, 0.0) for p in names]
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
        for dx, v, over in ((-w / 2, r.now.get(p, 0.0), p in over_now),
                            (w / 2, r.scenario.get(p, 0.0), p in over_then)):
            ax.annotate(_bar_label(v, cap), (x + dx, v),
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
    ax.set_ylabel("queries per second (labels: qps, % of capacity)")
    source = f" from {r.source}" if r.source else ""
    ax.set_title(f"pool {', '.join(r.pools)} ({r.qtype}): {r.scenario_text}\n"
                 f"total {_fmt_qps(r.total)} qps, {r.clients} clients{source}",
                 fontsize=11)
    ax.legend(handles=handles, loc="upper right", frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- CLI


def build_parser(prog: str = "geodns simulate") -> argparse.ArgumentParser:
    """The ``geodns simulate`` argument parser (the lead's CLI can reuse it)."""
    p = argparse.ArgumentParser(prog=prog, description="Predict each POP's share of traffic "
                                "now and with POPs down or drained, using the server's own "
                                "selection code.")
    p.add_argument("--config", help="config file (default: ./geodns.toml when it exists)")
    p.add_argument("--clients", required=True, help="CSV 'ip_or_prefix,weight' (weight in "
                   "qps) or a JSON-lines query log (1 per line, times --scale)")
    p.add_argument("--down", action="extend", nargs="+", default=[], metavar="TARGET",
                   help="POP (or POP/*, POP/ADDRESS) forced down; repeatable")
    p.add_argument("--drain", action="extend", nargs="+", default=[], metavar="TARGET",
                   help="POP (or POP/*, POP/ADDRESS) drained; repeatable")
    p.add_argument("--pool", help="pool to ask (default: the only pool, or each log "
                   "line's pool)")
    p.add_argument("--qtype", help="A or AAAA (default A, or each log line's qtype)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every weight (e.g. turn a log's line count into qps)")
    p.add_argument("--geoip", help="mmdb file (default: the config's [geoip] database)")
    p.add_argument("--plot", metavar="FILE", help="write a PNG bar chart")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv: list[str]) -> int:
    """``geodns simulate ...``: 0 done, 1 bad input, 2 usage (argparse)."""
    args = build_parser().parse_args(argv)
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
        for problem in exc.problems:
            print(problem, file=err)
        return 1
    try:
        clients = read_clients(args.clients)
    except ClientsError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return 1
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
        scenario = scenario_snapshot(config, args.down, args.drain)
    except ValueError as exc:
        print(f"geodns simulate: {exc}", file=err)
        return 1
    try:
        geo = GeoDB.open(args.geoip or config.geoip.database)
    except (OSError, ValueError) as exc:
        print(f"geodns simulate: cannot open GeoIP database: {exc}", file=err)
        return 1
    parts = [f"{t} down" for t in args.down] + [f"{t} drained" for t in args.drain]
    try:
        result = simulate(config, Selector(config, geo), clients, scenario=scenario,
                          pool=pool, qtype=qtype, scale=args.scale,
                          scenario_text=", ".join(parts))
        result.source = str(args.clients)
    finally:
        geo.close()
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
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m geodns.ops.simulate`
    sys.exit(main(sys.argv[1:]))
