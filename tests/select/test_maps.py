"""AnswerMap lookups: the /16 index finds the same interval as a bisect over all starts,
and the scope is the widest CIDR block around the address inside that interval."""

from __future__ import annotations

from array import array
from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.select.maps import AnswerMap

ADDR = st.integers(0, (1 << 32) - 1)


def _plain(starts: list[int], addr: int) -> tuple[int, int, int]:
    i = bisect_right(starts, addr) - 1
    return i, starts[i], starts[i + 1] if i + 1 < len(starts) else 1 << 32


def _widest(addr: int, start: int, end: int) -> int:
    """The shortest prefix length whose block around ``addr`` fits in [start, end)."""
    for length in range(33):
        first = addr >> (32 - length) << (32 - length)
        if start <= first and first + (1 << (32 - length)) <= end:
            return length
    raise AssertionError("a /32 always fits")


def _check(amap: AnswerMap[int], starts: list[int], addr: int) -> None:
    i, start, end = _plain(starts, addr)
    assert amap.lookup(addr) == (i, start, end)
    assert amap.scoped(addr) == (i, _widest(addr, start, end))


@settings(max_examples=200, deadline=None)
@given(st.lists(ADDR, min_size=65, max_size=400, unique=True), st.lists(ADDR, max_size=50))
def test_indexed_lookup_finds_the_interval_holding_the_address(
        cuts: list[int], probes: list[int]) -> None:
    starts = sorted({0, *cuts})
    amap = AnswerMap(4, array("Q", starts), list(range(len(starts))), None)
    assert amap.top is not None  # large enough to be indexed
    # every start, the address before it, the edges of its /16 and random addresses
    edges = [x for s in starts for x in (s, s - 1, s | 0xFFFF, s & ~0xFFFF) if x >= 0]
    for addr in [*probes, *edges, 0, (1 << 32) - 1]:
        _check(amap, starts, addr)


def test_crowded_and_empty_blocks() -> None:
    # 300 intervals inside one /16, none in the next 1,000 /16s, one per /16 after that
    starts = [0, *range(0x0A000000, 0x0A000000 + 300 * 7, 7),
              *range(0x0B000000, 0x0B000000 + (80 << 16), 1 << 16)]
    amap = AnswerMap(4, array("Q", starts), list(range(len(starts))), None)
    for addr in (0x09FFFFFF, 0x0A000000, 0x0A000006, 0x0A000007, 0x0A000000 + 300 * 7,
                 0x0A0FFFFF, 0x0AFFFFFF, 0x0B000000, 0x0B00FFFF, 0x0B010000, 0xFFFFFFFF):
        _check(amap, starts, addr)


@pytest.mark.parametrize("starts", [[0], [0, 1 << 31], [0, 5, 0x0A000000]])
def test_small_maps_bisect_the_whole_map(starts: list[int]) -> None:
    amap = AnswerMap(4, array("Q", starts), list(range(len(starts))), None)
    assert amap.top is None
    for addr in {0, 4, 5, 6, (1 << 31) - 1, 1 << 31, 0x0A000000, (1 << 32) - 1}:
        if len(starts) == 1:
            assert amap.scoped(addr) == (0, 0)  # one answer for everyone: scope /0
        else:
            _check(amap, starts, addr)
