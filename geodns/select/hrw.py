"""Weighted rendezvous (highest random weight) hashing for sticky weighted pools.

Every client prefix ranks every POP by ``-ln(u) / weight`` with ``u`` a stable hash of
(prefix, POP): the minimum wins with probability ``weight / sum(weights)``, the same
prefix always gets the same ranking (across restarts and servers: no Python ``hash``),
and when a POP goes down only its own clients move, to their second choice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

__all__ = ["hrw_rank", "pop_seed"]

_M64 = (1 << 64) - 1


def pop_seed(name: str) -> int:
    """A stable 64-bit seed per POP name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def _mix(x: int) -> int:
    """splitmix64 finalizer: a fast, well-distributed 64-bit bijection."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hrw_rank(prefix: int, pops: Sequence[tuple[str, float, int]]) -> tuple[str, ...]:
    """POP names ordered for client ``prefix``; ``pops`` = (name, weight, seed).

    Weight-0 POPs come last in config order: used only when every weighted one is down.
    """
    scored: list[tuple[float, int, str]] = []
    zero: list[str] = []
    for i, (name, weight, seed) in enumerate(pops):
        if weight <= 0:
            zero.append(name)
            continue
        h = _mix(_mix((prefix & _M64) ^ seed) ^ (prefix >> 64))
        u = ((h >> 11) + 0.5) / 9007199254740992.0  # (0, 1)
        scored.append((-math.log(u) / weight, i, name))
    scored.sort()
    return tuple(name for _, _, name in scored) + tuple(zero)
