"""Distinct rows of a numpy table, fast: what compiling steering maps groups GeoIP
records by (places, coordinates, POP orders)."""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = ["distinct_rows"]

_DENSE: Final = 1 << 20  # integer columns spanning fewer values are numbered without a sort
_LIMIT: Final = 1 << 62


def _numbered(col: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value's rank among the column's values (order-preserving), and how many
    numbers that may give."""
    if np.issubdtype(col.dtype, np.integer) and len(col):
        lo, hi = int(col.min()), int(col.max())
        if hi - lo < _DENSE:
            return col.astype(np.int64) - lo, hi - lo + 1
    values, codes = np.unique(col, return_inverse=True)
    return np.asarray(codes).reshape(-1), len(values)


def distinct_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(table, axis=0, return_inverse=True)`` (same rows, same order), by
    numbering the rows one column at a time: several times faster than numpy's
    row-as-record sort."""
    if table.ndim != 2:
        raise ValueError("distinct_rows needs a 2-D table")
    key = np.zeros(len(table), dtype=np.int64)
    bound = 1  # key < bound
    for col in table.T:
        codes, count = _numbered(col)
        if bound * count >= _LIMIT:  # renumber the rows so far: fewer than len(table)
            _, key = np.unique(key, return_inverse=True)
            key = np.asarray(key).reshape(-1)
            bound = len(table)
        key = key * count + codes
        bound *= count
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return table[first], np.asarray(inverse).reshape(-1)
