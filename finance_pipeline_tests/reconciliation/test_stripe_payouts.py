"""Stripe payouts from /v1/payouts (issue 17): booked on the day they arrive, failed and reversed,
pulled through the SDK from the sandbox, and replayed from the published records."""

from __future__ import annotations

import pandas as pd
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us, recon_window_us, seconds_window
from finance_pipeline.columnar.files import provider_records_file
from finance_pipeline.export.bundle import payout_record_frames
from finance_pipeline.export.replay import provider_frames
from finance_pipeline.providers.stripe_payouts import payouts_frame, pull_day_payouts, with_payout_transactions
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.reconciliation.counterparts import reconcile_following_references
from finance_pipeline.reconciliation.engine import Tolerances, reconcile
from finance_pipeline_tests.reconciliation.builders import charge_txn, frames

D1, D2 = "2026-11-01", "2026-11-02"
D1_LO_S = day_bounds_us(D1)[0] // 1_000_000
D2_LO_S = day_bounds_us(D2)[0] // 1_000_000


def _bank_entry(po: str, at_s: int, amount: int, kind: str = "standard", reverses: str | None = None,
                jid: str | None = None) -> dict:
    from finance_pipeline.domain.timeutil import format_ts_us

    debit, credit = ("bank_usd", "stripe_clearing_usd") if kind == "standard" else ("stripe_clearing_usd", "bank_usd")
    return {"journal_id": jid or f"je-{po}", "ts": format_ts_us(at_s * 1_000_000), "kind": kind,
            "memo": f"Stripe payout {po}", "batch_id": None, "provider": "stripe", "provider_reference": po,
            "reverses": reverses, "posted_by": "system:import", "reviewed_by": None,
            "lines": [{"account_id": debit, "direction": "debit", "amount_minor": amount, "currency": "USD"},
                      {"account_id": credit, "direction": "credit", "amount_minor": amount, "currency": "USD"}]}


def _payout(po: str, txn: str, created: int, arrival: int, amount: int, status: str = "paid") -> dict:
    return {"id": po, "object": "payout", "amount": amount, "arrival_date": arrival, "created": created,
            "currency": "usd", "status": status, "balance_transaction": txn, "method": "standard",
            "type": "bank_account", "automatic": True, "livemode": False, "metadata": {}}


def test_a_payout_booked_on_its_arrival_day_is_one_match_on_that_day():
    txn = charge_txn("txn_po_a", "po_a", D1_LO_S + 10 * 3600, -25_000, category="payout")
    payout = _payout("po_a", "txn_po_a", D1_LO_S + 10 * 3600, D2_LO_S, 25_000)
    entry = _bank_entry("po_a", D2_LO_S + 9 * 3600, 25_000)
    lines, stripe, _ = frames([entry], [txn], [])
    empty = frames([], [], [])[2]
    day_payouts = payouts_frame([payout], {"txn_po_a": txn})
    tol = Tolerances()

    # Day 2 reads the payout (it arrives that day) and the balance transaction fetched for it.
    lo, hi = day_bounds_us(D2)
    day2_stripe = with_payout_transactions(balance_transactions_frame([]), day_payouts)
    assert day2_stripe["id"].tolist() == ["txn_po_a"]
    rec = reconcile(lines, day2_stripe, empty, lo, hi, tol, day_payouts)
    assert rec.discrepancies.empty and rec.matches["journal_id"].tolist() == ["je-po_a"]
    # Without the payout object day 2 could not tell the record arrives on it: the record's own
    # day would report the pair.
    alone = reconcile(lines, day2_stripe, empty, lo, hi, tol)
    assert alone.matches.empty and alone.discrepancies.empty

    # Day 1 holds the balance transaction; it follows the reference to day 2's booking.
    lo, hi = day_bounds_us(D1)
    rec, found = reconcile_following_references(
        lines.iloc[0:0], stripe, empty, lo, hi, tol, lambda refs, later: lines if ("stripe", "po_a") in refs else lines.iloc[0:0],
        stripe_payouts=payouts_frame([payout]))
    assert rec.discrepancies.empty and rec.matches.empty and found["journal_id"].unique().tolist() == ["je-po_a"]


def test_a_failed_payout_the_ledger_reversed_matches_both_records():
    at = D1_LO_S + 8 * 3600
    txns = [charge_txn("txn_po_f", "po_f", at, -9_000, category="payout"),
            charge_txn("txn_po_ff", "po_f", at + 3600, 9_000, category="payout_reversal")]
    txns[1]["type"] = "payout_failure"
    entries = [_bank_entry("po_f", at, 9_000),
               _bank_entry("po_f", at + 4000, 9_000, kind="reversal", reverses="je-po_f", jid="je-po_f-rev")]
    lines, stripe, payouts = frames(entries, txns, [])
    lo, hi = day_bounds_us(D1)
    rec = reconcile(lines, stripe, payouts, lo, hi, Tolerances(),
                    payouts_frame([_payout("po_f", "txn_po_f", at, at + 86400, 9_000, status="failed")]))
    assert rec.discrepancies.empty
    assert sorted(rec.matches["provider_id"]) == ["txn_po_f", "txn_po_ff"]
    # Standing (not reversed), the booking is a duplicate claim on two records: not netted.
    rec = reconcile(frames(entries[:1], txns, [])[0], stripe, payouts, lo, hi, Tolerances())
    assert rec.discrepancies["class"].tolist() == ["DUPLICATE_PROVIDER"]


def test_the_day_pulls_payouts_created_in_its_window_and_arriving_on_it(stripe_sandbox):  # noqa: F811
    early = D2_LO_S - 3 * 86400
    stripe_sandbox.add_objects(
        balance_transactions=[charge_txn("txn_early", "po_early", early, -700, category="payout"),
                              charge_txn("txn_today", "po_today", D2_LO_S + 600, -800, category="payout"),
                              charge_txn("txn_later", "po_later", D2_LO_S + 5 * 86400, -900, category="payout")],
        payouts=[{**_payout("po_early", "txn_early", early, D2_LO_S, 700)},
                 {**_payout("po_today", "txn_today", D2_LO_S + 600, D2_LO_S + 86400 + 600, 800)},
                 {**_payout("po_later", "txn_later", D2_LO_S + 5 * 86400, D2_LO_S + 6 * 86400, 900)}],
    )
    window = seconds_window(*recon_window_us(D2, 3600))
    day = seconds_window(*day_bounds_us(D2))
    frame = pull_day_payouts(stripe_sandbox.api_key, stripe_sandbox.url, window, day)
    assert frame["id"].tolist() == ["po_early", "po_today"]
    assert frame["arrival_date"].tolist() == [D2_LO_S, D2_LO_S + 86400 + 600]
    # Only the payout created before the window needs its balance transaction fetched.
    assert frame["balance_transaction_record"].notna().tolist() == [True, False]
    stripe = balance_transactions_frame([charge_txn("txn_today", "po_today", D2_LO_S + 600, -800, category="payout")])
    both = with_payout_transactions(stripe, frame)
    assert both["id"].tolist() == ["txn_early", "txn_today"]

    # Published: the fetched transaction is a provider record, the payout objects are context
    # (they decide how the records compare); the replay rebuilds the same frames from both.
    from finance_pipeline.export.bundle import payout_objects

    data, count = provider_records_file(stripe, frames([], [], [])[2], *payout_record_frames(frame, stripe["id"]))
    assert count == 2
    import json
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert [r["id"] for r in records] == ["txn_early", "txn_today"]
    objects_published = payout_objects(frame)
    assert [p["id"] for p in objects_published] == ["po_early", "po_today"]
    txns, payouts, objects = provider_frames(records, objects_published)
    assert txns["id"].tolist() == ["txn_early", "txn_today"] and payouts.empty
    assert objects.drop(columns=["balance_transaction_record"]).equals(
        frame.drop(columns=["balance_transaction_record"]))
    pd.testing.assert_frame_equal(txns, both)


def test_a_payout_stripe_sends_malformed_is_refused_by_name():
    import pytest

    good = _payout("po_ok", "txn_ok", D1_LO_S, D2_LO_S, 100)
    for member, value, message in (("currency", "zz", "'currency' must be an ISO 4217 code"),
                                   ("amount", "100", "'amount' must be an integer"),
                                   ("balance_transaction", "ch_1", "'balance_transaction' must be txn_"),
                                   ("id", "pay_1", "'id' must be po_")):
        with pytest.raises(ValueError, match=message):
            payouts_frame([{**good, member: value}])
    with pytest.raises(ValueError, match="appears twice"):
        payouts_frame([good, good])


def test_the_fetched_transactions_not_pulled_are_the_same_whatever_the_pulled_ids_come_as():
    """fetched_not_pulled compares in Arrow; a set, an Arrow string column and an object column
    of the pulled ids give the same rows (those whose transaction the pull does not hold)."""
    from finance_pipeline.providers.stripe_payouts import fetched_not_pulled

    txns = {t: charge_txn(t, po, D1_LO_S + 3600, -100, category="payout")
            for t, po in (("txn_a", "po_a"), ("txn_b", "po_b"), ("txn_c", "po_c"))}
    day_payouts = payouts_frame([_payout(po, t, D1_LO_S, D2_LO_S, 100) for t, po in
                                 (("txn_a", "po_a"), ("txn_b", "po_b"), ("txn_c", "po_c"), ("txn_d", "po_d"))], txns)
    pulled = ["txn_b", "txn_x"]
    for ids in (set(pulled), pd.Series(pulled, dtype="str"), pd.Series(pulled, dtype=object),
                pd.Series(pulled, dtype="string[pyarrow]")):
        got = fetched_not_pulled(day_payouts, ids)
        assert got["balance_transaction"].tolist() == ["txn_a", "txn_c"], type(ids)


def test_the_pull_is_not_turned_into_python_values_to_find_the_payout_transactions(monkeypatch):
    """The whole day's pulled ids are the members: compared in Arrow, never by pandas' isin
    (which builds a Python scalar per member: seconds at a million records)."""
    from finance_pipeline.providers.stripe_payouts import fetched_not_pulled

    txns = {"txn_a": charge_txn("txn_a", "po_a", D1_LO_S + 3600, -100, category="payout")}
    day_payouts = payouts_frame([_payout("po_a", "txn_a", D1_LO_S, D2_LO_S, 100)], txns)
    monkeypatch.setattr(pd.Series, "isin", lambda *a, **k: pytest.fail("pandas' isin ran on the pull"))
    got = fetched_not_pulled(day_payouts, pd.Series(["txn_b", "txn_c"], dtype="str"))
    assert got["balance_transaction"].tolist() == ["txn_a"]
