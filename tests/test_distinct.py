"""distinct_rows is np.unique(axis=0, return_inverse=True), only faster."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geodns.distinct import distinct_rows

tables = st.one_of(
    hnp.arrays(np.int64, st.tuples(st.integers(0, 60), st.integers(1, 5)),
               elements=st.integers(-3, 3)),
    hnp.arrays(np.int64, st.tuples(st.integers(0, 60), st.integers(1, 4)),
               elements=st.integers(-2**62, 2**62)),  # wide: renumbered on the way
    hnp.arrays(np.int32, st.tuples(st.integers(0, 60), st.integers(1, 3)),
               elements=st.sampled_from([0, 1, 2**30])),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 60), st.integers(1, 3)),
               elements=st.sampled_from([-1.5, -0.0, 0.0, 2.25, 1e300])),
)


@given(tables)
@settings(max_examples=300, deadline=None)
def test_same_rows_order_and_inverse_as_numpy(table: np.ndarray) -> None:
    rows, inverse = distinct_rows(table)
    want_rows, want_inverse = np.unique(table, axis=0, return_inverse=True)
    assert rows.tolist() == want_rows.tolist()
    assert inverse.tolist() == np.asarray(want_inverse).reshape(-1).tolist()
    assert (rows[inverse] == table).all()


def test_many_wide_columns_stay_exact() -> None:
    """Eight columns of a thousand distinct values each would overflow one 64-bit key."""
    rng = np.random.default_rng(3)
    table = rng.integers(0, 10**6, size=(2000, 8)) * 7919
    table[1000:] = table[:1000]
    rows, inverse = distinct_rows(table)
    assert rows.tolist() == np.unique(table, axis=0).tolist()
    assert (rows[inverse] == table).all()


def test_one_dimensional_input_is_refused() -> None:
    with pytest.raises(ValueError, match="2-D"):
        distinct_rows(np.arange(3))
