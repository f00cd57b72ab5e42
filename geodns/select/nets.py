"""Binary trie over the ``nets`` CIDRs of a geo pool: longest match plus the scope bound.

One walk down the client's bits yields the longest matching entry and the longest
prefix at which some *other* entry branches off the client's path.  A scope at least
one bit longer than that branch point never overlaps an entry that does not contain
the client, which is what makes ``nets`` answers and ECS scopes agree.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["NetTrie"]

T = TypeVar("T")


class NetTrie(Generic[T]):
    """Prefixes of one address family (``bits`` = 32 or 128) mapped to values."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._root: list[object] = [None, None, None]  # child0, child1, (value,) or None
        self.size = 0

    def insert(self, net: int, prefix: int, value: T) -> None:
        node = self._root
        for depth in range(prefix):
            b = (net >> (self.bits - 1 - depth)) & 1
            child = node[b]
            if child is None:
                child = [None, None, None]
                node[b] = child
            node = child  # type: ignore[assignment]
        if node[2] is None:
            self.size += 1
        node[2] = (value,)

    def walk(self, addr: int) -> tuple[T | None, int, int]:
        """``(value, match_len, branch_bound)`` for ``addr``.

        ``value``/``match_len``: longest entry containing ``addr`` (None, 0 if none).
        ``branch_bound``: the smallest scope ``s`` such that ``addr/s`` overlaps no entry
        that does not contain ``addr`` (0 when there is no such entry).
        """
        node: list[object] | None = self._root
        bits = self.bits
        depth = 0
        best: tuple[T] | None = None
        best_len = 0
        bound = 0
        while node is not None:
            if node[2] is not None:
                best = node[2]  # type: ignore[assignment]
                best_len = depth
            if depth == bits:
                break
            b = (addr >> (bits - 1 - depth)) & 1
            if node[1 - b] is not None:
                bound = depth + 1
            node = node[b]  # type: ignore[assignment]
            depth += 1
        if best is None:
            return None, 0, bound
        return best[0], best_len, bound
