"""Every Stripe balance transaction type reconciles as the mapping says (issue 17).

The day is built from records shaped exactly as Stripe's own example balance transaction in
``shared/reference/stripe/fixtures3.json`` (every member, ``fee_details``, ``balance_type``),
one or more per type the mapping names, and booked as docs/stripe-mapping.md prescribes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.quality import gates
from finance_pipeline.reconciliation.engine import reconcile
from finance_pipeline.reconciliation.inputs import lines_frame
from finance_pipeline.reconciliation.stripe_types import BALANCE_ROLES, FEE_ROLES, KNOWN_TYPES, TYPES, markdown_table
from finance_pipeline.providers.payout_pull import settlements_frame

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "stripe" / "fixtures3.json"
DAY = "2026-11-02"
LO, HI = day_bounds_us(DAY)
ROLES = {f"{role}_usd": role for role in (
    "stripe_clearing", "stripe_reserve", "stripe_issuing", "stripe_fees", "stripe_application_fees",
    "stripe_fee_taxes")}
ROLES.update({"counter_usd": None})

# type -> (amount sign, balance_type, fee_details as (type, amount) pairs)
_ISSUING = {t for t in TYPES if t.startswith("issuing_")}
_OUTFLOW = {"refund", "payment_refund", "payment_failure_refund", "payment_reversal", "payout",
            "stripe_fee", "stripe_fx_fee", "tax_fee", "application_fee_refund", "transfer",
            "topup_reversal", "inbound_transfer_reversal", "anticipation_repayment", "obligation_outbound",
            "contribution", "climate_order_purchase", "reserve_hold", "payment_network_reserve_hold",
            "payout_minimum_balance_hold", "stripe_balance_payment_debit", "issuing_authorization_hold",
            "issuing_transaction"}


def _reference_txn() -> dict:
    if not REFERENCE.exists():
        pytest.fail(f"{REFERENCE} is missing: the shared reference data sits beside the repository")
    return json.loads(REFERENCE.read_text())["resources"]["balance_transaction"]


def _day() -> tuple[list[dict], list[dict]]:
    base = _reference_txn()
    txns, entries = [], []
    at = LO // 1_000_000 + 3600

    def add(type_: str, txn_id: str, source: str, amount: int, fees: list[tuple[str, int]],
            balance_type: str = "payments", ref: str | None = None) -> None:
        nonlocal at
        at += 60
        fee = sum(a for _, a in fees)
        txn = copy.deepcopy(base)
        txn.update({
            "id": txn_id, "type": type_, "reporting_category": TYPES[type_].reporting_category,
            "source": source, "amount": amount, "fee": fee, "net": amount - fee, "created": at,
            "available_on": at + 86400, "balance_type": balance_type, "description": f"{type_} example",
            "fee_details": [{"amount": a, "application": None, "currency": "usd", "description": t, "type": t}
                            for t, a in fees],
        })
        txns.append(txn)
        # The booking the mapping prescribes: net on the balance's role, each fee on its role,
        # the counter account for the gross.
        lines = []

        def move(account: str, signed: int) -> None:
            if signed:
                lines.append({"account_id": account, "direction": "debit" if signed > 0 else "credit",
                              "amount_minor": abs(signed), "currency": "USD"})

        move(f"{BALANCE_ROLES[balance_type]}_usd", amount - fee)
        for t, a in fees:
            move(f"{FEE_ROLES[t]}_usd", a)
        move("counter_usd", -amount)
        entries.append({
            "journal_id": f"je-{txn_id}", "ts": format_ts_us(at * 1_000_000), "kind": "standard",
            "memo": type_, "batch_id": None, "provider": "stripe", "provider_reference": ref or source,
            "reverses": None, "posted_by": "system:import", "reviewed_by": None, "lines": lines,
        })

    for n, type_ in enumerate(KNOWN_TYPES):
        sign = -1 if type_ in _OUTFLOW else 1
        balance_type = "issuing" if type_ in _ISSUING else "payments"
        fees: list[tuple[str, int]] = []
        if type_ in ("charge", "payment"):
            fees = [("stripe_fee", 320), ("tax", 29), ("application_fee", 500)]
        elif type_ in ("refund", "payment_refund"):
            fees = [("stripe_fee", -320)]  # a refund that returns its fee: a negative fee
        add(type_, f"txn_{n:03d}", f"src_{n:03d}", sign * (10_000 + n), fees, balance_type)
    # Records sharing a source, each booked by its own txn id: a dispute and its reinstatement,
    # a payout and its failure, a refund and its failure.
    add("adjustment", "txn_du_w", "du_1", -5_000, [("stripe_fee", 1_500)], ref="txn_du_w")
    add("adjustment", "txn_du_r", "du_1", 5_000, [("stripe_fee", -1_500)], ref="txn_du_r")
    add("payout", "txn_po_1", "po_1", -25_000, [], ref="txn_po_1")
    add("payout_failure", "txn_po_1f", "po_1", 25_000, [], ref="txn_po_1f")
    add("refund", "txn_re_1", "re_1", -700, [], ref="txn_re_1")
    add("refund_failure", "txn_re_1f", "re_1", 700, [], ref="txn_re_1f")
    # A reserve movement on the reserved balance.
    add("reserve_transaction", "txn_rsv", "rsv_1", 3_000, [], balance_type="risk_reserved")
    return entries, txns


def _reconcile(entries, txns):
    return reconcile(lines_frame(entries, ROLES), balance_transactions_frame(txns), settlements_frame([]), LO, HI)


def test_a_reference_shaped_day_of_every_mapped_type_reconciles_clean():
    entries, txns = _day()
    assert {t["type"] for t in txns} == set(KNOWN_TYPES)
    assert set(_reference_txn()) <= set(txns[0])  # every member Stripe sends
    rec = _reconcile(entries, txns)
    assert rec.discrepancies.empty, rec.discrepancies.to_dict("records")
    assert len(rec.matches) == len(txns)
    assert gates.run_stripe_checks(balance_transactions_frame(txns)).success


def test_an_issuing_record_booked_to_the_payments_clearing_account_is_a_mismatch():
    entries, txns = _day()
    spend = next(e for e in entries if e["memo"] == "issuing_transaction")
    for line in spend["lines"]:
        if line["account_id"] == "stripe_issuing_usd":
            line["account_id"] = "stripe_clearing_usd"
    rec = _reconcile(entries, txns)
    assert [(d["class"], d["journal_id"]) for d in rec.discrepancies.to_dict("records")] == [
        ("AMOUNT_MISMATCH", spend["journal_id"])]


def test_fee_details_of_every_kind_meet_the_fee_roles_together():
    entries, txns = _day()
    charge = next(e for e in entries if e["memo"] == "charge")
    # The tax booked as a Stripe fee moves nothing in the total: still matched.
    for line in charge["lines"]:
        if line["account_id"] == "stripe_fee_taxes_usd":
            line["account_id"] = "stripe_fees_usd"
    assert _reconcile(entries, txns).discrepancies.empty
    # The application fee left out of the books is a fee difference.
    charge["lines"] = [ln for ln in charge["lines"] if ln["account_id"] != "stripe_application_fees_usd"]
    charge["lines"].append({"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": 500,
                            "currency": "USD"})
    rows = _reconcile(entries, txns).discrepancies.to_dict("records")
    assert [(d["class"], d["provider_amount_minor"], d["ledger_amount_minor"]) for d in rows] == [
        ("FEE_MISMATCH", 849, 349)]


def test_a_type_the_mapping_does_not_know_blocks_the_gate_by_name_and_still_reconciles():
    entries, txns = _day()
    txns[0]["type"] = "brand_new_type"
    result = gates.run_stripe_checks(balance_transactions_frame(txns))
    assert not result.success
    assert any("stripe-mapping" in line for line in result.markdown().splitlines()), result.markdown()
    # Never silently dropped: its record is still matched against its booking.
    assert _reconcile(entries, txns).discrepancies.empty


def test_the_docs_page_shows_the_mapping_as_the_code_has_it():
    page = (ROOT / "docs" / "stripe-mapping.md").read_text()
    assert markdown_table() in page


def _converted(gross_eur: int, fee_eur: int, rate=1.234, booked: str = "EUR"):
    """A charge of 10.00 EUR settled as 12.34 USD (Stripe's own example of exchange_rate),
    fee 0.66 USD, booked in ``booked``."""
    txn = copy.deepcopy(_reference_txn())
    txn.update({"id": "txn_fx", "source": "ch_fx", "amount": 1234, "fee": 66, "net": 1168, "currency": "usd",
                "exchange_rate": rate, "created": LO // 1_000_000 + 7200, "type": "charge",
                "reporting_category": "charge",
                "fee_details": [{"amount": 66, "application": None, "currency": "usd", "description": "Stripe",
                                 "type": "stripe_fee"}]})
    cur = booked.lower()
    roles = {f"stripe_clearing_{cur}": "stripe_clearing", f"stripe_fees_{cur}": "stripe_fees", f"revenue_{cur}": None}
    entry = {"journal_id": "je-fx", "ts": format_ts_us((LO // 1_000_000 + 7200) * 1_000_000), "kind": "standard",
             "memo": "converted charge", "batch_id": None, "provider": "stripe", "provider_reference": "ch_fx",
             "reverses": None, "posted_by": "system:import", "reviewed_by": None,
             "lines": [{"account_id": f"stripe_clearing_{cur}", "direction": "debit", "amount_minor": gross_eur - fee_eur,
                        "currency": booked},
                       {"account_id": f"stripe_fees_{cur}", "direction": "debit", "amount_minor": fee_eur,
                        "currency": booked},
                       {"account_id": f"revenue_{cur}", "direction": "credit", "amount_minor": gross_eur,
                        "currency": booked}]}
    return reconcile(lines_frame([entry], roles), balance_transactions_frame([txn]), settlements_frame([]), LO, HI)


def test_a_converted_charge_reconciles_booked_in_either_currency():
    # Presentment: 10.00 EUR, the fee 0.66 USD converted back and rounded (0.53 EUR).
    rec = _converted(1000, 53)
    assert rec.discrepancies.empty and len(rec.matches) == 1
    assert rec.matches.iloc[0]["currency"] == "USD" and rec.matches.iloc[0]["amount_minor"] == 1234
    # Settlement: the converted amounts in USD, as before.
    assert _converted(1234, 66, booked="USD").discrepancies.empty


def test_a_converted_charge_booked_at_another_amount_says_what_the_rate_gives():
    [row] = _converted(990, 53).discrepancies.to_dict("records")
    assert row["class"] == "CURRENCY_MISMATCH"
    assert "exchange_rate 1.234" in row["detail"] and "gross EUR 990 converts to USD 1222, provider says 1234" \
        in row["detail"]
    # A record Stripe did not convert, booked in another currency: the plain mismatch.
    [row] = _converted(1000, 53, rate=None).discrepancies.to_dict("records")
    assert row["class"] == "CURRENCY_MISMATCH" and "provider currency USD, ledger booked EUR" in row["detail"]


def test_the_rate_reads_the_same_from_stripe_and_from_a_published_record():
    txn = {**_reference_txn(), "exchange_rate": 1.234}
    published = {**txn, "exchange_rate": "1.234"}  # canonical JSON keeps the float as text
    assert balance_transactions_frame([txn])["exchange_rate"].tolist() == ["1.234"]
    assert balance_transactions_frame([published])["exchange_rate"].tolist() == ["1.234"]
    assert balance_transactions_frame([{**txn, "exchange_rate": 1}])["exchange_rate"].tolist() == ["1"]
    for bad in ("abc", True, 0, -1.5, "NaN"):
        with pytest.raises(ValueError, match="exchange_rate"):
            balance_transactions_frame([{**txn, "exchange_rate": bad}])
