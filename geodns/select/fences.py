"""Fences compiled into the steering maps.

A :class:`FenceIndex` says, for every address, which fences cover it: one interval
map per family whose entries are sets of fence names, built like a pool's map from
the GeoIP networks (places), the ASN networks and the fences' ``nets``, and united
(a client is inside a fence when any of its selectors matches).  IPv6 blocks that
are the IPv4 space (``::ffff:0:0/96``, 6to4, ...) are :class:`AliasSpot` entries:
their clients are fenced by their IPv4 address (place, AS and IPv4 ``nets``), plus
the fences whose IPv6 ``nets`` cover them.

A plan multiplies its ranking maps by the index (:func:`fence_maps`): every interval
gets its ranking cut to the POPs its fences allow, with the fences' :class:`FenceTag`
in the entry.  So per query nothing is tested: the fenced interval answers like any
other, its answer carries the fence's label, and it never merges with clients
outside the fence (the ECS scope of a fenced answer stays inside the fence).  A
client inside several fences may only get POPs that all of them allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

import numpy as np

from geodns.config import Fence
from geodns.geoip.asn_tables import AsnTables
from geodns.geoip.tables import GeoTables
from geodns.select.compile import _Entries, _runs
from geodns.select.maps import Alias, Entry, FenceTag, Hashed, Ranking, RankingMap, product

__all__ = ["AliasSpot", "FenceIndex", "PoolFences", "cut_entry", "fence_maps"]

NOBODY: Final[frozenset[str]] = frozenset()
V4_IN_V6: Final = -4  # (as geodns.select.plan) IPv4 space reached from IPv6 clients
VARIANT_BASE: Final = -16  # map keys of the IPv4 maps Alias.via names: -16, -17, ...


@dataclass(frozen=True, slots=True)
class AliasSpot:
    """Fence-map entry of an IPv6 block that is the IPv4 space: fenced by the IPv4
    address inside (``depth`` as in :class:`~geodns.select.maps.Alias`) plus ``extra``."""

    depth: int
    extra: frozenset[str] = NOBODY


FenceEntry = frozenset[str] | AliasSpot


def _union(a: FenceEntry, b: FenceEntry) -> FenceEntry:
    if isinstance(a, AliasSpot):
        assert not isinstance(b, AliasSpot)
        return AliasSpot(a.depth, a.extra | b) if b else a
    if isinstance(b, AliasSpot):
        return AliasSpot(b.depth, b.extra | a) if a else b
    return a | b if b else a


def _segments_map(family: int, segments: Iterable[tuple[int, int, frozenset[str]]]
                  ) -> RankingMap:
    """Disjoint sorted (start, end, names) segments as a map (nobody elsewhere)."""
    entries = _Entries()
    entries.id(NOBODY)
    painted = [(s, e, entries.id(names)) for s, e, names in segments]
    base = RankingMap.single(family, NOBODY)
    base.entries = entries.list()
    return base.overlay(painted)


class FenceIndex:
    """Which fences cover each address (shared by every pool of a selector)."""

    def __init__(self, fences: Mapping[str, Fence], tables: GeoTables | None,
                 asn: AsnTables | None) -> None:
        self.fences = dict(fences)
        self.order = {name: i for i, name in enumerate(fences)}
        self.maps: dict[int, RankingMap] = {f: self._compile(f, tables, asn) for f in (4, 6)}
        self._extra: dict[frozenset[str], RankingMap] = {}

    def _compile(self, family: int, tables: GeoTables | None,
                 asn: AsnTables | None) -> RankingMap:
        fmap = self._places(family, tables)
        by_asn = self._asn(family, asn)
        if by_asn is not None:
            fmap = product(fmap, by_asn, _union)
        by_nets = self._nets(family)
        if by_nets is not None:
            fmap = product(fmap, by_nets, _union)
        return fmap

    def _places(self, family: int, tables: GeoTables | None) -> RankingMap:
        """Every GeoIP network: the fences whose places (continent, country,
        subdivision) its record names; AliasSpot for the IPv4 space inside IPv6."""
        entries = _Entries()
        nobody = entries.id(NOBODY)
        table = tables.family(family) if tables is not None else None
        if tables is None or table is None:
            return RankingMap.single(family, NOBODY)
        placed = [f for f in self.fences.values() if f.by_place]
        f = tables.fields
        uniq, inverse = tables.place_keys()
        rid_of_key = np.full(len(uniq), nobody, dtype=np.int32)
        if placed:
            for i, (c, cc, sub) in enumerate(uniq.tolist()):
                continent, country, subs = f.codes[c], f.codes[cc], f.subdivisions[sub]
                names = frozenset(x.name for x in placed if continent in x.continents
                                  or country in x.countries
                                  or any(s in x.subdivisions for s in subs))
                rid_of_key[i] = entries.id(names)
        rmap = _runs(table, family, rid_of_key[inverse], nobody, entries)
        rmap.entries = [AliasSpot(e.depth) if isinstance(e, Alias) else e
                        for e in entries.list()]
        return rmap

    def _asn(self, family: int, asn: AsnTables | None) -> RankingMap | None:
        table = asn.family(family) if asn is not None else None
        numbers: dict[int, set[str]] = {}
        for fence in self.fences.values():
            for n in fence.asn:
                numbers.setdefault(n, set()).add(fence.name)
        if table is None or not numbers:
            return None
        sets = sorted({frozenset(v) for v in numbers.values()}, key=sorted)
        rid = {n: sets.index(frozenset(v)) for n, v in numbers.items()}
        segments = [(s, e, sets[r]) for s, e, r in table.segments(rid)]
        return _segments_map(family, segments) if segments else None

    def _nets(self, family: int) -> RankingMap | None:
        """Elementary segments between the fences' network boundaries, each with every
        fence one of whose networks covers it (nested networks add up)."""
        nets = [(int(n.network_address), int(n.broadcast_address) + 1, f.name)
                for f in self.fences.values() for n in f.nets if n.version == family]
        if not nets:
            return None
        cuts = sorted({x for s, e, _ in nets for x in (s, e)})
        segments = []
        for s, e in pairwise(cuts):
            names = frozenset(name for ns, ne, name in nets if ns <= s and e <= ne)
            if names:
                segments.append((s, e, names))
        return _segments_map(family, segments)

    def with_extra(self, extra: frozenset[str]) -> RankingMap:
        """The IPv4 map with ``extra`` added everywhere (clients in IPv4 space inside
        IPv6 networks that IPv6 fences cover)."""
        if not extra:
            return self.maps[4]
        found = self._extra.get(extra)
        if found is None:
            found = self._extra[extra] = self.maps[4].relabel(lambda e: e | extra)
        return found

    def for_pool(self, pool: str) -> PoolFences | None:
        mine = [f for f in self.fences.values() if f.applies_to(pool)]
        return PoolFences(self, mine) if mine else None

    def used(self) -> Iterable[tuple[int, frozenset[str], int, int]]:
        """(family, fence names, start, end) of one interval per distinct set of fences
        that covers some clients (IPv4 space inside IPv6: as the IPv4 map says, plus
        the extra IPv6 fences); for ``geodns check``."""
        seen: set[frozenset[str]] = set()
        extras: set[frozenset[str]] = set()
        for family in (4, 6):
            fmap = self.maps[family]
            rids = fmap.rids
            for rid in np.unique(rids).tolist():
                entry = fmap.entries[rid]
                if isinstance(entry, AliasSpot):
                    extras.add(entry.extra)
                    continue
                if entry and entry not in seen:
                    seen.add(entry)
                    yield (family, entry, *_span(fmap, int(np.argmax(rids == rid))))
        v4 = self.maps[4]
        for extra in extras - {NOBODY}:
            for rid in np.unique(v4.rids).tolist():
                names = v4.entries[rid] | extra
                if names not in seen:
                    seen.add(names)
                    yield (4, names, *_span(v4, int(np.argmax(v4.rids == rid))))


def _span(rmap: RankingMap, i: int) -> tuple[int, int]:
    full = 1 << rmap.bits
    start = rmap.starts(np.array([i]))[0]
    end = rmap.starts(np.array([i + 1]))[0] if i + 1 < len(rmap) else full
    return start, end


class PoolFences:
    """The fences that apply to one pool, and the tag of each set of them."""

    def __init__(self, index: FenceIndex, fences: list[Fence]) -> None:
        self.index = index
        self.fences = {f.name: f for f in fences}
        self._tags: dict[frozenset[str], FenceTag | None] = {}

    def tag(self, names: frozenset[str]) -> FenceTag | None:
        """The tag of clients inside ``names`` (None: no fence of this pool)."""
        if names in self._tags:
            return self._tags[names]
        mine = sorted((n for n in names if n in self.fences), key=self.index.order.__getitem__)
        tag = None
        if mine:
            allowed = frozenset.intersection(*(frozenset(self.fences[n].pops) for n in mine))
            on_empty = "servfail" if any(self.fences[n].on_empty == "servfail"
                                         for n in mine) else "nodata"
            tag = FenceTag("+".join(mine), tuple(mine), allowed, on_empty)
        self._tags[names] = tag
        return tag


def cut_entry(entry: Entry, allowed: frozenset[str], tag: FenceTag | None,
              weighted: tuple[tuple[str, float, int], ...]) -> Entry:
    """``entry`` with its candidates cut to ``allowed``; ``tag``: the fences doing it
    (None: an experiment arm, which keeps the entry's own tag).  ``weighted``: the
    pool's weighted candidates (what a Hashed entry without its own list ranks)."""
    if isinstance(entry, Ranking):
        pops = tuple(p for p in entry.pops if p in allowed)
        fence = tag.after(pops) if tag is not None else entry.fence
        return Ranking(entry.rule, pops, fence)
    if isinstance(entry, Hashed):
        mine = tuple(w for w in (entry.weighted if entry.weighted is not None else weighted)
                     if w[0] in allowed)
        fence = tag.after(tuple(w[0] for w in mine)) if tag is not None else entry.fence
        return Hashed(entry.rule, fence, mine)
    return entry


def fence_maps(open_maps: Mapping[int, RankingMap], fences: PoolFences,
               weighted: tuple[tuple[str, float, int], ...]) -> dict[int, RankingMap]:
    """A pool's maps (``open_maps``: as its strategy ranks, keyed 4, 6 and V4_IN_V6)
    with its fences multiplied in.  IPv4 space inside IPv6 keeps answering from an
    IPv4 map: the fenced V4_IN_V6 one, or (``Alias.via``) one made for fences of IPv6
    networks covering it, or for a ranking that is not the IPv4 address's.  Pure: safe
    off the serving thread."""
    index = fences.index
    out: dict[int, RankingMap] = {}
    variants: dict[tuple[Any, frozenset[str]], int] = {}

    def tagged(names: frozenset[str]) -> FenceTag | None:
        return fences.tag(names)

    def combine4(entry: Entry, names: frozenset[str]) -> Entry:
        tag = tagged(names)
        return entry if tag is None else cut_entry(entry, tag.pops, tag, weighted)

    def variant(base: RankingMap | Entry, extra: frozenset[str]) -> int:
        memo = (id(base) if isinstance(base, RankingMap) else base, extra)
        key = variants.get(memo)
        if key is None:
            key = variants[memo] = VARIANT_BASE - len(variants)
            rmap = base if isinstance(base, RankingMap) else RankingMap.single(4, base)
            out[key] = product(rmap, index.with_extra(extra), combine4)
        return key

    v4_base = open_maps.get(V4_IN_V6, open_maps[4])

    def combine6(entry: Entry, spot: FenceEntry) -> Entry:
        if isinstance(spot, AliasSpot):
            extra = frozenset(n for n in spot.extra if n in fences.fences)
            if isinstance(entry, Alias):
                if not extra:
                    return entry  # answered by the fenced V4_IN_V6 map
                return Alias(entry.depth, variant(v4_base, extra))
            return Alias(spot.depth, variant(entry, extra), hash6=True)
        if isinstance(entry, Alias):  # (a database whose IPv4 space the index missed)
            return Alias(entry.depth, variant(v4_base, spot) if tagged(spot) else None)
        return combine4(entry, spot)

    out[4] = product(open_maps[4], index.maps[4], combine4)
    out[V4_IN_V6] = out[4] if V4_IN_V6 not in open_maps else product(
        open_maps[V4_IN_V6], index.maps[4], combine4)
    out[6] = product(open_maps[6], index.maps[6], combine6)
    return out

