"""Compiled steering maps: sorted address intervals -> what decides the answer.

A :class:`RankingMap` covers one address family of one pool: every interval (a run
of GeoIP networks, cut by ``nets`` rules) maps to a health-independent ranking of
POPs.  An :class:`AnswerMap` is derived from it for one health snapshot: each
ranking becomes an answer, and adjacent intervals with the same answer merge.  Per
query that is one ``bisect`` and, for ECS, the scope: the widest CIDR block around
the client that lies inside its answer interval (:meth:`AnswerMap.scoped`).  Every
address of that block gets the same answer, and no wider block has that property,
because the neighbouring addresses on both sides get a different one.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

import numpy as np

__all__ = ["Alias", "AnswerMap", "FenceTag", "Hashed", "Ranking", "RankingMap",
           "flatten_nets", "product"]

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True)
class FenceTag:
    """The fences that cover some clients of a pool, as the entries of its maps carry
    them: a fenced region never merges with an unfenced one, nor with another fence's.

    ``emptied``: the fences left these clients' ranking no POP at all (they get
    ``on_empty``)."""

    label: str  # "us-only", or "de-only+eu" for clients inside both
    names: tuple[str, ...]
    pops: frozenset[str]  # the POPs every one of the fences allows
    on_empty: str  # "servfail" or "nodata" (servfail when any of them says so)
    emptied: bool = False

    def cut(self, pops: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(p for p in pops if p in self.pops)

    def after(self, cut: tuple[str, ...]) -> FenceTag:
        """This tag for a cut ranking: marked emptied when the cut left nothing."""
        return self if cut or self.emptied else replace(self, emptied=True)


@dataclass(frozen=True, slots=True)
class Ranking:
    """POPs in the order a strategy prefers them for some clients, and why (and the
    fences that cut them, if any)."""

    rule: str  # e.g. "country.GB", 'nets."10.0.0.0/8"', "nearest by great-circle distance"
    pops: tuple[str, ...]
    fence: FenceTag | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """An IPv6 interval that is the IPv4 space (::ffff:0:0/96, 6to4...): its IPv4
    address starts at bit ``depth`` and is answered by the pool's IPv4 map.

    In fenced pools ``via`` may name another IPv4 map to answer from (the fences of
    IPv6 networks covering this interval on top of the IPv4 address's, or a ranking
    that does not depend on the IPv4 address), and ``hash6`` says that hashes (weighted,
    spill) take the client's IPv6 /56, as they would without the fence."""

    depth: int
    via: int | None = None
    hash6: bool = False


@dataclass(frozen=True, slots=True)
class Hashed:
    """An interval whose clients are ranked by the weighted hash of their /24 (/56):
    ``weighted`` pools with fences, a ``latency`` pool's ``weighted`` fallback outside
    the latency map.  ``weighted``: the (POP, weight, seed) candidates when a fence or
    an arm cut them (None: the pool's)."""

    rule: str = "weighted hash of the client's /24 (/56)"
    fence: FenceTag | None = None
    weighted: tuple[tuple[str, float, int], ...] | None = None


Entry = Ranking | Alias | Hashed
FULL: Final = {4: 1 << 32, 6: 1 << 128}
TOP_BITS: Final = 16  # IPv4 answer maps index their intervals by the client's /16
TOP_BLOCKS: Final = 1 << TOP_BITS
TOP_SHIFT: Final = 32 - TOP_BITS


def _split(family: int, starts: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    if family == 4:
        return np.asarray(starts, dtype=np.uint64), None
    m = (1 << 64) - 1
    return (np.array([x >> 64 for x in starts], dtype=np.uint64),
            np.array([x & m for x in starts], dtype=np.uint64))


@dataclass(slots=True)
class RankingMap:
    """Intervals of one family: interval ``i`` starts at ``starts()[i]`` (sorted, the
    first is 0) and is ranked by ``entries[rids[i]]``.  Starts are kept as numpy
    arrays (IPv6: two 64-bit halves): a map can hold millions of intervals.  (Fence
    maps use the same shape with sets of fence names as entries.)"""

    family: int
    hi: np.ndarray  # uint64
    lo: np.ndarray | None  # uint64 (IPv6)
    rids: np.ndarray  # int32, parallel to hi
    entries: list[Any]  # Entry in steering maps

    @property
    def bits(self) -> int:
        return 32 if self.family == 4 else 128

    def __len__(self) -> int:
        return len(self.rids)

    @classmethod
    def from_starts(cls, family: int, starts: Sequence[int], rids: Sequence[int] | np.ndarray,
                    entries: list[Entry]) -> RankingMap:
        hi, lo = _split(family, starts)
        return cls(family, hi, lo, np.asarray(rids, dtype=np.int32), entries)

    @classmethod
    def single(cls, family: int, entry: Any) -> RankingMap:
        return cls.from_starts(family, [0], [0], [entry])

    def relabel(self, fn: Callable[[Any], Any]) -> RankingMap:
        """The same intervals with every entry mapped by ``fn`` (neighbours that become
        equal stay apart: only lookups read them, and they see the same entry)."""
        return RankingMap(self.family, self.hi, self.lo, self.rids,
                          [fn(e) for e in self.entries])

    def keys(self) -> np.ndarray:
        """Starts as one sortable array: uint64 (IPv4) or 16-byte big-endian strings
        (IPv6), which numpy sorts and searches in address order."""
        if self.lo is None:
            return self.hi
        both = np.empty((len(self.hi), 2), dtype=">u8")
        both[:, 0] = self.hi
        both[:, 1] = self.lo
        return both.view("S16").reshape(-1)

    def starts(self, index: np.ndarray | None = None) -> list[int]:
        """Start addresses as Python ints (all, or those at ``index``)."""
        hi = self.hi if index is None else self.hi[index]
        if self.lo is None:
            return list(hi.tolist())
        lo = self.lo if index is None else self.lo[index]
        return [(h << 64) | low for h, low in zip(hi.tolist(), lo.tolist(), strict=True)]

    def starts_seq(self, index: np.ndarray) -> Sequence[int]:
        """The starts at ``index`` as a compact sequence for bisect (IPv4: an array of
        64-bit ints built without Python objects; IPv6: a list of ints)."""
        if self.lo is None:
            return array("Q", np.ascontiguousarray(self.hi[index], dtype=np.uint64).tobytes())
        return self.starts(index)

    def find(self, addr: int) -> tuple[int, int, int]:
        """(interval index, start, end) of the interval holding ``addr`` (not hot)."""
        if self.lo is None:
            i = int(np.searchsorted(self.hi, np.uint64(addr), side="right")) - 1
        else:
            i = bisect_right(self.starts(), addr) - 1
        n = len(self.rids)
        start = self.starts(np.array([i]))[0]
        end = self.starts(np.array([i + 1]))[0] if i + 1 < n else FULL[self.family]
        return i, start, end

    def entry_at(self, addr: int) -> Entry:
        return self.entries[int(self.rids[self.find(addr)[0]])]

    def overlay(self, segments: Sequence[tuple[int, int, int]]) -> RankingMap:
        """This map with ``segments`` (sorted, disjoint (start, end, rid)) painted over."""
        if not segments:
            return self
        base_s = self.starts()
        base_r = self.rids.tolist()
        full = FULL[self.family]
        out_s: list[int] = []
        out_r: list[int] = []
        bi = 0
        for s, e, rid in segments:
            j = bisect_left(base_s, s, bi)
            out_s += base_s[bi:j]
            out_r += base_r[bi:j]
            out_s.append(s)
            out_r.append(rid)
            if e < full:
                k = bisect_right(base_s, e) - 1
                out_s.append(e)
                out_r.append(base_r[k])
                bi = k + 1
            else:
                bi = len(base_s)
        out_s += base_s[bi:]
        out_r += base_r[bi:]
        # equal starts (a segment ending where the next begins): the later one wins
        st: list[int] = []
        rr: list[int] = []
        for s, r in zip(out_s, out_r, strict=True):
            if st and st[-1] == s:
                rr[-1] = r
                continue
            st.append(s)
            rr.append(r)
        ms: list[int] = []
        mr: list[int] = []
        for s, r in zip(st, rr, strict=True):
            if mr and mr[-1] == r:
                continue
            ms.append(s)
            mr.append(r)
        return RankingMap.from_starts(self.family, ms, mr, self.entries)


def product(a: RankingMap, b: RankingMap, combine: Callable[[Any, Any], Any]) -> RankingMap:
    """Both maps' intervals cut at every start of either; each piece gets
    ``combine(a's entry, b's entry)`` (called once per distinct pair, results interned:
    entries must be hashable), and neighbours with equal entries merge."""
    ka, kb = a.keys(), b.keys()
    keys = ka if len(kb) == 1 else np.union1d(ka, kb)
    ra = a.rids if keys is ka else a.rids[np.searchsorted(ka, keys, side="right") - 1]
    rb = b.rids[np.searchsorted(kb, keys, side="right") - 1]
    nb = len(b.entries)
    pair = ra.astype(np.int64) * nb + rb.astype(np.int64)
    uniq, inverse = np.unique(pair, return_inverse=True)
    interned: dict[Any, int] = {}
    entries: list[Any] = []
    rid_of = np.empty(len(uniq), dtype=np.int32)
    for i, p in enumerate(uniq.tolist()):
        e = combine(a.entries[p // nb], b.entries[p % nb])
        rid = interned.get(e)
        if rid is None:
            rid = interned[e] = len(entries)
            entries.append(e)
        rid_of[i] = rid
    rids = rid_of[np.asarray(inverse).reshape(-1)]
    keep = np.ones(len(rids), dtype=bool)
    keep[1:] = rids[1:] != rids[:-1]
    idx = np.flatnonzero(keep)
    kept = keys[idx]
    if a.lo is None:
        return RankingMap(a.family, np.asarray(kept, dtype=np.uint64), None, rids[idx],
                          entries)
    halves = np.ascontiguousarray(kept).view(">u8").reshape(-1, 2)
    return RankingMap(a.family, halves[:, 0].astype(np.uint64),
                      halves[:, 1].astype(np.uint64), rids[idx], entries)


def flatten_nets(nets: Sequence[tuple[int, int, int]], bits: int) -> list[tuple[int, int, int]]:
    """Nested or disjoint CIDRs ``(start, prefixlen, rid)`` as disjoint segments
    ``(start, end, rid)`` where the longest matching prefix wins."""
    blocks = sorted(((s, s + (1 << (bits - p)), p, rid) for s, p, rid in nets),
                    key=lambda b: (b[0], b[2]))  # same start: the wider block first
    out: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []  # (end, rid) of the enclosing blocks
    pos = 0

    def emit(s: int, e: int, rid: int) -> None:
        if s < e:
            out.append((s, e, rid))

    for s, e, _, rid in blocks:
        while stack and stack[-1][0] <= s:
            end, r = stack.pop()
            emit(pos, end, r)
            pos = end
        if stack:
            emit(pos, s, stack[-1][1])
        stack.append((e, rid))
        pos = s
    while stack:
        end, r = stack.pop()
        emit(pos, end, r)
        pos = end
    return out


class AnswerMap(Generic[T]):
    """A ranking map resolved under one health snapshot: intervals -> answers, with
    adjacent equal answers merged (the answers of Alias entries stay distinct)."""

    __slots__ = ("answers", "bits", "family", "full", "n", "starts", "token", "top")

    def __init__(self, family: int, starts: Sequence[int], answers: list[T | Alias],
                 token: Hashable) -> None:
        self.family = family
        self.bits = 32 if family == 4 else 128
        self.full = 1 << self.bits
        self.starts = starts
        self.answers = answers
        self.n = len(answers)
        self.token = token
        # IPv4: top[h] is the first interval starting at or after the /16 ``h``, so a
        # lookup bisects only the few intervals that start inside the client's /16
        # (a handful, not ~16 probes over the whole map; 256 KiB per map).
        self.top: array[int] | None = None
        if family == 4 and self.n > 64:
            first = np.arange(TOP_BLOCKS + 1, dtype=np.uint64) << np.uint64(TOP_SHIFT)
            at = np.searchsorted(np.asarray(starts, dtype=np.uint64), first, side="left")
            self.top = array("I", at.astype(np.uint32).tobytes())

    @classmethod
    def build(cls, rmap: RankingMap, answer_of: Callable[[Entry], T | Alias],
              token: Hashable, same: Callable[[T | Alias], Hashable] = lambda a: a
              ) -> AnswerMap[T]:
        """Resolve every distinct entry once, then merge intervals in one numpy pass.

        Intervals merge when ``same(answer)`` is equal: what the client sees, not how
        it came about (which POPs were passed over on the way)."""
        ids: dict[Hashable, int] = {}
        first: list[T | Alias] = []
        aid: list[int] = []
        for entry in rmap.entries:
            a = answer_of(entry)
            k = same(a)
            i = ids.get(k)
            if i is None:
                i = ids[k] = len(first)
                first.append(a)
            aid.append(i)
        per_interval = np.asarray(aid, dtype=np.int32)[rmap.rids]
        keep = np.ones(len(per_interval), dtype=bool)
        keep[1:] = per_interval[1:] != per_interval[:-1]
        idx = np.flatnonzero(keep)
        return cls(rmap.family, rmap.starts_seq(idx),
                   [first[a] for a in per_interval[idx].tolist()], token)

    def __len__(self) -> int:
        return self.n

    def index(self, addr: int) -> int:
        """The interval holding ``addr``."""
        top = self.top
        if top is not None:
            h = addr >> TOP_SHIFT
            return bisect_right(self.starts, addr, top[h], top[h + 1]) - 1
        return bisect_right(self.starts, addr) - 1

    def lookup(self, addr: int) -> tuple[T | Alias, int, int]:
        """(answer, interval start, interval end) for ``addr``."""
        starts = self.starts
        i = self.index(addr)
        return self.answers[i], starts[i], starts[i + 1] if i + 1 < self.n else self.full

    def scoped(self, addr: int) -> tuple[T | Alias, int]:
        """(answer, ECS scope) for ``addr``: the prefix length of the widest CIDR block
        holding ``addr`` inside its interval [start, end) (0 when one answer covers all).

        The k-bit block of ``addr`` avoids address x exactly when ``(addr ^ x)`` has more
        than k significant bits; it lies inside the interval when it avoids both
        neighbours ``start - 1`` and ``end``."""
        i = self.index(addr)
        starts = self.starts
        n = self.n
        if n == 1:
            return self.answers[0], 0
        bits = self.bits
        k = bits
        if i:
            k = (addr ^ (starts[i] - 1)).bit_length() - 1
        if i + 1 < n:
            k2 = (addr ^ starts[i + 1]).bit_length() - 1
            if k2 < k:
                k = k2
        return self.answers[i], bits - k
