"""The ledger gate judged in pieces of whole entries (a stored extract too large to hold whole)
gives the result the whole frame gives: passing, and failing with counts, totals and samples
that span pieces; ``export.prove.read_for_reconciliation`` takes the pieces only for an
extract in file order, else it reads the frame whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.export import prove
from finance_pipeline.quality import run_ledger_checks
from finance_pipeline.quality.gates import run_ledger_checks_in_pieces
from finance_pipeline_tests.export.test_prove import DAY, Source, _extract_and_counterparts


def _extract() -> pd.DataFrame:
    return _extract_and_counterparts(7)[0]


def _broken(lines: pd.DataFrame) -> pd.DataFrame:
    """The extract with failures of every part spread over it: more than five of some, so the
    samples come from several pieces."""
    bad = lines.copy()
    n = len(bad)
    rows = np.linspace(0, n - 1, 9).astype(int)
    bad.loc[rows, "amount_minor"] = -5  # the rows fail, and so do their journals' balances
    bad.loc[rows[::3], "currency"] = "usd"
    bad.loc[n // 2, "direction"] = "sideways"
    bad.loc[n // 3, "account_id"] = None
    jid = bad["journal_id"].iat[n // 4]
    bad.loc[bad["journal_id"] == jid, "kind"] = "bogus"
    # A line twice, beside itself: its entry's lines stay together.
    at = 2 * n // 3
    return pd.concat([bad.iloc[:at + 1], bad.iloc[at:]], ignore_index=True)


@pytest.mark.parametrize("broken", [False, True])
@pytest.mark.parametrize("rows", [7, 50, 1 << 20])
def test_pieces_of_whole_entries_give_the_whole_frames_result(broken, rows):
    lines = _broken(_extract()) if broken else _extract()
    whole = run_ledger_checks(lines)
    pieces = list(prove._whole_entries(Source(lines).batches(rows)))
    assert len(pieces) > 1 or rows >= len(lines)
    result = run_ledger_checks_in_pieces(pieces)
    assert result.to_metadata() == whole.to_metadata()
    assert whole.success is not broken
    if broken:
        failed = {f.expectation: f for f in whole.failures}
        assert failed["expect_column_values_to_be_between"].unexpected_count >= 9
        assert len(failed["expect_column_values_to_be_between"].samples) == 5
        assert "expect_compound_columns_to_be_unique" in failed


def test_the_stored_extract_in_file_order_is_judged_in_pieces(monkeypatch):
    lines = _extract()
    monkeypatch.setattr(prove, "GATE_PIECE_LINES", 20)
    for frame in (lines, _broken(lines)):
        source = Source(frame)
        result = prove.read_for_reconciliation(DAY, source)[2]
        assert result.to_metadata() == run_ledger_checks(frame).to_metadata()
        # The duplicated line is out of file order within its piece: that extract is read whole.
        assert (source.pieces > 1, source.reads) == ((True, 0) if frame is lines else (True, 1))


def test_an_extract_out_of_order_or_empty_is_judged_whole(monkeypatch):
    lines = _extract()
    monkeypatch.setattr(prove, "GATE_PIECE_LINES", 20)
    shuffled = lines.iloc[np.random.default_rng(1).permutation(len(lines))].reset_index(drop=True)
    for frame in (shuffled, lines.iloc[0:0]):
        source = Source(frame)
        assert prove.read_for_reconciliation(DAY, source)[2].to_metadata() == run_ledger_checks(frame).to_metadata()
        assert source.reads == 1


def _returning(lines: pd.DataFrame) -> pd.DataFrame:
    """An entry of the day's lines again at a later instant of the day, in file order: the same
    journal id in two places, so in two pieces when the pieces are small."""
    lo, hi = day_bounds_us(DAY)
    inside = lines[(lines["ts_us"] >= lo) & (lines["ts_us"] < hi)]
    jid = inside["journal_id"].iat[0]
    again = lines[lines["journal_id"] == jid].assign(ts_us=int(inside["ts_us"].max()))
    both = pd.concat([lines, again], ignore_index=True)
    return both.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort", ignore_index=True)


def test_an_entry_that_comes_back_in_a_later_piece_is_judged_on_the_whole_frame(monkeypatch):
    from finance_pipeline.quality.gates import run_ledger_checks

    frame = _returning(_extract())
    monkeypatch.setattr(prove, "GATE_PIECE_LINES", 20)
    source = Source(frame)
    claims, entries, result = prove.read_for_reconciliation(DAY, source)
    whole = run_ledger_checks(frame)
    assert not whole.success and result.to_metadata() == whole.to_metadata()
    lo, hi = day_bounds_us(DAY)
    in_day = frame[(frame["ts_us"] >= lo) & (frame["ts_us"] < hi)]
    assert source.reads == 1 and entries == in_day["journal_id"].nunique()


@pytest.mark.parametrize("damage", ["no line_no", "a null line_no", "no ts_us"])
def test_an_extract_missing_what_its_order_needs_is_judged_whole(monkeypatch, damage):
    lines = _extract()
    frame = {"no line_no": lambda f: f.drop(columns=["line_no"]),
             "a null line_no": lambda f: f.astype({"line_no": "Int64"}).assign(
                 line_no=lambda g: g["line_no"].mask(g.index == 5)),
             "no ts_us": lambda f: f.drop(columns=["ts_us"])}[damage](lines)
    monkeypatch.setattr(prove, "GATE_PIECE_LINES", 20)
    source = Source(frame)
    _, _, result = prove.read_for_reconciliation(DAY, source)
    whole = run_ledger_checks(frame)
    assert not whole.success and result.to_metadata() == whole.to_metadata() and source.reads == 1
