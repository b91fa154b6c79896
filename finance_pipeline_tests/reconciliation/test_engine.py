import random
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.demo.scenario import DISCREPANCY_CLASSES, build_scenario
from finance_pipeline.domain.timeutil import day_bounds_us, parse_ts_us
from finance_pipeline.reconciliation import CLASSES, Tolerances, build_report, reconcile, report_bytes

from .builders import (
    HI_S, LO, LO_S, HI, charge_entry, charge_txn, clean_day, frames, payout_entry, pending_payout,
    settlement,
)


def run(entries, txns, payouts, tol=Tolerances(), lo=LO, hi=HI):
    rec = reconcile(*frames(entries, txns, payouts), lo, hi, tol)
    return rec, build_report(rec)


def classes_of(report):
    return sorted(d["class"] for d in report["discrepancies"])


def test_spec_lists_the_same_classes_as_the_demo():
    assert set(CLASSES) == set(DISCREPANCY_CLASSES)


def test_clean_day_has_zero_discrepancies_and_every_class_counted():
    entries, txns, payouts = clean_day()
    rec, report = run(entries, txns, payouts)
    assert report["discrepancies"] == []
    assert report["summary"]["discrepancies"] == {c: 0 for c in CLASSES}
    assert report["summary"]["matched"] == 6 + 2 + 2  # charges, refund + bank payout, creator payouts
    assert report["summary"]["ledger_entries"] == len(entries)
    assert report["summary"]["provider_records"] == {"stripe": len(txns), "payout_sandbox": 2}
    assert report["interval"] == {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"}


def _case(cls):
    """A clean day plus one deliberate fault of ``cls``; returns inputs and the expected ids."""
    entries, txns, payouts = clean_day()
    at = LO_S + 50000
    if cls == "LEDGER_MISSING":
        txns.append(charge_txn("txn_x", "ch_x", at, 4200))
        return entries, txns, payouts, ("txn_x", None)
    if cls == "PROVIDER_MISSING":
        entries.append(charge_entry("ch_x", at, 4200))
        return entries, txns, payouts, (None, "je-ch_x")
    if cls == "AMOUNT_MISMATCH":
        entries.append(charge_entry("ch_x", at, 4300, fee=fee_for(4200)))
        txns.append(charge_txn("txn_x", "ch_x", at, 4200))
        return entries, txns, payouts, ("txn_x", "je-ch_x")
    if cls == "FEE_MISMATCH":
        entries.append(charge_entry("ch_x", at, 4200, fee=fee_for(4200) - 7))
        txns.append(charge_txn("txn_x", "ch_x", at, 4200))
        return entries, txns, payouts, ("txn_x", "je-ch_x")
    if cls == "CURRENCY_MISMATCH":
        entries.append(charge_entry("ch_x", at, 4200, currency="EUR"))
        txns.append(charge_txn("txn_x", "ch_x", at, 4200))
        return entries, txns, payouts, ("txn_x", "je-ch_x")
    if cls == "DUPLICATE_PROVIDER":
        entries.append(charge_entry("ch_x", at, 4200))
        txns += [charge_txn("txn_x1", "ch_x", at, 4200), charge_txn("txn_x2", "ch_x", at + 5, 4200)]
        return entries, txns, payouts, ("txn_x1", "je-ch_x")
    if cls == "DUPLICATE_LEDGER":
        entries += [charge_entry("ch_x", at, 4200), charge_entry("ch_x", at + 60, 4200, jid="je-ch_x-dup")]
        txns.append(charge_txn("txn_x", "ch_x", at, 4200))
        return entries, txns, payouts, ("txn_x", "je-ch_x")
    if cls == "STATUS_MISMATCH":
        entries.append(payout_entry("pay_x", at, 150_000))
        payouts.append(pending_payout("pay_x", at - 900, 150_000))
        return entries, txns, payouts, ("pay_x", "je-pay_x")
    if cls == "TIMING_WINDOW":
        entries.append(charge_entry("ch_x", HI_S - 40, 4200))
        txns.append(charge_txn("txn_x", "ch_x", HI_S + 30, 4200))
        return entries, txns, payouts, ("txn_x", "je-ch_x")
    raise AssertionError(cls)


def fee_for(gross):
    from .builders import fee_of

    return fee_of(gross)


@pytest.mark.parametrize("cls", CLASSES)
def test_each_fault_produces_its_class_and_nothing_else(cls):
    entries, txns, payouts, (provider_id, journal_id) = _case(cls)
    _, report = run(entries, txns, payouts)
    assert classes_of(report) == [cls], report["discrepancies"]
    d = report["discrepancies"][0]
    assert (d["provider_id"], d["journal_id"]) == (provider_id, journal_id)
    assert d["detail"] and "\n" not in d["detail"]
    assert report["summary"]["discrepancies"][cls] == 1
    assert sum(report["summary"]["discrepancies"].values()) == 1


def test_fee_mismatch_reports_the_fees_and_amount_mismatch_the_gross():
    *inputs, _ = _case("FEE_MISMATCH")
    _, report = run(*inputs)
    d = report["discrepancies"][0]
    assert (d["provider_amount_minor"] - d["ledger_amount_minor"]) == 7
    *inputs, _ = _case("AMOUNT_MISMATCH")
    _, report = run(*inputs)
    d = report["discrepancies"][0]
    assert (d["provider_amount_minor"], d["ledger_amount_minor"]) == (4200, 4300)


def test_per_class_amount_tolerance():
    *inputs, _ = _case("FEE_MISMATCH")
    _, report = run(*inputs, tol=Tolerances(per_class_minor={"FEE_MISMATCH": 7}))
    assert report["discrepancies"] == []
    _, report = run(*inputs, tol=Tolerances(per_class_minor={"FEE_MISMATCH": 6}))
    assert classes_of(report) == ["FEE_MISMATCH"]


def test_boundary_pair_is_reported_once_on_the_ledger_entrys_day():
    entries, txns, payouts, _ = _case("TIMING_WINDOW")
    next_lo, next_hi = day_bounds_us("2026-11-03")
    _, next_day = run(entries, txns, payouts, lo=next_lo, hi=next_hi)
    assert next_day["discrepancies"] == []  # the record is in that day, but anchored on the 2nd


def test_a_counterpart_beyond_the_tolerance_is_missing_not_timing():
    entries, txns, payouts = clean_day()
    entries.append(charge_entry("ch_x", HI_S - 40, 4200))
    txns.append(charge_txn("txn_x", "ch_x", HI_S + 30, 4200))
    _, report = run(entries, txns, payouts, tol=Tolerances(time_s=60))
    assert classes_of(report) == ["TIMING_WINDOW"]  # 70 s apart, still on the other side
    txns[-1] = charge_txn("txn_x", "ch_x", HI_S + 7200, 4200)
    # The pull window would not include it at all; the engine reports the entry missing.
    lines, stripe, pay = frames(entries, txns[:-1], payouts)
    rep = build_report(reconcile(lines, stripe, pay, LO, HI, Tolerances(time_s=60)))
    assert classes_of(rep) == ["PROVIDER_MISSING"]


def test_a_wrong_reference_is_never_repaired_by_amount():
    entries, txns, payouts = clean_day()
    entries.append(charge_entry("ch_typo", LO_S + 50000, 4200))
    txns.append(charge_txn("txn_x", "ch_x", LO_S + 50000, 4200))
    _, report = run(entries, txns, payouts)
    assert classes_of(report) == ["LEDGER_MISSING", "PROVIDER_MISSING"]


def test_one_charge_booked_by_its_source_and_by_its_txn_id_is_a_duplicate_ledger():
    """Both ids name the same record (reconciliation-report.md): two bookings of it are
    DUPLICATE_LEDGER, not one match and a false PROVIDER_MISSING."""
    entries, txns, payouts = clean_day()
    entries.append(charge_entry("ch_twice", LO_S + 50000, 4200, jid="je-by-source"))
    entries.append(charge_entry("ch_twice", LO_S + 50060, 4200, ref="txn_twice", jid="je-by-txn"))
    txns.append(charge_txn("txn_twice", "ch_twice", LO_S + 50000, 4200))
    _, report = run(entries, txns, payouts)
    assert classes_of(report) == ["DUPLICATE_LEDGER"]
    [row] = report["discrepancies"]
    assert row["provider_id"] == "txn_twice" and "je-by-source, je-by-txn" in row["detail"]


def test_records_sharing_a_source_each_keep_their_own_booking():
    """A payout and its failure share the source po_...: the payout's booking by source and the
    failure's by its txn id each match their own record (the source claim yields the failure)."""
    entries, txns, payouts = clean_day()
    entries.append(charge_entry("ch_shared", LO_S + 50000, 4200))
    refund = charge_txn("txn_shared_refund", "ch_shared", LO_S + 51000, -1000, fee=0, category="refund")
    entries.append(charge_entry("ch_shared", LO_S + 51000, -1000, fee=0, ref="txn_shared_refund", jid="je-refund"))
    entries[-1]["lines"] = [
        {"account_id": "revenue_usd", "direction": "debit", "amount_minor": 1000, "currency": "USD"},
        {"account_id": "stripe_clearing_usd", "direction": "credit", "amount_minor": 1000, "currency": "USD"}]
    txns.extend([charge_txn("txn_shared", "ch_shared", LO_S + 50000, 4200), refund])
    _, report = run(entries, txns, payouts)
    assert report["discrepancies"] == [], report["discrepancies"]


def test_entries_without_reference_match_by_amount_and_ambiguity_is_a_duplicate():
    entries, txns, payouts = clean_day()
    entries.append(charge_entry("ch_x", LO_S + 50000, 4200, ref=None, jid="je-noref"))
    txns.append(charge_txn("txn_x", "ch_x", LO_S + 50100, 4200))
    rec, report = run(entries, txns, payouts)
    assert report["discrepancies"] == []
    assert "amount" in set(rec.matches["matched_by"])
    txns.append(charge_txn("txn_y", "ch_y", LO_S + 50200, 4200))
    _, report = run(entries, txns, payouts)
    assert classes_of(report) == ["DUPLICATE_PROVIDER"]


def test_reversed_payout_that_the_provider_settled_is_a_status_mismatch():
    entries, txns, payouts = clean_day()
    at = LO_S + 50000
    entries += [payout_entry("pay_r", at, 9000),
                payout_entry("pay_r", at + 600, 9000, kind="reversal", reverses="je-pay_r", jid="je-pay_r-rev")]
    payouts.append(settlement("pay_r", at, 9000))
    _, report = run(entries, txns, payouts)
    assert classes_of(report) == ["STATUS_MISMATCH"]
    payouts[-1] = settlement("pay_r", at, 9000, status="failed")
    _, report = run(entries, txns, payouts)
    assert report["discrepancies"] == []


def test_pending_payout_nobody_booked_is_consistent():
    entries, txns, payouts = clean_day()
    payouts.append(pending_payout("pay_p", LO_S + 50000, 1234))
    _, report = run(entries, txns, payouts)
    assert report["discrepancies"] == []


def test_demo_scenario_injections_are_found_exactly():
    sc = build_scenario(date(2026, 11, 1), 3, 7, inject=1)
    from finance_pipeline.reconciliation.inputs import lines_frame
    from finance_pipeline.providers.payout_pull import settlements_frame
    from finance_pipeline.providers.stripe_pull import balance_transactions_frame

    roles = {a["account_id"]: a["role"] for a in sc.accounts}
    payout_records = []
    for p in sc.creator_payouts:
        if p["status"] == "pending":
            payout_records.append(pending_payout(p["payout_id"], parse_ts_us(p["created_at"]) // 10**6,
                                                 p["amount_minor"], p["currency"]))
        else:
            payout_records.append(settlement(p["payout_id"], parse_ts_us(p["settled_at"]) // 10**6,
                                             p["amount_minor"], p["currency"]))
    inputs = (lines_frame(sc.entries, roles), balance_transactions_frame(sc.stripe_balance_transactions),
              settlements_frame(payout_records))
    found = []
    for day in sc.day_keys:
        report = build_report(reconcile(*inputs, *day_bounds_us(day)))
        found += [(d["class"], day) for d in report["discrepancies"]]
    assert sorted(found) == sorted((i.cls, i.day) for i in sc.injections)


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False), st.sampled_from(CLASSES))
def test_shuffling_inputs_leaves_the_report_bytes_unchanged(rnd: random.Random, cls):
    entries, txns, payouts, _ = _case(cls)
    baseline = report_bytes(run(entries, txns, payouts)[1])
    for seq in (entries, txns, payouts):
        rnd.shuffle(seq)
    assert report_bytes(run(entries, txns, payouts)[1]) == baseline


def _adjust(ref, at_s, lines, kind="adjustment", reverses=None, jid=None):
    from finance_pipeline.domain.timeutil import format_ts_us

    return {
        "journal_id": jid or f"adj-{ref}-{len(lines)}-{kind}", "ts": format_ts_us(at_s * 10**6), "kind": kind,
        "memo": "correction", "batch_id": None, "provider": "stripe" if not ref.startswith("pay") else "payout_sandbox",
        "provider_reference": ref, "reverses": reverses, "posted_by": "ops:ana",
        "reviewed_by": "fin:lena" if kind == "adjustment" else None,
        "lines": [{"account_id": a, "direction": d, "amount_minor": m, "currency": c} for a, d, m, c in lines],
    }


def _reverse(entry, jid):
    rev = dict(entry, journal_id=jid, kind="reversal", reverses=entry["journal_id"])
    rev["lines"] = [dict(l, direction="credit" if l["direction"] == "debit" else "debit") for l in entry["lines"]]
    return rev


@pytest.mark.parametrize("cls", [c for c in CLASSES if c != "TIMING_WINDOW"])
def test_each_blocking_class_is_resolved_by_correcting_entries(cls):
    entries, txns, payouts, _ = _case(cls)
    at = LO_S + 50000
    fee = fee_for(4200)
    if cls == "LEDGER_MISSING":
        entries.append(_adjust("ch_x", at, [("stripe_clearing_usd", "debit", 4200 - fee, "USD"),
                                            ("stripe_fees_usd", "debit", fee, "USD"),
                                            ("revenue_usd", "credit", 4200, "USD")]))
    elif cls == "PROVIDER_MISSING":
        entries.append(_reverse(entries[-1], "rev-x"))
    elif cls == "AMOUNT_MISMATCH":
        entries.append(_adjust("ch_x", at, [("revenue_usd", "debit", 100, "USD"),
                                            ("stripe_clearing_usd", "credit", 100, "USD")]))
    elif cls == "FEE_MISMATCH":
        entries.append(_adjust("ch_x", at, [("stripe_fees_usd", "debit", 7, "USD"),
                                            ("stripe_clearing_usd", "credit", 7, "USD")]))
    elif cls == "CURRENCY_MISMATCH":
        entries += [_reverse(entries[-1], "rev-x"), charge_entry("ch_x", at + 10, 4200, jid="je-ch_x-usd")]
    elif cls == "DUPLICATE_PROVIDER":
        entries.append(charge_entry("txn_x2", at + 5, 4200, jid="je-txn_x2"))
    elif cls == "DUPLICATE_LEDGER":
        dup = next(e for e in entries if e["journal_id"] == "je-ch_x-dup")
        entries.append(_reverse(dup, "rev-dup"))
    elif cls == "STATUS_MISMATCH":
        payouts[-1] = settlement("pay_x", at + 300, 150_000)
    _, report = run(entries, txns, payouts)
    assert report["discrepancies"] == [], report["discrepancies"]


def test_reversing_a_stuck_payouts_booking_agrees_with_the_pending_provider():
    entries, txns, payouts, _ = _case("STATUS_MISMATCH")
    entries.append(_reverse(entries[-1], "rev-pay"))
    _, report = run(entries, txns, payouts)
    assert report["discrepancies"] == []


def test_a_day_whose_only_claim_is_a_charge_and_its_reversal_is_consistent():
    # Every claim nets to zero, so no claim moves money: the engine must still build its report.
    charge = charge_entry("ch_only", LO_S + 3600, 4200)
    entries = [charge, _reverse(charge, "rev-only")]
    _, report = run(entries, [], [])
    assert report["discrepancies"] == []
    _, report = run(entries, [charge_txn("txn_only", "ch_only", LO_S + 3600, 4200)], [])
    # The ledger has the claim (booked, then reversed to zero); the provider says 4200 moved.
    assert classes_of(report) == ["AMOUNT_MISMATCH"]
