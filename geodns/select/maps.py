"""Compiled steering maps: sorted address intervals -> what decides the answer.

A :class:`RankingMap` covers one address family of one pool: every interval (a run
of GeoIP networks, cut by ``nets`` rules) maps to a health-independent ranking of
POPs.  An :class:`AnswerMap` is derived from it for one health snapshot: each
ranking becomes an answer, and adjacent intervals with the same answer merge.  Per
query that is one ``bisect`` and, for ECS, the scope: the widest CIDR block around
the client that lies inside its answer interval (:func:`widest_block`).  Every
address of that block gets the same answer, and no wider block has that property,
because the neighbouring addresses on both sides get a different one.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

import numpy as np

__all__ = ["Alias", "AnswerMap", "Hashed", "Ranking", "RankingMap", "flatten_nets",
           "widest_block"]

T = TypeVar("T", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Ranking:
    """POPs in the order a strategy prefers them for some clients, and why."""

    rule: str  # e.g. "country.GB", 'nets."10.0.0.0/8"', "nearest by great-circle distance"
    pops: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Alias:
    """An IPv6 interval that is the IPv4 space (::ffff:0:0/96, 6to4...): its IPv4
    address starts at bit ``depth`` and is answered by the pool's IPv4 map."""

    depth: int


@dataclass(frozen=True, slots=True)
class Hashed:
    """An interval whose clients are ranked by the weighted hash of their /24 (/56):
    a ``latency`` pool's ``weighted`` fallback outside the latency map."""

    rule: str = "weighted hash of the client's /24 (/56)"


Entry = Ranking | Alias | Hashed
FULL: Final = {4: 1 << 32, 6: 1 << 128}


def widest_block(addr: int, start: int, end: int, bits: int) -> int:
    """Prefix length of the widest CIDR block holding ``addr`` inside [start, end).

    The k-bit block of ``addr`` avoids address x exactly when ``(addr ^ x)`` has more
    than k significant bits; it lies inside the interval when it avoids both
    neighbours ``start - 1`` and ``end``.
    """
    k = bits
    if start > 0:
        k = (addr ^ (start - 1)).bit_length() - 1
    if end < (1 << bits):
        k2 = (addr ^ end).bit_length() - 1
        if k2 < k:
            k = k2
    return bits - k


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
    arrays (IPv6: two 64-bit halves): a map can hold millions of intervals."""

    family: int
    hi: np.ndarray  # uint64
    lo: np.ndarray | None  # uint64 (IPv6)
    rids: np.ndarray  # int32, parallel to hi
    entries: list[Entry]

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
    def single(cls, family: int, entry: Entry) -> RankingMap:
        return cls.from_starts(family, [0], [0], [entry])

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

    __slots__ = ("answers", "bits", "family", "full", "n", "starts", "token")

    def __init__(self, family: int, starts: Sequence[int], answers: list[T | Alias],
                 token: Hashable) -> None:
        self.family = family
        self.bits = 32 if family == 4 else 128
        self.full = 1 << self.bits
        self.starts = starts
        self.answers = answers
        self.n = len(answers)
        self.token = token

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

    def lookup(self, addr: int) -> tuple[T | Alias, int, int]:
        """(answer, interval start, interval end) for ``addr``."""
        starts = self.starts
        i = bisect_right(starts, addr) - 1
        return self.answers[i], starts[i], starts[i + 1] if i + 1 < self.n else self.full
