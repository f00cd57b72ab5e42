"""What ``geodns check`` (and the server's log) says about fences and arms that leave
clients no POP at all.

Found in the compiled maps, so exactly for the GeoIP (and ASN) data in use:

* a pool rule whose POPs none of a fence allows, for clients the fence covers (they
  are answered the fence's ``on_empty``);
* fences that overlap (some client is inside both) and allow no POP in common, for a
  pool they both cover;
* an experiment arm whose POPs leave some rule's clients nothing (NODATA).

Each is located at the rule (or fence) that causes it: ``FILE:LINE: key.path: ...``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from geodns.config import Config, KeyPath, TomlLocator, format_path
from geodns.select.addr import format_addr, format_net
from geodns.select.fences import cut_entry
from geodns.select.maps import Alias, FenceTag, Hashed, Ranking, RankingMap

if TYPE_CHECKING:
    from geodns.select.plan import Plan
    from geodns.select.selector import Selector

__all__ = ["Contradiction", "EmptyCut", "check_fences", "contradictions", "empty_cuts",
           "fence_problems"]


@dataclass(frozen=True, slots=True)
class EmptyCut:
    """Clients of ``pool`` ranked by ``rule`` whom a fence (or an arm) leaves no POP."""

    pool: str
    rule: str
    pops: tuple[str, ...] | None  # the rule's POPs (None: unknown, IPv4 inside IPv6)
    fence: FenceTag | None
    arm: str | None
    example: str  # a network of such clients
    path: KeyPath

    def message(self, where: str | None) -> str:
        head = f"{where}: {format_path(self.path)}: " if where else f"pool {self.pool}: "
        rule = f"{self.rule} ({', '.join(self.pops)})" if self.pops else self.rule
        if self.arm is None and self.fence is not None:
            return (f"{head}fence {self.fence.label} leaves clients of {rule} no POP (it "
                    f"allows {', '.join(sorted(self.fence.pops)) or 'none'}), e.g. "
                    f"{self.example}: they are answered {self.fence.on_empty.upper()}")
        inside = f" inside fence {self.fence.label}" if self.fence is not None else ""
        return (f"{head}arm {self.arm} leaves clients of {rule}{inside} no POP, e.g. "
                f"{self.example}: they are answered NODATA")


@dataclass(frozen=True, slots=True)
class Contradiction:
    """Fences that overlap and allow no POP in common, for pools they all cover."""

    names: tuple[str, ...]
    pools: tuple[str, ...]
    example: str

    def message(self, config: Config, locate: Any = None) -> str:
        fences = config.fences
        last = self.names[-1]
        where = locate(("fences", last, "pops")) if locate is not None else None
        head = f"{where}: fences.{last}.pops: " if where else f"fence {last}: "
        others = ", ".join(
            f"{n} ({locate(('fences', n)) if locate is not None else 'fences.' + n})"
            for n in self.names[:-1])
        allowed = "; ".join(f"{n}: {', '.join(fences[n].pops)}" for n in self.names)
        return (f"{head}contradicts fence{'s' if len(self.names) > 2 else ''} {others}: "
                f"some clients are inside all of them (e.g. {self.example}) and they allow "
                f"no POP in common ({allowed}); pool{'s' if len(self.pools) > 1 else ''} "
                f"{', '.join(self.pools)} can never answer them")


def _first(rmap: RankingMap, rid: int) -> str:
    i = int(np.flatnonzero(rmap.rids == rid)[0])
    bits = rmap.bits
    start = rmap.starts(np.array([i]))[0]
    end = rmap.starts(np.array([i + 1]))[0] if i + 1 < len(rmap) else 1 << bits
    fam = rmap.family
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        return format_net(fam, start, bits - size.bit_length() + 1)
    return f"{format_addr(fam, start)}-{format_addr(fam, end - 1)}"


def _rule_path(plan: Plan, rule: str, raw: Mapping[str, Any]) -> KeyPath:
    """The config key of a ranking rule (rules name their key, e.g. ``country.GB``)."""
    base: KeyPath = ("pools", plan.name)
    kind, _, key = rule.partition(".")
    key = key.strip('"')
    table = raw.get(kind) if isinstance(raw.get(kind), dict) else None
    if kind in ("country", "continent", "subdivision", "nets", "asn") and table is not None:
        for written in table:
            norm = written.upper().removeprefix("AS") if kind == "asn" else written.upper()
            if norm == key.upper():
                return (*base, kind, written)
        return (*base, kind)
    if rule in ("default", "no location: default list") and "default" in raw:
        return (*base, "default")
    return (*base, "pops") if "pops" in raw else base


def _scan(plan: Plan, maps: Mapping[int, RankingMap], raw: Mapping[str, Any],
          arm: str | None) -> Iterator[EmptyCut]:
    seen: set[tuple[str, object]] = set()
    for key, rmap in maps.items():
        used = np.bincount(rmap.rids, minlength=len(rmap.entries)) > 0
        open_map = plan.open_maps.get(key if key in plan.open_maps else 4) \
            if key in (4, 6, -4) and plan.open_maps else None
        for rid, entry in enumerate(rmap.entries):
            if not used[rid] or isinstance(entry, Alias):
                continue
            pops = entry.pops if isinstance(entry, Ranking) else \
                tuple(w[0] for w in entry.weighted) if entry.weighted is not None else \
                plan.pool.pops
            tag = entry.fence
            if pops:
                continue
            if arm is None:
                if tag is None or not tag.emptied:
                    continue
                if len(tag.names) > 1 and not tag.pops:
                    continue  # contradicting fences: reported at the fences
            elif tag is not None and tag.emptied:
                continue  # the fence's doing: reported for the pool itself
            rule = entry.rule
            if (rule, tag) in seen:
                continue
            seen.add((rule, tag))
            example = _first(rmap, rid)
            before: tuple[str, ...] | None = None
            if open_map is not None and not isinstance(entry, Hashed):
                i = int(np.flatnonzero(rmap.rids == rid)[0])
                found = open_map.entry_at(rmap.starts(np.array([i]))[0])
                before = found.pops if isinstance(found, Ranking) else None
            yield EmptyCut(plan.name, rule, before, tag, arm,
                           example, _rule_path(plan, rule, raw))


def empty_cuts(selector: Selector, raw_pools: Mapping[str, Any] | None = None
               ) -> Iterator[EmptyCut]:
    """Every (pool, rule, fence) whose clients get no POP (and arms that do that)."""
    for plan in selector.plans.values():
        raw = (raw_pools or {}).get(plan.name) or {}
        if plan.fences is not None:
            yield from _scan(plan, plan.base_served, raw, None)
        for view in getattr(plan, "arm_views", ()):
            allowed = view.allowed
            if allowed is not None:
                weighted = plan.weighted
                cut = {k: m.relabel(lambda e, a=allowed, w=weighted: cut_entry(e, a, None, w))
                       for k, m in view.base_served.items()}
                yield from _scan(view, cut, raw, view.label)


def contradictions(selector: Selector) -> Iterator[Contradiction]:
    """Overlapping fences without a POP in common, for a pool they all cover."""
    index = selector.fence_index
    if index is None:
        return
    fences = selector.config.fences
    seen: set[tuple[str, ...]] = set()
    for family, names, start, end in index.used():
        if len(names) < 2:
            continue
        ordered = tuple(sorted(names, key=index.order.__getitem__))
        if ordered in seen:
            continue
        seen.add(ordered)
        if frozenset.intersection(*(frozenset(fences[n].pops) for n in ordered)):
            continue
        pools = tuple(p for p in selector.plans
                      if all(fences[n].applies_to(p) for n in ordered))
        if not pools:
            continue
        size = end - start
        bits = 32 if family == 4 else 128
        example = format_net(family, start, bits - size.bit_length() + 1) \
            if size & (size - 1) == 0 and start % size == 0 else \
            f"{format_addr(family, start)}-{format_addr(family, end - 1)}"
        yield Contradiction(ordered, pools, example)


def check_fences(config: Config, selector: Selector) -> list[str]:
    """``geodns check``: every empty cut and contradiction, as ``FILE:LINE: ...``."""
    if not config.fences and not any(p.arms for p in config.pools.values()):
        return []
    source = str(config.source) if config.source is not None else "<config>"
    try:
        text = config.source.read_text() if config.source is not None else ""
        raw = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError):
        text, raw = "", {}
    locator = TomlLocator(text)

    def locate(path: KeyPath) -> str:
        return f"{source}:{locator.line(path)}"

    out = [c.message(config, locate) for c in contradictions(selector)]
    pools = raw.get("pools") if isinstance(raw.get("pools"), dict) else {}
    out += [cut.message(locate(cut.path)) for cut in empty_cuts(selector, pools)]
    return out


def fence_problems(config: Config) -> list[str]:
    """``geodns check``: compile the pools against the configured GeoIP (and ASN)
    databases and report what :func:`check_fences` finds; nothing without fences or
    arms (no compiling then)."""
    if not config.fences and not any(p.arms for p in config.pools.values()):
        return []
    from geodns.geoip.configured import open_configured
    from geodns.problems import Problems
    from geodns.select.inputs import load_inputs
    from geodns.select.selector import Selector

    try:
        inputs = load_inputs(config)
        geo = open_configured(config)  # ConfigError (a Problems) when it cannot be opened
    except (Problems, OSError, ValueError):
        return []  # reported by the GeoIP, ASN and latency map checks
    try:
        return check_fences(config, Selector(config, geo, inputs=inputs, warn=False))
    finally:
        geo.close()
