"""``geodns latency-map``: raw latency measurements in, a latency map file out.

Input: CSV rows ``client_ip, pop, rtt_ms[, time]`` (beacons, probe results; an optional
header line, ``#`` comments).  Steps:

1. group clients into prefixes (/24 for IPv4, /48 for IPv6 by default);
2. per (prefix, POP): the **median** rtt, kept when it stands on ``min_samples``.
   Median, not mean or trimmed mean: real-user rtts are right-skewed with heavy tails
   (retransmits, busy radios, sleeping phones); the median ignores up to half of the
   samples being outliers, needs no trim fraction to tune, and is what the typical
   client of the prefix sees, which is the figure explain shows;
3. keep prefixes where at least ``min_pops`` POPs qualify (a map row is a comparison:
   beacons that only ever measure the POP a client already uses must not entrench it);
4. merge sibling prefixes (the two halves of the next shorter prefix) while they
   *agree*: the same set of POPs, the same best POP, and every POP's rtt within
   ``max(tolerance_ms, tolerance_pct% of the smaller)``; the merged prefix's rtts are
   the medians of the pooled samples, and it must keep the same best POP.  Only
   measured siblings merge (no claims about unmeasured space), never wider than
   ``widest_v4``/``widest_v6``;
5. write the map atomically and report coverage.
"""

from __future__ import annotations

import argparse
import csv
import io
import ipaddress
import math
import socket
import statistics
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO

from geodns.traffic.latency_map import (
    LatencyMap,
    Measurement,
    format_latency_map,
    write_latency_map,
)

__all__ = [
    "BuildOptions",
    "BuildReport",
    "LatencyBuild",
    "build_latency_map",
    "rtts_agree",
    "run",
]

_RAW_HEADER_FIRST: Final = frozenset({"client_ip", "ip", "client", "address"})
_MAX_RTT_MS: Final = 600_000.0
_SHOWN_PROBLEMS: Final = 50


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """How raw samples become a map (see the module docstring)."""

    v4_prefix: int = 24
    v6_prefix: int = 48
    min_samples: int = 10
    min_pops: int = 2
    tolerance_ms: float = 5.0
    tolerance_pct: float = 10.0
    widest_v4: int = 16
    widest_v6: int = 32
    merge: bool = True


def rtts_agree(a: Mapping[str, float], b: Mapping[str, float], tolerance_ms: float,
               tolerance_pct: float) -> bool:
    """Same POPs, same best POP, every rtt within max(tolerance_ms, pct of the smaller)."""
    if set(a) != set(b) or not a:
        return False
    if _best(a) != _best(b):
        return False
    for pop, x in a.items():
        y = b[pop]
        if abs(x - y) > max(tolerance_ms, tolerance_pct / 100 * min(x, y)):
            return False
    return True


def _best(rtts: Mapping[str, float]) -> str:
    return min(rtts, key=lambda p: (rtts[p], p))


class _Node:
    """One prefix: samples per POP, their medians, and the distinct clients it holds."""

    __slots__ = ("clients", "medians", "samples")

    def __init__(self, samples: dict[str, list[float]], clients: int) -> None:
        self.samples = samples
        self.clients = clients
        self.medians = {pop: statistics.median(xs) for pop, xs in samples.items()}

    def merged(self, other: _Node) -> _Node:
        return _Node({p: self.samples[p] + other.samples[p] for p in self.samples},
                     self.clients + other.clients)


@dataclass(slots=True)
class BuildReport:
    """Coverage figures, printed by the command and kept for tests."""

    source: str = "-"
    lines: int = 0  # data lines read (not comments, blank lines or the header)
    bad_lines: int = 0
    samples: int = 0  # good samples
    clients: int = 0  # distinct client addresses among them
    dropped_min_samples: int = 0  # samples in (prefix, POP) groups below min_samples
    dropped_min_pops: int = 0  # samples in prefixes with fewer than min_pops POPs left
    measured: dict[int, int] = field(default_factory=dict)  # family -> prefixes kept
    final: dict[tuple[int, int], int] = field(default_factory=dict)  # (family, len) -> n
    clients_covered: int = 0
    per_pop: dict[str, dict[str, int]] = field(default_factory=dict)
    first_time: float | None = None
    last_time: float | None = None

    @property
    def samples_used(self) -> int:
        return self.samples - self.dropped_min_samples - self.dropped_min_pops

    def lines_out(self, opts: BuildOptions) -> list[str]:
        """The coverage summary, one line each."""
        pct = 100 * self.clients_covered / self.clients if self.clients else 0.0
        measured = ", ".join(
            f"IPv{fam} /{opts.v4_prefix if fam == 4 else opts.v6_prefix}: {n}"
            for fam, n in sorted(self.measured.items())) or "none"
        final = ", ".join(f"/{plen}: {n}" for (fam, plen), n in sorted(self.final.items())
                          ) or "none"
        out = [
            f"read {self.samples} samples from {self.clients} clients in {self.source}"
            f" ({self.bad_lines} bad line{'' if self.bad_lines == 1 else 's'} skipped)",
            f"used {self.samples_used} samples; dropped {self.dropped_min_samples} in "
            f"(prefix, POP) groups under {opts.min_samples} samples and "
            f"{self.dropped_min_pops} in prefixes with fewer than {opts.min_pops} POPs",
            f"prefixes: {sum(self.measured.values())} measured ({measured}) -> "
            f"{sum(self.final.values())} in the map ({final})",
            f"clients covered: {self.clients_covered} of {self.clients} ({pct:.1f}%)",
        ]
        if self.first_time is not None and self.last_time is not None:
            out.append(f"samples from {_iso(self.first_time)} to {_iso(self.last_time)}")
        if self.per_pop:
            width = max(3, *(len(p) for p in self.per_pop))
            out.append(f"{'POP':<{width}}  {'best for':>8}  {'clients':>7}  {'rows':>5}  "
                       f"{'samples':>7}")
            for pop, c in sorted(self.per_pop.items()):
                out.append(f"{pop:<{width}}  {c['best']:>8}  {c['clients']:>7}  "
                           f"{c['rows']:>5}  {c['samples']:>7}")
        return out


@dataclass(frozen=True, slots=True)
class LatencyBuild:
    """The result of a build: the map, its file text, the problems and the figures."""

    map: LatencyMap | None
    text: str
    problems: tuple[str, ...]
    report: BuildReport


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ip(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address; IPv4-mapped IPv6 as IPv4; None if not one.

    inet_pton, not ipaddress: the C parser is 5x faster on millions of beacon rows,
    and accepts the same strict forms (no leading zeros in IPv4 octets).
    """
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.split("%", 1)[0]), "big")
    except OSError:
        return None
    if value >> 32 == 0xFFFF:
        return 4, value & 0xFFFFFFFF
    return 6, value


def _time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("time needs a zone (e.g. 2026-01-31T12:00:00Z)") from None
        return when.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError("not a Unix time")
    return value


@dataclass(slots=True)
class _Reader:
    """Parses raw rows into per-prefix groups, collecting problems."""

    name: str
    opts: BuildOptions
    pops: Collection[str] | None
    report: BuildReport
    problems: list[str] = field(default_factory=list)
    groups: dict[tuple[int, int], dict[str, list[float]]] = field(default_factory=dict)
    clients: dict[tuple[int, int], set[int]] = field(default_factory=dict)

    def row(self, lineno: int, cells: list[str], first: bool) -> None:
        if len(cells) not in (3, 4):
            self._bad(lineno, f"expected 3 or 4 fields (client_ip,pop,rtt_ms[,time]), got "
                      f"{len(cells)}")
            return
        parsed = _parse_ip(cells[0])
        if parsed is None:
            if first and cells[0].lower() in _RAW_HEADER_FIRST:
                self.report.lines -= 1  # a header, not data
                return
            self._bad(lineno, f"{cells[0]!r} is not an IP address")
            return
        version, value = parsed
        pop = cells[1]
        if not pop:
            self._bad(lineno, "empty POP name")
            return
        if self.pops is not None and pop not in self.pops:
            self._bad(lineno, f"unknown POP {pop!r} (POPs: {', '.join(sorted(self.pops))})")
            return
        try:
            rtt = float(cells[2])
        except ValueError:
            self._bad(lineno, f"rtt_ms {cells[2]!r} is not a number")
            return
        if not math.isfinite(rtt) or not 0 <= rtt <= _MAX_RTT_MS:
            self._bad(lineno, f"rtt_ms {cells[2]!r} must be between 0 and {_MAX_RTT_MS:g}")
            return
        if len(cells) == 4 and cells[3]:
            try:
                ts = _time(cells[3])
            except ValueError as exc:
                self._bad(lineno, f"time {cells[3]!r}: {exc}")
                return
            r = self.report
            r.first_time = ts if r.first_time is None else min(r.first_time, ts)
            r.last_time = ts if r.last_time is None else max(r.last_time, ts)
        plen, bits = (self.opts.v4_prefix, 32) if version == 4 else (self.opts.v6_prefix, 128)
        key = (version, value >> (bits - plen) << (bits - plen))
        self.groups.setdefault(key, {}).setdefault(pop, []).append(rtt)
        self.clients.setdefault(key, set()).add(value)
        self.report.samples += 1

    def _bad(self, lineno: int, problem: str) -> None:
        self.problems.append(f"{self.name}:{lineno}: {problem}")
        self.report.bad_lines += 1


def _read(text: str, name: str, opts: BuildOptions, pops: Collection[str] | None,
          report: BuildReport) -> _Reader:
    reader = _Reader(name, opts, pops, report)
    first = True
    rows = csv.reader(io.StringIO(text))
    for cells_raw in rows:
        cells = [c.strip() for c in cells_raw]
        if not cells or cells == [""] or cells[0].startswith("#"):
            continue
        report.lines += 1
        reader.row(rows.line_num, cells, first)
        first = False
    report.clients = sum(len(c) for c in reader.clients.values())
    return reader


def _merge(level: dict[int, _Node], bits: int, plen: int, widest: int,
           opts: BuildOptions) -> dict[tuple[int, int], _Node]:
    """Merge agreeing siblings level by level; (prefix length, address) -> node."""
    final: dict[tuple[int, int], _Node] = {}
    while level:
        if not opts.merge or plen <= widest:
            final.update(((plen, a), n) for a, n in level.items())
            break
        parents: dict[int, _Node] = {}
        done: set[int] = set()
        bit = 1 << (bits - plen)
        for addr in sorted(level):
            if addr in done:
                continue
            node, sib = level[addr], addr ^ bit
            other = level.get(sib)
            if other is not None and rtts_agree(node.medians, other.medians,
                                                opts.tolerance_ms, opts.tolerance_pct):
                merged = node.merged(other)
                if _best(merged.medians) == _best(node.medians):
                    parents[addr & ~bit] = merged
                    done.update((addr, sib))
                    continue
            final[(plen, addr)] = node
            done.add(addr)
        level, plen = parents, plen - 1
    return final


def build_latency_map(text: str, name: str, opts: BuildOptions | None = None,
                      pops: Collection[str] | None = None) -> LatencyBuild:
    """Raw CSV text in; the map, its file text, every bad line and the figures out."""
    opts = opts or BuildOptions()
    report = BuildReport(source=Path(name).name)
    reader = _read(text, name, opts, pops, report)

    kept: dict[tuple[int, int], _Node] = {}
    for key, by_pop in reader.groups.items():
        good = {p: xs for p, xs in by_pop.items() if len(xs) >= opts.min_samples}
        report.dropped_min_samples += sum(len(xs) for p, xs in by_pop.items() if p not in good)
        if len(good) < opts.min_pops:
            report.dropped_min_pops += sum(len(xs) for xs in good.values())
            continue
        kept[key] = _Node(good, len(reader.clients[key]))
        report.measured[key[0]] = report.measured.get(key[0], 0) + 1

    rows: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, tuple[Measurement, ...]]]
    rows = []
    for family, bits, plen, widest in ((4, 32, opts.v4_prefix, opts.widest_v4),
                                       (6, 128, opts.v6_prefix, opts.widest_v6)):
        level = {addr: n for (fam, addr), n in kept.items() if fam == family}
        final = _merge(level, bits, plen, widest, opts)
        for (length, addr), node in sorted(final.items(), key=lambda t: (t[0][1], t[0][0])):
            net = ipaddress.ip_network((addr, length))
            ms = tuple(sorted((Measurement(p, node.medians[p], len(node.samples[p]))
                               for p in node.samples), key=lambda m: (m.rtt_ms, m.pop)))
            rows.append((net, ms))
            report.final[(family, length)] = report.final.get((family, length), 0) + 1
            report.clients_covered += node.clients
            for i, m in enumerate(ms):
                c = report.per_pop.setdefault(m.pop, {"best": 0, "clients": 0, "rows": 0,
                                                      "samples": 0})
                c["rows"] += 1
                c["samples"] += m.samples
                if i == 0:
                    c["best"] += 1
                    c["clients"] += node.clients
    comments = [
        f"geodns latency map from {report.source}: median rtt per (prefix, POP) over at "
        f"least {opts.min_samples} samples, prefixes with at least {opts.min_pops} POPs",
        f"grouped by /{opts.v4_prefix} (IPv4) and /{opts.v6_prefix} (IPv6)" + (
            f"; siblings merged (up to /{opts.widest_v4} and /{opts.widest_v6}) when they "
            f"have the same POPs, the same best POP and every rtt within "
            f"max({opts.tolerance_ms:g} ms, {opts.tolerance_pct:g}%)" if opts.merge else
            "; not merged"),
    ]
    if report.first_time is not None and report.last_time is not None:
        comments.append(f"samples from {_iso(report.first_time)} to {_iso(report.last_time)}")
    out = format_latency_map(rows, comments) if rows else ""
    lmap = LatencyMap(dict(rows), name) if rows else None
    return LatencyBuild(lmap, out, tuple(reader.problems), report)


def _options(args: argparse.Namespace) -> BuildOptions:
    checks = [
        (0 < args.v4_prefix <= 32, "--v4-prefix must be 1..32"),
        (0 < args.v6_prefix <= 128, "--v6-prefix must be 1..128"),
        (args.min_samples >= 1, "--min-samples must be at least 1"),
        (args.min_pops >= 1, "--min-pops must be at least 1"),
        (args.tolerance_ms >= 0 and args.tolerance_pct >= 0, "tolerances must be >= 0"),
        (0 < args.widest_v4 <= args.v4_prefix, "--widest-v4 must be 1..--v4-prefix"),
        (0 < args.widest_v6 <= args.v6_prefix, "--widest-v6 must be 1..--v6-prefix"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    return BuildOptions(args.v4_prefix, args.v6_prefix, args.min_samples, args.min_pops,
                        args.tolerance_ms, args.tolerance_pct, args.widest_v4,
                        args.widest_v6, not args.no_merge)


def _print_problems(problems: Sequence[str], err: TextIO) -> None:
    for problem in problems[:_SHOWN_PROBLEMS]:
        print(problem, file=err)
    if len(problems) > _SHOWN_PROBLEMS:
        print(f"... and {len(problems) - _SHOWN_PROBLEMS} more bad lines", file=err)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``geodns latency-map`` (its arguments are parsed in :mod:`geodns.cli`): exit 0
    when a map was written, 1 for bad input or nothing to write, 2 for usage."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        opts = _options(args)
    except ValueError as exc:
        print(f"geodns latency-map: {exc}", file=err)
        return 2
    pops: Collection[str] | None = None
    if args.config:
        from geodns.config import ConfigError, load_config

        try:
            pops = frozenset(load_config(args.config).pops)
        except ConfigError as exc:
            _print_problems(exc.problems, err)
            return 1
    try:
        text = Path(args.input).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{args.input}:0: cannot read: {exc}", file=err)
        return 1
    result = build_latency_map(text, args.input, opts, pops)
    _print_problems(result.problems, err)
    if result.problems and not args.skip_bad:
        print(f"geodns latency-map: {len(result.problems)} bad line"
              f"{'' if len(result.problems) == 1 else 's'}: nothing written (fix them, or "
              "--skip-bad)", file=err)
        return 1
    for line in result.report.lines_out(opts):
        print(line, file=out)
    if result.map is None:
        print("geodns latency-map: no prefix has enough samples: nothing written", file=err)
        return 1
    try:
        write_latency_map(args.output, result.text)
    except OSError as exc:
        print(f"{args.output}:0: cannot write: {exc.strerror or exc}", file=err)
        return 1
    print(f"wrote {len(result.map)} prefixes ({sum(len(ms) for _, ms in result.map)} rows) "
          f"to {args.output}", file=out)
    return 0
