"""columnar.totals.totals_by_currency against the statement's reference totals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar.totals import sums_by_currency, totals_by_currency
from finance_pipeline.domain.canonical import MAX_SAFE_INT
from finance_pipeline.domain.journal import entry_from_leaf
from finance_pipeline.ledger.extract import DTYPES, entries_from_lines
from finance_pipeline.proof.package import ledger_totals, totals_rows

# A balanced pair of postings: one debit, its amount credited in two lines.
POSTING = st.tuples(st.sampled_from(["USD", "EUR", "JPY"]), st.integers(1, 10**12), st.integers(1, 10**12))


def _lines(postings):
    for cur, a, b in postings:
        yield from ((cur, "debit", a + b), (cur, "credit", a), (cur, "credit", b))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(POSTING, min_size=1, max_size=3), max_size=12))
def test_the_totals_of_a_frame_are_the_totals_of_its_entries(entries):
    rows = [{"journal_id": f"je-{i:03d}", "ts_us": 1_793_577_600_000_000 + i, "kind": "standard", "memo": "m",
             "batch_id": None, "provider": None, "provider_reference": None, "posted_by": "ops:ana",
             "reverses": None, "line_no": n, "account_id": f"cash_{cur.lower()}", "direction": d,
             "amount_minor": amount, "currency": cur}
            for i, postings in enumerate(entries) for n, (cur, d, amount) in enumerate(_lines(postings))]
    frame = pd.DataFrame(rows, columns=list(DTYPES)).astype(DTYPES)
    expected = ledger_totals(entry_from_leaf(e) for e in entries_from_lines(frame))
    assert totals_by_currency(frame[["amount_minor", "direction", "currency"]]) == expected
    # A day read in pieces: the sums of its pieces give the same totals.
    for size in (1, 2, 5):
        sums: dict = {}
        for at in range(0, len(frame), size):
            sums_by_currency(frame.iloc[at:at + size], sums)
        assert totals_rows(sums) == expected


def _reference_totals(lines: pd.DataFrame) -> list[dict]:
    """totals_by_currency as it was written before (object arrays, groupby on the text)."""
    if lines.empty:
        return []
    amount = lines["amount_minor"].to_numpy(dtype=np.int64)
    debit = lines["direction"].to_numpy() == "debit"
    frame = pd.DataFrame({"currency": lines["currency"].to_numpy(), "d": np.where(debit, amount, 0),
                          "c": np.where(debit, 0, amount)})
    sums = frame.groupby("currency", sort=True)[["d", "c"]].sum()
    return [{"currency": str(cur), "debits_minor": int(r.d), "credits_minor": int(r.c)}
            for cur, r in sums.iterrows()]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.none() | st.sampled_from(["USD", "EUR", "JPY", "é€"]),
                          st.none() | st.sampled_from(["debit", "credit", "up"]),
                          st.integers(0, MAX_SAFE_INT)), max_size=30), st.booleans())
def test_totals_by_currency_are_the_reference_totals(rows, arrow):
    frame = pd.DataFrame({"currency": pd.Series([r[0] for r in rows], dtype=object),
                          "direction": pd.Series([r[1] for r in rows], dtype=object),
                          "amount_minor": pd.Series([r[2] for r in rows], dtype=np.int64)})
    if arrow:
        if frame["direction"].isna().any():
            return  # the reference cannot compare <NA> (a ledger line always has a direction)
        frame = frame.astype({"currency": DTYPES["currency"], "direction": DTYPES["direction"]})
    assert totals_by_currency(frame) == _reference_totals(frame)
