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


@dataclass(frozen=True, slots=True, eq=False)
class SpillState:
    """Shares per spill pool and POP, and the loads they were decided on.

    ``tokens[pool]`` changes only when what that pool's answers depend on changes
    (a share, or, while it sheds, a receiver's load); ``generation`` counts published
    states, so a plan can check in one comparison whether to look at its token.
    """

    generation: int = 0
    shares: Mapping[str, Mapping[str, float]] = field(default_factory=_empty)
    loads: Mapping[str, PopLoad] = field(default_factory=_no_loads)
    spill_at: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    tokens: Mapping[str, Hashable] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shares = MappingProxyType({p: MappingProxyType(dict(s)) for p, s in self.shares.items()})
        object.__setattr__(self, "shares", shares)
        object.__setattr__(self, "loads", MappingProxyType(dict(self.loads)))
        object.__setattr__(self, "spill_at", MappingProxyType(dict(self.spill_at)))
        tokens: dict[str, Hashable] = {}
        for pool, per_pop in shares.items():
            active = tuple(sorted((p, round(s, 4)) for p, s in per_pop.items() if s > 0))
            if not active:
                tokens[pool] = ()
                continue
            loads = tuple(sorted((p, round(pl.load, 3), pl.capacity)
                                 for p, pl in self.loads.items()))
            tokens[pool] = (active, loads)
        object.__setattr__(self, "tokens", MappingProxyType(tokens))

    def share(self, pool: str, pop: str) -> float:
        return self.shares.get(pool, {}).get(pop, 0.0)

    def receivers(self, pool: str, pops: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
        """The POPs that take blocks of ``pool``: the first :data:`RECEIVERS` of ``pops``
        (the client's next choices, in order) with room below the spill target, else
        (when none has any) with room below capacity; and that room, their weight.  A
        POP past capacity or without a fresh load never receives."""
        known = [(p, self.loads[p]) for p in pops if p in self.loads]
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
