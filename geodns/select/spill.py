"""Capacity-aware spillover as seen by the selector: shares in, answers with a hash out.

A :class:`SpillState` is published (like a health snapshot) by the spill controller
(:mod:`geodns.traffic.spill`): for every spill pool, the share of each POP's client
blocks it sheds, and the fresh loads and capacities of the pool's POPs.  When an
answer's first POP sheds a share, the answer becomes a :class:`SpillAnswer`: the
clients whose block hashes below the share move to the next POPs of their own ranking
that have headroom (the next two), each block to one of them chosen by a second,
independent hash, in proportion to headroom.  Per query that is one hash of the
client's /24 (/56), and only for clients of spilling answers; everything else is
precomputed per state.

Blocks are sticky: the same /24 always hashes to the same point, so a growing share
moves more blocks and never reshuffles the ones already moved, and a falling share
brings back the last ones moved first.  The hash is not the ``weighted`` hash, so the
two never correlate.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from geodns.select.hrw import _mix

if TYPE_CHECKING:
    from geodns.select.plan import Answer

__all__ = ["SPILL_UNIT", "SpillAnswer", "SpillHolder", "SpillState", "headroom", "spill_point"]

SPILL_UNIT: Final = {4: 24, 6: 56}  # hash unit: a moved block is never wider than this
RECEIVERS: Final = 2  # how many of the next POPs with headroom share a POP's moved blocks
_SALT: Final = 0x5A17_5E1D_C0FF_EE11  # makes the spill hash independent of weighted's
_M32: Final = 0xFFFFFFFF
_INV32: Final = 1.0 / 4294967296.0


def spill_point(cfam: int, addr: int) -> tuple[float, float]:
    """Two independent points in [0, 1) for the client's hash unit: ``u`` decides
    whether its block moves (``u < share``), ``v`` where it goes."""
    unit = SPILL_UNIT[cfam]
    prefix = addr >> ((32 if cfam == 4 else 128) - unit)
    h = _mix(_mix(((prefix << 1) | (cfam == 6)) ^ _SALT))  # units fit 57 bits
    return (h >> 32) * _INV32, (h & _M32) * _INV32


def headroom(load: float, capacity: float, spill_at: float) -> tuple[float, float]:
    """(room below the spill target, room below capacity) of a receiver, never negative."""
    return max(0.0, spill_at * capacity - load), max(0.0, capacity - load)


@dataclass(frozen=True, slots=True)
class SpillAnswer:
    """An answer whose first POP sheds ``share`` of its blocks to ``alts``.

    ``cuts`` are cumulative fractions of the receivers' headroom (the last is 1): a
    moved block with ``v < cuts[i]`` (the first such i) gets ``alts[i]``."""

    base: Answer
    pop: str
    share: float
    cuts: tuple[float, ...]
    alts: tuple[Answer, ...]
    receivers: tuple[tuple[str, float], ...]  # (POP, headroom weight), for explain

    def pick(self, cfam: int, addr: int) -> Answer:
        u, v = spill_point(cfam, addr)
        if u >= self.share:
            return self.base
        for cut, alt in zip(self.cuts, self.alts, strict=True):
            if v < cut:
                return alt
        return self.alts[-1]


@dataclass(frozen=True, slots=True)
class PopLoad:
    """A POP's fresh load and its capacity (same unit)."""

    load: float
    capacity: float

    @property
    def utilisation(self) -> float:
        return self.load / self.capacity


def _empty() -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({})


def _no_loads() -> Mapping[str, PopLoad]:
    return MappingProxyType({})


def _no_room() -> Mapping[str, Mapping[str, PopLoad]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class SpillState:
    """Shares per spill pool and POP, the loads they were decided on, and per pool the
    loads its receivers' room is measured from (``room``; default: ``loads``).

    The controller freezes ``room`` when a pool starts shedding: the receivers' room
    before any block moved to them.  Weighing them by their live room would chase its
    own tail (the receiver that got the blocks has no room left, so the next state
    sends them all to the other one, and back).  Live loads still decide who may take
    blocks at all: never a POP past capacity or without a fresh load.

    ``tokens[pool]`` changes only when what that pool's answers depend on changes
    (a share, the frozen room, who is past capacity); ``generation`` counts published
    states, so a plan can check in one comparison whether to look at its token.
    """

    generation: int = 0
    shares: Mapping[str, Mapping[str, float]] = field(default_factory=_empty)
    loads: Mapping[str, PopLoad] = field(default_factory=_no_loads)
    spill_at: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    room: Mapping[str, Mapping[str, PopLoad]] = field(default_factory=_no_room)
    tokens: Mapping[str, Hashable] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shares = MappingProxyType({p: MappingProxyType(dict(s)) for p, s in self.shares.items()})
        object.__setattr__(self, "shares", shares)
        object.__setattr__(self, "loads", MappingProxyType(dict(self.loads)))
        object.__setattr__(self, "spill_at", MappingProxyType(dict(self.spill_at)))
        object.__setattr__(self, "room", MappingProxyType(
            {p: MappingProxyType(dict(r)) for p, r in self.room.items()}))
        full = tuple(sorted(p for p, pl in self.loads.items() if pl.load >= pl.capacity))
        tokens: dict[str, Hashable] = {}
        for pool, per_pop in shares.items():
            active = tuple(sorted((p, round(s, 4)) for p, s in per_pop.items() if s > 0))
            if not active:
                tokens[pool] = ()
                continue
            room = tuple(sorted((p, pl.load, pl.capacity)
                                for p, pl in self._room(pool).items()))
            tokens[pool] = (active, room, full, tuple(sorted(self.loads)))
        object.__setattr__(self, "tokens", MappingProxyType(tokens))

    def _room(self, pool: str) -> Mapping[str, PopLoad]:
        return self.room.get(pool, self.loads)

    def share(self, pool: str, pop: str) -> float:
        return self.shares.get(pool, {}).get(pop, 0.0)

    def receivers(self, pool: str, pops: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
        """The POPs that take blocks of ``pool``: the first :data:`RECEIVERS` of ``pops``
        (the client's next choices, in order) with room below the spill target, else
        (when none has any) with room below capacity; and that room, their weight.  A
        POP past capacity or without a fresh load (now) never receives."""
        room = self._room(pool)
        known = [(p, room.get(p, pl)) for p in pops
                 if (pl := self.loads.get(p)) is not None and pl.load < pl.capacity]
        at = self.spill_at.get(pool, 1.0)
        for tier in (0, 1):
            out = [(p, w) for p, pl in known
                   if (w := headroom(pl.load, pl.capacity, at)[tier]) > 0 and math.isfinite(w)]
            if out:
                return tuple(out[:RECEIVERS])
        return ()


class SpillHolder:
    """The one published spill state; replaced by the controller, read by plans."""

    def __init__(self, state: SpillState | None = None) -> None:
        self.state = state or SpillState()
