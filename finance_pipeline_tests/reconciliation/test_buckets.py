"""A day reconciled in buckets gives the whole day's reconciliation, row for row and dtype for
dtype (reconciliation/buckets.py), whatever the bucket size: demo days with every class,
random ledgers, Stripe's own types, payouts returned or arriving a day later, tolerances."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.providers.stripe_payouts import payouts_frame, with_payout_transactions
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.providers.payout_pull import settlements_frame
from finance_pipeline.reconciliation import buckets, engine
from finance_pipeline.reconciliation.inputs import lines_frame
from finance_pipeline_tests.perf.test_leaves_and_bundle import scenario_inputs
from finance_pipeline_tests.perf.test_reconcile_fast import TOLERANCES, arrow, ledgers
from finance_pipeline_tests.reconciliation.builders import HI, LO, charge_entry, charge_txn, frames

# Into how many buckets a day is cut.
COUNTS = (2, 5, 23)


def assert_same_in_buckets(lines, stripe, payouts, lo=LO, hi=HI, tol=engine.Tolerances(), stripe_payouts=None,
                           counts=COUNTS):
    want = engine.reconcile(lines, stripe, payouts, lo, hi, tol, stripe_payouts)
    for count in counts:
        size = max(1, -(-len(lines) // count))
        with _warnings() as warned:
            got = buckets.reconcile(lines, stripe, payouts, lo, hi, tol, stripe_payouts, bucket_lines=size,
                                    whole_up_to=0)
        assert not warned  # in buckets indeed, not whole after a collision
        pd.testing.assert_frame_equal(got.matches, want.matches)
        pd.testing.assert_frame_equal(got.discrepancies, want.discrepancies)
        assert (got.ledger_entries, got.provider_records) == (want.ledger_entries, want.provider_records)
    return want


@contextmanager
def _warnings():
    """The warnings ``buckets`` logs meanwhile."""
    got: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: got.append(record.getMessage())
    logger = logging.getLogger(buckets.__name__)
    logger.addHandler(handler)
    try:
        yield got
    finally:
        logger.removeHandler(handler)


def _cut(lines, stripe, payouts, size):
    """The buckets ``buckets.reconcile`` would reconcile."""
    return list(buckets._parts(lines, stripe, payouts, -(-len(lines) // size)))


@pytest.mark.parametrize("seed", [1, 7, 13])
@pytest.mark.parametrize("as_arrow", [True, False])
def test_demo_days_with_every_class(seed, as_arrow):
    lines, stripe, payouts = scenario_inputs(seed, as_arrow, days=4, inject=2)
    seen = set()
    for day in range(4):
        lo = LO + (day - 1) * 86_400_000_000
        rec = assert_same_in_buckets(lines, stripe, payouts, lo, lo + 86_400_000_000)
        seen |= set(rec.discrepancies["class"])
    assert seen == set(engine.CLASSES)


def test_the_buckets_part_the_day_and_hold_every_line_and_record_once():
    lines, stripe, payouts = scenario_inputs(7, True, days=4, inject=2)
    parts = _cut(lines, stripe, payouts, 40)
    assert len(parts) == -(-len(lines) // 40) > 10 and sum(1 for p in parts if len(p[0])) > len(parts) // 2
    got_lines = pd.concat([p[0] for p in parts])
    assert sorted(got_lines.index) == sorted(lines.index[lines["provider"].notna()])
    # An entry's lines, and a claim's entries, are never parted.
    bucket_of = {}
    for k, (b_lines, _, _) in enumerate(parts):
        for jid in b_lines["journal_id"]:
            assert bucket_of.setdefault(jid, k) == k
        for key in b_lines[b_lines["provider_reference"].notna()][["provider", "provider_reference"]].itertuples(
                index=False):
            assert bucket_of.setdefault(tuple(key), k) == k
    for frame, i in ((stripe, 1), (payouts, 2)):
        got = pd.concat([p[i] for p in parts])
        assert sorted(got.index) == sorted(frame.index) and not got.index.duplicated().any()
        for k, part in enumerate(parts):
            assert part[i].index.is_monotonic_increasing  # each bucket keeps the inputs' order
    # A record goes with the claims naming it.
    for k, (_, b_stripe, _) in enumerate(parts):
        for source in b_stripe["source"].dropna():
            assert bucket_of.get(("stripe", source), k) == k


def test_demo_days_after_the_runbooks_corrections():
    from datetime import date

    from finance_pipeline.demo.corrections import corrections
    from finance_pipeline.demo.scenario import build_scenario

    sc = build_scenario(date(2026, 11, 1), 3, 7, inject=1)
    extra = [e for fix in corrections(sc) for e in fix.entries]
    _, stripe, payouts = scenario_inputs(7, False, days=3, inject=1)
    lines = lines_frame(sc.entries + extra, {a["account_id"]: a["role"] for a in sc.accounts})
    assert_same_in_buckets(lines, stripe, payouts)
    assert_same_in_buckets(arrow(lines), stripe, payouts)


def test_tolerances():
    lines, stripe, payouts = scenario_inputs(5, True)
    for tol in TOLERANCES:
        assert_same_in_buckets(lines, stripe, payouts, tol=tol, counts=(7,))


def test_claims_without_a_reference_meet_every_record_no_claim_names():
    # Charges booked without a reference are matched by amount, across what would be buckets.
    entries, txns = [], []
    for i in range(12):
        at = (LO // 1_000_000) + 600 * i
        entries.append(charge_entry(f"ch_{i}", at, 1000 + 7 * i, jid=f"je-{i}", ref=None if i % 2 else "same"))
        txns.append(charge_txn(f"txn_{i}", f"ch_{i}", at + 5, 1000 + 7 * i))
    txns.append(charge_txn("txn_x", "ch_x", LO // 1_000_000 + 50, 1000))  # nobody booked it
    lines, stripe, pay = frames(entries, txns, [])
    rec = assert_same_in_buckets(lines, stripe, pay)
    assert set(rec.matches["matched_by"]) == {"reference", "amount"}
    assert len(rec.discrepancies)


def test_stripe_payouts_arriving_the_next_day_and_returned():
    from finance_pipeline_tests.reconciliation.test_stripe_payouts import D1_LO_S, D2_LO_S, _bank_entry, _payout

    txns = [charge_txn("txn_po_a", "po_a", D1_LO_S + 10 * 3600, -25_000, category="payout"),
            charge_txn("txn_po_b", "po_b", D1_LO_S + 11 * 3600, -9_000, category="payout"),
            charge_txn("txn_po_bf", "po_b", D1_LO_S + 12 * 3600, 9_000, category="payout_reversal")]
    day_payouts = payouts_frame([_payout("po_a", "txn_po_a", D1_LO_S + 10 * 3600, D2_LO_S, 25_000),
                                 _payout("po_b", "txn_po_b", D1_LO_S + 11 * 3600, D2_LO_S, 9_000, "failed")],
                                {t["id"]: t for t in txns})
    entries = [_bank_entry("po_a", D2_LO_S + 9 * 3600, 25_000), _bank_entry("po_b", D2_LO_S + 9 * 3600, 9_000)]
    lines, _, _ = frames(entries, [], [])
    empty = frames([], [], [])[2]
    stripe = with_payout_transactions(balance_transactions_frame(txns), day_payouts)
    for lo in (LO, D2_LO_S * 1_000_000):
        assert_same_in_buckets(lines, stripe, empty, lo, lo + 86_400_000_000, stripe_payouts=day_payouts)


def test_a_day_of_every_stripe_type():
    from finance_pipeline_tests.reconciliation.test_stripe_types import ROLES, _day

    entries, txns = _day()
    lines = lines_frame(entries, ROLES)
    assert_same_in_buckets(lines, balance_transactions_frame(txns), settlements_frame([]))


def test_a_hash_collision_reconciles_the_day_whole(monkeypatch, caplog):
    lines, stripe, payouts = scenario_inputs(7, True, days=4, inject=2)
    want = engine.reconcile(lines, stripe, payouts, LO, HI)
    # Every text hashes alike: every record is taken for named, and the check finds one that is not.
    monkeypatch.setattr(buckets, "_hashes", lambda texts: np.zeros(len(texts), dtype=np.uint64))
    with caplog.at_level(logging.WARNING, logger=buckets.__name__):
        got = buckets.reconcile(lines, stripe, payouts, LO, HI, bucket_lines=5, whole_up_to=0)
    assert "share a 64-bit hash" in caplog.text
    pd.testing.assert_frame_equal(got.matches, want.matches)
    pd.testing.assert_frame_equal(got.discrepancies, want.discrepancies)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledgers(), st.booleans(), st.sampled_from([2, 3, 7, 40]))
def test_random_ledgers(case, as_arrow, count):
    entries, txns, payouts = case
    try:
        lines, stripe, pay = frames(entries, txns, payouts)
    except ValueError:
        return  # a reversal naming an entry dropped as a duplicate id; not a ledger
    assert_same_in_buckets(arrow(lines) if as_arrow else lines, stripe, pay, counts=(count,))


def _charges(n: int, at_s: int = LO // 1_000_000):
    entries = [charge_entry(f"ch_{i}", at_s + 100 * i, 1000 + i) for i in range(n)]
    txns = [charge_txn(f"txn_{i}", f"ch_{i}", at_s + 100 * i, 1000 + i) for i in range(n)]
    return entries, txns


def test_a_record_without_a_category_nobody_booked_is_named_in_every_bucket():
    entries, txns = _charges(3)
    odd = charge_txn("txn_odd", "src_odd", LO // 1_000_000 + 5000, -300)
    odd["reporting_category"] = None  # Stripe may send none; the Stripe gate lets it through
    txns += [odd, charge_txn("txn_x", "src_x", LO // 1_000_000 + 6000, 700)]
    rec = assert_same_in_buckets(*frames(entries, txns, []), counts=(2, 5, 40))
    assert rec.discrepancies.set_index("provider_id").loc["txn_odd", "detail"].startswith(
        "stripe record txn_odd (src_odd) has no ledger entry")


def test_a_journal_id_holding_a_comma_leaves_out_the_same_matches():
    # A DUPLICATE_LEDGER row names the first of its joined journals cut at ", ": "A" of "A, K".
    entries, txns = _charges(3, LO // 1_000_000 + 400)
    entries += [charge_entry("ch_a", LO // 1_000_000 + 100, 1000, jid="A"),
                charge_entry("ch_d", LO // 1_000_000 + 200, 2000, jid="A, K"),
                charge_entry("ch_d", LO // 1_000_000 + 300, 2000, jid="Q")]
    txns += [charge_txn("txn_a", "ch_a", LO // 1_000_000 + 100, 1000),
             charge_txn("txn_d", "ch_d", LO // 1_000_000 + 200, 2000)]
    assert_same_in_buckets(*frames(entries, txns, []), counts=(2, 5, 40))


def test_a_day_the_gates_refuse_for_a_missing_currency_is_reconciled_whole():
    entries, txns = _charges(4)
    entries.append(charge_entry("ch_m", LO // 1_000_000 + 900, 500, ref=None))
    lines, stripe, pay = frames(entries, txns, [])
    lines.loc[lines["journal_id"] == "je-ch_0", "currency"] = None
    assert buckets._missing_ids(lines, stripe, pay)
    assert_same_in_buckets(lines, stripe, pay, counts=(2, 40))
