"""columnar.membership.isin against pandas' Series.isin."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar import membership
from finance_pipeline.columnar.membership import isin

VALUE = st.one_of(st.none(), st.sampled_from(["je-1", "je-2", "po_1", "", "é", "je-1 "]), st.text(max_size=3))
# Not pd.ArrowDtype(pa.large_string()): pandas' own isin raises on it against all-null object
# members (pandas 3.1), and the helper leaves that dtype to pandas anyway.
DTYPES = ["str", "string", object]


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUE, max_size=30), st.lists(VALUE, max_size=30),
       st.sampled_from(DTYPES), st.sampled_from(DTYPES), st.booleans())
def test_isin_is_series_isin(values, members, vdtype, mdtype, as_index):
    s = pd.Series(values, dtype=vdtype, index=[10 + 2 * i for i in range(len(values))], name="journal_id")
    m = pd.Series(members, dtype=mdtype)
    m = pd.Index(m) if as_index else m
    got, want = isin(s, m), s.isin(m)
    assert got.tolist() == want.tolist()
    assert got.index.equals(s.index) and got.name == s.name and got.dtype == bool


def test_a_chunked_column_is_answered_whole():
    s = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([["a", "b"], [None, "c"]])))
    m = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([["c"], [None], []])))
    assert isin(s, m).tolist() == s.isin(m).tolist() == [False, False, True, True]


def test_arrow_answers_the_string_columns(monkeypatch):
    """The fast path really runs for Arrow strings (else this module would be pandas again)."""
    s, m = pd.Series(["a", "b"], dtype="str"), pd.Series(["b"], dtype="str")
    monkeypatch.setattr(pd.Series, "isin", lambda *a, **k: pytest.fail("pandas' isin ran"))
    assert isin(s, m).tolist() == [False, True]
    assert membership._strings(pd.Series([1, 2])) is None
