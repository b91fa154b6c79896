"""prove_day holds one big frame at a time: the ledger frame it read from its source is let go
before the pulls are read (at a million entries, 0.9 GB that the provider file's peak carried),
and a stored extract is read a piece at a time, giving the bytes the whole frame gives."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us, recon_window_us
from finance_pipeline.export import prove
from finance_pipeline.export.prove import prove_day
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline_tests.perf.test_leaves_and_bundle import DAY, scenario_inputs


class Source:
    """A FrameSource that remembers the frames it handed out, weakly."""

    def __init__(self, frame: pd.DataFrame, on_read=None):
        self.frame, self.on_read, self.given, self.reads, self.pieces = frame, on_read, [], 0, 0

    def read(self, columns=None) -> pd.DataFrame:
        self.reads += 1
        if self.on_read:
            self.on_read()
        out = self.frame[[c for c in columns if c in self.frame.columns]] if columns else self.frame.copy()
        self.given.append(weakref.ref(out))
        return out

    def batches(self, rows: int, columns=None):
        self.pieces = 0
        cols = [c for c in columns if c in self.frame.columns] if columns else list(self.frame.columns)
        for at in range(0, len(self.frame), rows):
            self.pieces += 1
            piece = self.frame.iloc[at:at + rows][cols].reset_index(drop=True)
            self.given.append(weakref.ref(piece))
            yield piece


@pytest.mark.parametrize("in_file_order", [False, True])  # read whole, read in pieces
@pytest.mark.parametrize("with_counterparts", [False, True])
def test_the_ledger_frame_is_let_go_before_the_pulls_are_read(with_counterparts, in_file_order):
    lines, stripe, payouts = scenario_inputs(7, True)
    if in_file_order:
        lines = lines.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort", ignore_index=True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    ledger = Source(lines)
    alive_at_pull: list[bool] = []

    def ledger_alive():
        gc.collect()
        alive_at_pull.append(any(ref() is not None for ref in ledger.given))

    # No entry followed: the union with the extract is the extract itself.
    counterparts = lines.iloc[0:0].copy() if with_counterparts else None
    bundle = prove_day(DAY, ledger, Source(stripe, ledger_alive), Source(payouts), report, tol, None,
                       counterparts=counterparts)
    assert ledger.given and alive_at_pull == [False]
    # Out of file order, the pieces begun are given up and the frame is read whole.
    assert ledger.pieces > 0 and ledger.reads == (0 if in_file_order else 1)
    # The same bytes as with the frames handed over directly.
    direct = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    assert bundle.files == direct.files and bundle.statement_bytes == direct.statement_bytes


def _extract_and_counterparts(seed: int):
    """The scenario's lines as an extract returns them (the day's window, in file order), and
    entries before the window standing for the entries the reconciliation followed."""
    lines, stripe, payouts = scenario_inputs(seed, True)
    lines = lines.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort", ignore_index=True)
    lo, hi = recon_window_us(DAY, Tolerances().time_s)
    inside = (lines["ts_us"] >= lo) & (lines["ts_us"] < hi)
    before = lines[lines["ts_us"] < lo]
    followed = before[before["journal_id"].isin(before["journal_id"].drop_duplicates().iloc[-3:])]
    return lines[inside].reset_index(drop=True), followed.reset_index(drop=True), stripe, payouts


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("piece", [1, 2, 7, 64, 1 << 19])
def test_a_stored_extract_read_in_pieces_gives_the_bytes_of_the_whole_frame(monkeypatch, seed, piece):
    lines, followed, stripe, payouts = _extract_and_counterparts(seed)
    assert len(followed) and lines["provider"].notna().any()
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    monkeypatch.setattr(prove, "LEDGER_PIECE_LINES", piece)
    for counterparts in (None, followed):
        source = Source(lines)
        bundle = prove_day(DAY, source, stripe, payouts, report, tol, None, counterparts=counterparts)
        whole = prove_day(DAY, lines, stripe, payouts, report, tol, None, counterparts=counterparts)
        assert source.pieces == -(-len(lines) // piece) and source.reads == 0
        assert bundle.files == whole.files and bundle.statement_bytes == whole.statement_bytes


def test_an_extract_not_in_file_order_is_read_whole():
    lines, followed, stripe, payouts = _extract_and_counterparts(7)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    whole = prove_day(DAY, lines, stripe, payouts, report, tol, None, counterparts=followed)
    shuffled = lines.iloc[np.random.default_rng(3).permutation(len(lines))].reset_index(drop=True)
    # Entries out of order between pieces (each piece in order) and within a piece.
    swapped = pd.concat([lines.iloc[len(lines) // 2:], lines.iloc[:len(lines) // 2]], ignore_index=True)
    for frame in (shuffled, swapped):
        source = Source(frame)
        bundle = prove_day(DAY, source, stripe, payouts, report, tol, None, counterparts=followed)
        assert bundle.files == whole.files and bundle.statement_bytes == whole.statement_bytes
        assert source.reads == 1


@pytest.mark.parametrize("rows", [1, 3, 5, 1000])
def test_pieces_are_cut_between_entries(rows):
    lines, *_ = _extract_and_counterparts(11)
    pieces = list(prove._whole_entries(Source(lines).batches(rows)))
    assert pd.concat(pieces, ignore_index=True).equals(lines)
    ends = [(p["journal_id"].iat[-1], q["journal_id"].iat[0]) for p, q in zip(pieces, pieces[1:])]
    assert all(a != b for a, b in ends)


def claims_reconcile_as_the_whole(lines: pd.DataFrame, stripe, payouts, lo: int, hi: int, tol, fetch=None,
                                  pieces: int = 3):
    """Reconcile ``lines`` (as the stored extract holds them) whole, and from the claims' lines
    ``read_for_reconciliation`` keeps of it in pieces; assert both give the same report, rows,
    counterparts and ledger gate, and return the pieces' reconciliation and counterparts."""
    from finance_pipeline.ledger.extract import DTYPES
    from finance_pipeline.quality import run_ledger_checks
    from finance_pipeline.reconciliation.counterparts import reconcile_following_references
    from finance_pipeline.reconciliation.engine import CLAIM_COLUMNS

    lines = lines.astype({c: t for c, t in DTYPES.items() if c in lines.columns})
    day = pd.Timestamp(lo, unit="us").strftime("%Y-%m-%d")
    whole, whole_found = reconcile_following_references(lines, stripe, payouts, lo, hi, tol, fetch)
    source = Source(lines)
    old = prove.GATE_PIECE_LINES
    prove.GATE_PIECE_LINES = pieces
    try:
        claims, entries, gate = prove.read_for_reconciliation(day, source)
    finally:
        prove.GATE_PIECE_LINES = old
    assert gate.to_metadata() == run_ledger_checks(lines).to_metadata()
    assert list(claims.columns) == [c for c in CLAIM_COLUMNS if c in lines.columns]
    # Read in pieces (the builders' extracts are in file order), only the claims' lines kept; an
    # empty extract has no piece, so it is read whole.
    assert entries == whole.ledger_entries and source.reads == (0 if len(lines) else 1)
    assert source.pieces == -(-len(lines) // pieces)
    assert len(claims) == int((lines["provider"].notna() | lines["provider_reference"].notna()).sum())
    rec, found = reconcile_following_references(claims, stripe, payouts, lo, hi, tol, fetch,
                                                entries_in_day=entries)
    assert build_report(rec) == build_report(whole)
    pd.testing.assert_frame_equal(rec.matches, whole.matches)
    pd.testing.assert_frame_equal(rec.discrepancies, whole.discrepancies)
    pd.testing.assert_frame_equal(found, whole_found)
    return rec, found


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("piece", [5, 64, 1 << 20])
def test_a_stored_extract_is_reconciled_from_its_claims_lines(seed, piece):
    lines, followed, stripe, payouts = _extract_and_counterparts(seed)
    assert lines["provider"].isna().any() and lines["provider"].notna().any()

    def fetch(refs, later_only):  # the entries before the window, by reference
        keys = set(refs)
        hit = [(p, r) in keys for p, r in zip(followed["provider"], followed["provider_reference"])]
        return followed.iloc[0:0] if later_only else followed[hit]

    rec, found = claims_reconcile_as_the_whole(lines, stripe, payouts, *day_bounds_us(DAY), Tolerances(),
                                               fetch, pieces=piece)
    assert len(rec.discrepancies) and rec.ledger_entries > 0


def test_an_extract_not_in_file_order_is_read_whole_for_the_reconciliation():
    from finance_pipeline.quality import run_ledger_checks
    from finance_pipeline.reconciliation.counterparts import reconcile_following_references
    from finance_pipeline.reconciliation.engine import CLAIM_COLUMNS

    lines, _, stripe, payouts = _extract_and_counterparts(7)
    shuffled = lines.iloc[np.random.default_rng(5).permutation(len(lines))].reset_index(drop=True)
    source = Source(shuffled)
    claims, entries, gate = prove.read_for_reconciliation(DAY, source)
    assert source.reads == 1 and list(claims.columns) == list(CLAIM_COLUMNS)
    assert len(claims) < len(lines)  # the claims' lines only, here too
    assert gate.to_metadata() == run_ledger_checks(shuffled).to_metadata()
    lo, hi = day_bounds_us(DAY)
    rec, _ = reconcile_following_references(claims, stripe, payouts, lo, hi, Tolerances(), None,
                                            entries_in_day=entries)
    assert build_report(rec) == build_report(reconcile(lines, stripe, payouts, lo, hi, Tolerances()))


@pytest.mark.parametrize("records", [3, 1 << 18])
def test_a_stored_stripe_pull_gives_its_record_texts_in_pieces(monkeypatch, records):
    lines, followed, stripe, payouts = _extract_and_counterparts(11)
    stripe = stripe.sort_values("id", ignore_index=True)  # as the pull stores it
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    whole = prove_day(DAY, lines, stripe, payouts, report, tol, None, counterparts=followed)
    monkeypatch.setattr(prove, "PULL_PIECE_RECORDS", records)
    source = Source(stripe)
    bundle = prove_day(DAY, Source(lines), source, Source(payouts), report, tol, None, counterparts=followed)
    assert bundle.files == whole.files and bundle.statement_bytes == whole.statement_bytes
    # Its keys read whole, its texts in pieces; out of order, it is read whole as before.
    assert source.reads == 1 and source.pieces == -(-len(stripe) // records)
    shuffled = Source(stripe.iloc[::-1].reset_index(drop=True))
    again = prove_day(DAY, Source(lines), shuffled, Source(payouts), report, tol, None, counterparts=followed)
    assert again.files == whole.files and shuffled.reads == 2
