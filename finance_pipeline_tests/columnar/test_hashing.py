"""columnar/hashing.py: equal texts hash equal, in any chunking; distinct hashes mean distinct texts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar import hashing
from finance_pipeline.columnar.hashing import all_distinct, text_hashes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.none() | st.text(max_size=6), max_size=40), st.integers(1, 7), st.integers(1, 5))
def test_hashes_follow_the_texts_in_any_chunking_and_piece(values, cut, piece):
    whole = text_hashes(pa.array(values, pa.string()))
    chunked = pa.chunked_array([pa.array(values[:cut], pa.large_string()), pa.array(values[cut:], pa.large_string())],
                               type=pa.large_string()) if cut < len(values) else pa.chunked_array(
        [pa.array(values, pa.large_string())])
    saved = hashing.PIECE
    hashing.PIECE = piece
    try:
        assert np.array_equal(text_hashes(chunked), whole)
    finally:
        hashing.PIECE = saved
    texts = ["" if v is None else v for v in values]  # a missing text hashes as the empty one
    for i, a in enumerate(texts):
        for j, b in enumerate(texts):
            if a == b:
                assert whole[i] == whole[j]
    # Distinct texts hash distinct here (a collision among 40 is not expected of 64 bits).
    assert all_distinct(whole) == (len(set(texts)) == len(texts))


def test_all_distinct_at_the_edges():
    assert all_distinct(np.zeros(0, dtype=np.uint64)) and all_distinct(np.array([5], dtype=np.uint64))
    assert not all_distinct(np.array([3, 9, 3], dtype=np.uint64))
