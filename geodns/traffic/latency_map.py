"""Latency map files: which POPs are how fast for which client networks.

One CSV row per (prefix, POP)::

    # comments and blank lines are ignored; the header line is optional
    prefix,pop,rtt_ms,samples
    81.2.69.0/24,fra,18.5,240
    81.2.69.0/24,iad,92.0,31
    2001:db8:1::/48,fra,21.0,55

``rtt_ms`` is the round-trip time the map's builder measured (``geodns latency-map``
writes medians), ``samples`` how many measurements it stands on.  Prefixes may
nest; the longest one holding a client decides.  A file is used whole or not at all:
every problem is reported as ``file:line: problem`` and :class:`LatencyMapFile` keeps
the last good map.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import math
import os
import re
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from geodns.problems import Problems
from geodns.watch import WatchedFile

__all__ = [
    "HEADER",
    "LatencyMap",
    "LatencyMapError",
    "LatencyMapFile",
    "Measurement",
    "format_latency_map",
    "load_latency_map",
    "parse_latency_map",
    "write_latency_map",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
HEADER: Final = ("prefix", "pop", "rtt_ms", "samples")
_POP_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
_MAX_RTT_MS: Final = 600_000.0  # ten minutes: anything above is a unit mistake


class LatencyMapError(Problems):
    """The map file is unusable (every ``file:line: problem``)."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One POP's latency for one prefix."""

    pop: str
    rtt_ms: float
    samples: int


@dataclass(frozen=True, slots=True, eq=False)
class LatencyMap:
    """Prefix -> measurements, fastest first (ties by POP name), immutable.

    ``mtime`` is the file's modification time (Unix seconds): the map's age is
    counted from it.
    """

    entries: Mapping[IPNetwork, tuple[Measurement, ...]]
    source: str = "-"
    mtime: float | None = None
    _by_len: dict[tuple[int, int], dict[int, IPNetwork]] = field(init=False, repr=False)
    _lengths: tuple[tuple[int, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frozen = {net: tuple(sorted(ms, key=lambda m: (m.rtt_ms, m.pop)))
                  for net, ms in self.entries.items()}
        object.__setattr__(self, "entries", MappingProxyType(frozen))
        # (version, prefix length) -> network bits -> network: longest match by probing
        # each length present, longest first
        by_len: dict[tuple[int, int], dict[int, IPNetwork]] = {}
        for net in frozen:
            bits = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
            by_len.setdefault((net.version, net.prefixlen), {})[bits] = net
        object.__setattr__(self, "_by_len", by_len)
        object.__setattr__(self, "_lengths", tuple(sorted(by_len, key=lambda k: -k[1])))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[IPNetwork, tuple[Measurement, ...]]]:
        """Every prefix and its measurements, IPv4 first, in address order."""
        for net in sorted(self.entries, key=lambda n: (n.version, n.network_address,
                                                       n.prefixlen)):
            yield net, self.entries[net]

    def pops(self) -> frozenset[str]:
        """Every POP the map mentions."""
        return frozenset(m.pop for ms in self.entries.values() for m in ms)

    def lookup(self, ip: str) -> tuple[IPNetwork, tuple[Measurement, ...]] | None:
        """The longest prefix holding ``ip`` and its measurements (None: not covered)."""
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        value = int(addr)
        for version, plen in self._lengths:
            if version != addr.version:
                continue
            net = self._by_len[(version, plen)].get(value >> (addr.max_prefixlen - plen))
            if net is not None:
                return net, self.entries[net]
        return None

    def age(self, now: float) -> float | None:
        """Seconds since the file was written (None when unknown)."""
        return None if self.mtime is None else max(0.0, now - self.mtime)


def _prefix(text: str) -> tuple[IPNetwork | None, str | None]:
    try:
        return ipaddress.ip_network(text, strict=True), None
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(text, strict=False)
            return None, f"prefix {text!r} has host bits set (did you mean {str(loose)!r}?)"
        return None, f"{text!r} is not a prefix (e.g. 192.0.2.0/24 or 2001:db8::/48)"


def _row(cells: list[str], pops: Collection[str] | None
         ) -> tuple[IPNetwork, Measurement] | str:
    """One data row, or the problem with it."""
    if len(cells) != 4:
        return f"expected 4 fields (prefix,pop,rtt_ms,samples), got {len(cells)}"
    net, problem = _prefix(cells[0])
    if net is None:
        return problem or "bad prefix"
    pop = cells[1]
    if not _POP_RE.match(pop):
        return f"invalid POP name {pop!r}"
    if pops is not None and pop not in pops:
        return f"unknown POP {pop!r} (POPs: {', '.join(sorted(pops))})"
    try:
        rtt = float(cells[2])
    except ValueError:
        return f"rtt_ms {cells[2]!r} is not a number"
    if not math.isfinite(rtt) or not 0 <= rtt <= _MAX_RTT_MS:
        return f"rtt_ms {cells[2]!r} must be between 0 and {_MAX_RTT_MS:g}"
    if not cells[3].isdigit() or int(cells[3]) < 1:
        return f"samples {cells[3]!r} must be a whole number of at least 1"
    return net, Measurement(pop, rtt, int(cells[3]))


def parse_latency_map(text: str, name: str, pops: Collection[str] | None = None,
                      mtime: float | None = None) -> LatencyMap:
    """Parse a map file's text; :class:`LatencyMapError` lists every problem.

    ``pops``: the POPs the config knows; a row naming another is a problem (a typo or
    a retired POP must not silently steer nobody).
    """
    problems: list[str] = []
    entries: dict[IPNetwork, dict[str, Measurement]] = {}
    seen_at: dict[tuple[IPNetwork, str], int] = {}
    first = True
    reader = csv.reader(io.StringIO(text))
    for cells_raw in reader:
        lineno = reader.line_num
        cells = [c.strip() for c in cells_raw]
        if not cells or cells == [""] or cells[0].startswith("#"):
            continue
        if first and tuple(c.lower() for c in cells) == HEADER:
            first = False
            continue
        first = False
        row = _row(cells, pops)
        if isinstance(row, str):
            problems.append(f"{name}:{lineno}: {row}")
            continue
        net, m = row
        prev = seen_at.get((net, m.pop))
        if prev is not None:
            problems.append(f"{name}:{lineno}: duplicate row for {net} {m.pop} "
                            f"(first at line {prev})")
            continue
        seen_at[(net, m.pop)] = lineno
        entries.setdefault(net, {})[m.pop] = m
    if not problems and not entries:
        problems.append(f"{name}:0: no rows (an empty map would send every client to the "
                        "fallback)")
    if problems:
        raise LatencyMapError(problems)
    return LatencyMap({net: tuple(ms.values()) for net, ms in entries.items()}, name, mtime)


def load_latency_map(path: str | Path, pops: Collection[str] | None = None) -> LatencyMap:
    """Read and parse ``path`` (its mtime becomes the map's)."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LatencyMapError([f"{p}:0: no such file"]) from None
    except OSError as exc:
        raise LatencyMapError([f"{p}:0: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise LatencyMapError([f"{p}:{line}: not valid UTF-8"]) from None
    return parse_latency_map(text, str(p), pops, mtime=st.st_mtime)


def _rtt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text or "0"


def format_latency_map(rows: Iterable[tuple[IPNetwork, Iterable[Measurement]]],
                       comments: Iterable[str] = ()) -> str:
    """The file text for ``rows`` (in the order given), with ``# comments`` on top."""
    out = [f"# {c}" if c else "#" for c in comments]
    out.append(",".join(HEADER))
    for net, ms in rows:
        for m in ms:
            out.append(f"{net},{m.pop},{_rtt(m.rtt_ms)},{m.samples}")
    return "\n".join(out) + "\n"


def write_latency_map(path: str | Path, text: str) -> None:
    """Write atomically (temporary file + rename): a reader never sees half a map."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LatencyMapFile:
    """A map file that is re-read when it changes; a bad version changes nothing.

    ``refresh()`` stats the file (cheap) and re-parses only when its identity moved
    (:class:`geodns.watch.WatchedFile`); ``current`` is the last good map and ``problems``
    what was wrong with the newest version (empty when it is the one in use).
    """

    def __init__(self, path: str | Path, pops: Collection[str] | None = None) -> None:
        self.path = Path(path)
        self.pops = pops
        self.current: LatencyMap | None = None
        self.problems: list[str] = []
        self.watched = WatchedFile(self.path)  # the version last parsed, good or bad

    def prime(self, current: LatencyMap) -> None:
        """Start from ``current`` (already read) if the file is still that version."""
        try:
            st = self.watched.stat()
        except OSError:
            return
        if current.mtime == st.st_mtime:
            self.current, self.problems = current, []
            self.watched.accept(st)

    def refresh(self) -> bool:
        """Re-read if changed; True when ``current`` was replaced."""
        try:
            st = self.watched.stat()
        except OSError as exc:
            self.watched.forget()
            self.problems = [f"{self.path}:0: cannot read: {exc.strerror or exc}"]
            return False
        if not self.watched.take(st):
            return False
        try:
            new = load_latency_map(self.path, self.pops)
        except LatencyMapError as exc:
            self.problems = exc.problems
            return False
        self.current, self.problems = new, []
        return True
