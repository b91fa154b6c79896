"""Pairs across a day boundary (reconciliation-report.md, rules at the edges): reported once, on
the day of the ledger entry; a next-day reversal of a failed payout agrees with the provider.

Each day reads what its pulls and extract would read (the day within the tolerance, and the
rest of each claim of it), and follows its open references into the whole ledger as the
Dagster step does; ``follow=False`` is the day alone, as before."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from finance_pipeline.domain.timeutil import day_bounds_us, recon_window_us
from finance_pipeline.reconciliation import build_report
from finance_pipeline.reconciliation.counterparts import reconcile_following_references
from finance_pipeline.reconciliation.engine import Tolerances, reconcile
from finance_pipeline_tests.export.test_prove import claims_reconcile_as_the_whole
from finance_pipeline_tests.reconciliation.builders import (
    charge_entry, charge_txn, frames, payout_entry, settlement,
)

DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")
D1_LO_S = day_bounds_us(DAYS[1])[0] // 1_000_000
D2_LO_S = day_bounds_us(DAYS[2])[0] // 1_000_000
TOL = Tolerances(time_s=3600)


def _ts_of(entry: dict) -> int:
    from finance_pipeline.domain.timeutil import parse_ts_us
    return parse_ts_us(entry["ts"])


def _day(day: str, entries: list[dict], txns: list[dict], payouts: list[dict], follow: bool = True):
    """What ``day`` reads (the extract and both pulls over its window) and its reconciliation."""
    from finance_pipeline.domain.timeutil import parse_ts_us

    w_lo, w_hi = recon_window_us(day, TOL.time_s)
    inside = [e for e in entries if w_lo <= _ts_of(e) < w_hi]
    # The extract also reads the rest of each claim of the window: later entries, and earlier
    # ones that a reversal of the window undoes.
    claims = {(e["provider"], e["provider_reference"]) for e in inside if e["provider_reference"]}
    reversing = {(e["provider"], e["provider_reference"]) for e in inside if e["kind"] == "reversal"}
    inside += [e for e in entries if follow and (e["provider"], e["provider_reference"]) in claims
               and (_ts_of(e) >= w_hi or (_ts_of(e) < w_lo and (e["provider"], e["provider_reference"]) in reversing))]
    inside.sort(key=lambda e: (_ts_of(e), e["journal_id"]))
    seen_txns = [t for t in txns if w_lo <= t["created"] * 1_000_000 < w_hi]
    seen_payouts = [p for p in payouts if w_lo <= parse_ts_us(p["settled_at"]) < w_hi]
    lines, stripe, pays = frames(inside, seen_txns, seen_payouts)

    def fetch(refs, later_only):
        wanted = set(refs)
        outside = [e for e in entries if (_ts_of(e) >= w_hi if later_only else not (w_lo <= _ts_of(e) < w_hi))
                   and (e["provider"], e["provider_reference"]) in wanted]
        return frames(outside, [], [])[0]

    lo, hi = day_bounds_us(day)
    rec, found = reconcile_following_references(lines, stripe, pays, lo, hi, TOL, fetch if follow else None)
    # A stored extract is reconciled from its claims' lines: the same, every day here.
    claims_reconcile_as_the_whole(lines, stripe, pays, lo, hi, TOL, fetch if follow else None)
    return rec, found, (lines, stripe, pays)


def _rows(rec) -> list[tuple]:
    return sorted([("MATCHED", m.journal_id, m.provider_id) for m in rec.matches.itertuples()]
                  + [(d["class"], d.journal_id, d.provider_id) for _, d in rec.discrepancies.iterrows()])


def _every_record_once(entries, txns, payouts) -> dict[str, list[tuple]]:
    by_day = {day: _rows(_day(day, entries, txns, payouts)[0]) for day in DAYS}
    ids = Counter(r[2] for rows in by_day.values() for r in rows if r[2])
    jids = Counter(r[1] for rows in by_day.values() for r in rows if r[1])
    assert all(n == 1 for n in ids.values()), by_day
    assert all(n == 1 for n in jids.values()), by_day
    return by_day


def test_a_payout_booked_before_midnight_and_settled_after_is_reported_once_on_the_booking_day():
    # Booked 22:50 on day 1, settled by the provider 00:30 on day 2.
    entries = [payout_entry("pay_x", D2_LO_S - 70 * 60, 25_000)]
    payouts = [settlement("pay_x", D2_LO_S + 30 * 60, 25_000)]
    by_day = _every_record_once(entries, [], payouts)
    assert by_day[DAYS[1]] == [("TIMING_WINDOW", "je-pay_x", "stl_pay_x")]
    # Day 2 sees the settlement; without following its reference it would call it unbooked.
    assert by_day[DAYS[2]] == []
    assert _rows(_day(DAYS[2], entries, [], payouts, follow=False)[0]) == [("LEDGER_MISSING", None, "stl_pay_x")]


def test_a_charge_before_midnight_booked_after_it_is_reported_once_on_the_booking_day():
    # Stripe's charge at 23:10 on day 1, booked at 01:30 on day 2 (beyond the tolerance of day 1).
    entries = [charge_entry("ch_x", D2_LO_S + 90 * 60, 5_000)]
    txns = [charge_txn("txn_x", "ch_x", D2_LO_S - 50 * 60, 5_000)]
    by_day = _every_record_once(entries, txns, [])
    assert by_day[DAYS[1]] == []
    assert by_day[DAYS[2]] == [("TIMING_WINDOW", "je-ch_x", "txn_x")]
    assert _rows(_day(DAYS[1], entries, txns, [], follow=False)[0]) == [("LEDGER_MISSING", None, "txn_x")]
    # Following the old message (post the "missing" entry) now shows as what it is.
    twice = entries + [charge_entry("ch_x", D2_LO_S - 40 * 60, 5_000, jid="je-ch_x-again")]
    rows = _rows(_day(DAYS[1], twice, txns, [])[0]) + _rows(_day(DAYS[2], twice, txns, [])[0])
    assert [r[0] for r in rows] == ["DUPLICATE_LEDGER"]


def test_a_next_day_reversal_of_a_failed_payout_reconciles_clean_on_both_days():
    # Booked settled on day 1 at 18:00; the provider failed it; the ledger reversed it on day 2.
    booked = payout_entry("pay_f", D2_LO_S - 6 * 3600, 40_000)
    reversal = payout_entry("pay_f", D2_LO_S + 9 * 3600, 40_000, kind="reversal", reverses="je-pay_f",
                            jid="je-pay_f-rev")
    payouts = [settlement("pay_f", D2_LO_S - 6 * 3600 + 600, 40_000, status="failed")]
    entries = [booked, reversal]
    day1, _, (lines, _, _) = _day(DAYS[1], entries, [], payouts)
    assert day1.discrepancies.empty and "je-pay_f-rev" in set(lines["journal_id"])
    assert _rows(day1) == [("MATCHED", "je-pay_f", "stl_pay_f")]
    day2, _, _ = _day(DAYS[2], entries, [], payouts)
    assert _rows(day2) == []
    # What the day alone would have said: "ledger books it settled".
    assert [d["class"] for _, d in _day(DAYS[1], entries, [], payouts, follow=False)[0].discrepancies.iterrows()] \
        == ["STATUS_MISMATCH"]


def test_a_replay_over_the_followed_entries_gives_the_same_report():
    entries = [charge_entry("ch_x", D2_LO_S + 90 * 60, 5_000)]
    txns = [charge_txn("txn_x", "ch_x", D2_LO_S - 50 * 60, 5_000)]
    rec, found, (lines, stripe, pays) = _day(DAYS[1], entries, txns, [])
    assert list(found["journal_id"].unique()) == ["je-ch_x"]
    lo, hi = day_bounds_us(DAYS[1])
    both = pd.concat([lines, found], ignore_index=True)
    assert build_report(reconcile(both, stripe, pays, lo, hi, TOL)) == build_report(rec)


def test_nothing_is_followed_on_a_day_without_open_references():
    entries = [charge_entry("ch_a", D1_LO_S + 3600, 1_000)]
    txns = [charge_txn("txn_a", "ch_a", D1_LO_S + 3600, 1_000)]
    asked = []
    lines, stripe, pays = frames(entries, txns, [])
    lo, hi = day_bounds_us(DAYS[1])
    rec, found = reconcile_following_references(lines, stripe, pays, lo, hi, TOL,
                                                lambda refs, later: asked.append(refs) or lines.iloc[0:0])
    assert asked == [] and found.empty and rec.discrepancies.empty


def _stripe_payout(po: str, txn: str, at_s: int, amount: int, category: str = "payout") -> dict:
    rec = charge_txn(txn, po, at_s, amount, category=category)
    rec["type"] = {"payout": "payout", "payout_reversal": "payout_failure"}[category]
    return rec


def _bank_booking(po: str, at_s: int, amount: int, kind: str = "standard", jid: str | None = None) -> dict:
    from finance_pipeline.domain.timeutil import format_ts_us

    debit, credit = ("bank_usd", "stripe_clearing_usd") if kind == "standard" else ("stripe_clearing_usd", "bank_usd")
    return {"journal_id": jid or f"je-{po}", "ts": format_ts_us(at_s * 1_000_000), "kind": kind, "memo": "payout",
            "batch_id": None, "provider": "stripe", "provider_reference": po,
            "reverses": f"je-{po}" if kind == "reversal" else None, "posted_by": "t", "reviewed_by": None,
            "lines": [{"account_id": debit, "direction": "debit", "amount_minor": amount, "currency": "USD"},
                      {"account_id": credit, "direction": "credit", "amount_minor": amount, "currency": "USD"}]}


def test_a_stripe_payout_returned_days_later_is_reported_on_the_return_day_when_still_booked():
    # Booked paid on day 1; Stripe returns it on day 2 morning; nobody reverses the booking.
    txns = [_stripe_payout("po_f", "txn_po_f", D1_LO_S + 10 * 3600, -9_000),
            _stripe_payout("po_f", "txn_po_ff", D2_LO_S + 9 * 3600, 9_000, category="payout_reversal")]
    entries = [_bank_booking("po_f", D1_LO_S + 10 * 3600, 9_000)]
    by_day = {day: _rows(_day(day, entries, txns, [])[0]) for day in DAYS}
    # Each record once; the booking is named again by the return's row (it is that row's counterpart).
    assert by_day[DAYS[0]] == [] and by_day[DAYS[1]] == [("MATCHED", "je-po_f", "txn_po_f")]
    assert by_day[DAYS[2]] == [("STATUS_MISMATCH", "je-po_f", "txn_po_ff")]


def test_a_stripe_payout_returned_and_reversed_the_next_day_reconciles_clean_on_both_days():
    from finance_pipeline.providers.stripe_payouts import payouts_frame

    txns = [_stripe_payout("po_f", "txn_po_f", D1_LO_S + 10 * 3600, -9_000),
            _stripe_payout("po_f", "txn_po_ff", D2_LO_S + 9 * 3600, 9_000, category="payout_reversal")]
    entries = [_bank_booking("po_f", D1_LO_S + 10 * 3600, 9_000),
               _bank_booking("po_f", D2_LO_S + 9 * 3600 + 60, 9_000, kind="reversal", jid="je-po_f-rev")]
    failed = payouts_frame([{"id": "po_f", "object": "payout", "amount": 9_000, "arrival_date": D2_LO_S,
                             "created": D1_LO_S + 10 * 3600, "currency": "usd", "status": "failed",
                             "balance_transaction": "txn_po_f"}])
    lo, hi = day_bounds_us(DAYS[1])
    day1, _, (lines, stripe, pays) = _day(DAYS[1], entries, txns, [])
    day1 = reconcile(lines, stripe, pays, lo, hi, TOL, failed)  # the payout object says failed
    assert _rows(day1) == [("MATCHED", "je-po_f", "txn_po_f")]
    assert _rows(_day(DAYS[2], entries, txns, [])[0]) == [("MATCHED", "je-po_f", "txn_po_ff")]


def test_a_correction_posted_after_its_claims_day_is_reported_on_its_own_day():
    from finance_pipeline.domain.timeutil import format_ts_us

    entries = [charge_entry("ch_x", D1_LO_S + 10 * 3600, 5_000)]
    txns = [charge_txn("txn_x", "ch_x", D1_LO_S + 10 * 3600, 5_000)]
    adjustment = {**charge_entry("ch_x", D2_LO_S + 10 * 3600, 100, jid="je-ch_x-adj"), "kind": "adjustment",
                  "reviewed_by": "lead"}
    adjustment["ts"] = format_ts_us((D2_LO_S + 10 * 3600) * 1_000_000)
    # Day 1 was reconciled (and published) before the adjustment existed.
    assert _rows(_day(DAYS[1], entries, txns, [])[0]) == [("MATCHED", "je-ch_x", "txn_x")]
    # Day 2 does not fold it back into day 1's claim, where no report would ever show it.
    rows = _rows(_day(DAYS[2], entries + [adjustment], txns, [])[0])
    assert [(c, j) for c, j, _ in rows] == [("PROVIDER_MISSING", "je-ch_x-adj")]
