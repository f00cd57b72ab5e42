"""NetTrie: longest match and the branch bound agree with brute force."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.select.nets import NetTrie

BITS = 12  # a small address space so collisions and nesting are common


def _brute(entries: dict[tuple[int, int], int], addr: int) -> tuple[int | None, int, int]:
    best: int | None = None
    best_len = 0
    bound = 0
    for (net, plen), value in entries.items():
        contains = plen == 0 or (addr >> (BITS - plen)) == (net >> (BITS - plen))
        if contains:
            if best is None or plen >= best_len:
                best, best_len = value, plen
        else:
            common = BITS - (addr ^ net).bit_length()
            bound = max(bound, min(common, plen) + 1)
    return best, best_len, bound


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**BITS - 1), st.integers(0, BITS)), max_size=12),
       st.lists(st.integers(0, 2**BITS - 1), min_size=1, max_size=20))
def test_walk_matches_brute_force(raw: list[tuple[int, int]], addrs: list[int]) -> None:
    trie: NetTrie[int] = NetTrie(BITS)
    entries: dict[tuple[int, int], int] = {}
    for i, (addr, plen) in enumerate(raw):
        net = (addr >> (BITS - plen)) << (BITS - plen) if plen else 0
        trie.insert(net, plen, i)
        entries[(net, plen)] = i
    for a in addrs:
        assert trie.walk(a) == _brute(entries, a)


def test_scope_bound_never_overlaps_foreign_entries() -> None:
    trie: NetTrie[str] = NetTrie(32)
    trie.insert(0x0A000000, 8, "ten")
    trie.insert(0x0A010200, 24, "inner")
    assert trie.walk(0x0A010203) == ("inner", 24, 0)
    value, mlen, bound = trie.walk(0x0A000001)
    assert (value, mlen) == ("ten", 8)
    # 10.0.0.1 and 10.1.2.0 share 15 bits: a scope of 16 keeps them apart
    assert bound == 16
    assert trie.walk(0x0B000000) == (None, 0, 8)
    assert trie.size == 2
