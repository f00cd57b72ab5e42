"""Labelled experiments: which arm of a pool's experiment a client block belongs to.

Each client /24 (IPv6 /56) hashes, with the pool's ``salt``, to a point in [0, 1);
the arms split [0, 1) by weight, in config order.  The hash is stable (no Python
``hash``: the same block lands in the same arm on every server and after restarts),
a new salt reshuffles every block, and it is independent of the ``weighted`` hash
(which ranks POPs per block) and of the spill hash (which moves blocks): the seed
comes from the salt through BLAKE2b and the result is mixed once more with a constant
of its own, so an arm never selects for the blocks a weighted pool sends to one POP.

Per query that is one hash of the client's block, only in pools with arms.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from geodns.config import Arm
from geodns.select.hrw import _mix

__all__ = ["ARM_UNIT", "arm_cuts", "arm_index", "arm_point", "arm_seed"]

ARM_UNIT: Final = {4: 24, 6: 56}  # an arm's clients: whole /24s and /56s
_ARM_MIX: Final = 0xA53A_9E1B_7C15_D3E5  # keeps the arm hash apart from spill's and hrw's
_INV53: Final = 1.0 / 9007199254740992.0


def arm_seed(salt: str) -> int:
    """A stable 64-bit seed per salt."""
    digest = hashlib.blake2b(b"geodns-arm\0" + salt.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def arm_point(seed: int, cfam: int, addr: int) -> float:
    """Where the client's block lands in [0, 1)."""
    unit = ARM_UNIT[cfam]
    prefix = addr >> ((32 if cfam == 4 else 128) - unit)
    return (_mix(_mix(((prefix << 1) | (cfam == 6)) ^ seed) ^ _ARM_MIX) >> 11) * _INV53


def arm_cuts(arms: Sequence[Arm]) -> tuple[float, ...]:
    """Cumulative shares: arm ``i`` takes the points below ``cuts[i]`` that no earlier
    arm took.  Arms of weight 0 get nothing (also at the end)."""
    total = sum(a.weight for a in arms)
    last = max(i for i, a in enumerate(arms) if a.weight > 0)
    cuts: list[float] = []
    acc = 0.0
    for i, arm in enumerate(arms):
        acc += arm.weight
        cuts.append(1.0 if i >= last else acc / total)
    return tuple(cuts)


def arm_index(cuts: tuple[float, ...], point: float) -> int:
    return bisect_right(cuts, point)
