"""The demo scenario: deterministic, and as real as the reference data makes it (issue 17)."""

from __future__ import annotations

from datetime import date

from finance_pipeline.demo.scenario import build_scenario
from finance_pipeline.domain.timeutil import day_bounds_us, parse_ts_us
from finance_pipeline.providers.payout_pull import settlements_frame
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.reconciliation.engine import reconcile
from finance_pipeline.reconciliation.inputs import lines_frame


def test_the_same_seed_gives_the_same_scenario_and_another_seed_another():
    a, b = build_scenario(date(2026, 11, 1), 3, 7), build_scenario(date(2026, 11, 1), 3, 7)
    assert (a.entries, a.stripe_balance_transactions, a.stripe_payouts, a.creator_payouts) == \
        (b.entries, b.stripe_balance_transactions, b.stripe_payouts, b.creator_payouts)
    assert build_scenario(date(2026, 11, 1), 3, 8).entries != a.entries


def test_every_demo_day_carries_real_stripe_activity_and_reconciles_clean():
    """The demo shows refunds returning their fee, a dispute and its reinstatement, a failed
    payout, a converted charge and an application fee every day; without injections each day
    has no discrepancy (test_engine checks that injections give exactly their classes)."""
    from finance_pipeline.providers.stripe_payouts import payouts_frame
    from finance_pipeline_tests.reconciliation.builders import settlement

    sc = build_scenario(date(2026, 11, 1), 3, 7, inject=0)
    roles = {a["account_id"]: a["role"] for a in sc.accounts}
    payouts = settlements_frame([settlement(p["payout_id"], parse_ts_us(p["settled_at"]) // 10**6, p["amount_minor"],
                                            p["currency"]) for p in sc.creator_payouts])
    stripe = balance_transactions_frame(sc.stripe_balance_transactions)
    lines = lines_frame(sc.entries, roles)
    for day in sc.day_keys:
        lo, hi = day_bounds_us(day)
        txns = [t for t in sc.stripe_balance_transactions if lo <= t["created"] * 1_000_000 < hi]
        assert any(t["type"] == "refund" and t["fee"] < 0 for t in txns), day
        assert {"dispute", "dispute_reversal"} <= {t["reporting_category"] for t in txns if t["type"] == "adjustment"}
        assert any(t["type"] == "payout_failure" for t in txns), day
        assert any(t["exchange_rate"] is not None for t in txns), day
        assert any(d["type"] == "application_fee" for t in txns for d in t["fee_details"]), day
        rec = reconcile(lines, stripe, payouts, lo, hi, stripe_payouts=payouts_frame(sc.stripe_payouts))
        assert rec.discrepancies.empty, (day, rec.discrepancies.to_dict("records"))
