"""Small builders of ledger entries and provider records for reconciliation tests."""

from __future__ import annotations

from finance_pipeline.demo.scenario import ACCOUNT_ROLES, CURRENCIES, account_id
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.providers.payout_pull import settlements_frame
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.reconciliation.inputs import lines_frame

DAY = "2026-11-02"
LO, HI = day_bounds_us(DAY)
LO_S, HI_S = LO // 1_000_000, HI // 1_000_000
ROLES = {account_id(role, cur): (None if role == "creator_costs" else role)
         for role, _t, _n in ACCOUNT_ROLES for cur in CURRENCIES}


def fee_of(gross: int) -> int:
    return gross * 29 // 1000 + 30


def charge_entry(ch: str, at_s: int, gross: int, fee: int | None = None, currency: str = "USD",
                 jid: str | None = None, ref: str | None = "same") -> dict:
    fee = fee_of(gross) if fee is None else fee
    return {
        "journal_id": jid or f"je-{ch}", "ts": format_ts_us(at_s * 1_000_000), "kind": "standard",
        "memo": f"Charge {ch}", "batch_id": None, "provider": "stripe",
        "provider_reference": ch if ref == "same" else ref, "reverses": None,
        "posted_by": "t", "reviewed_by": None,
        "lines": [
            {"account_id": account_id("stripe_clearing", currency), "direction": "debit",
             "amount_minor": gross - fee, "currency": currency},
            {"account_id": account_id("stripe_fees", currency), "direction": "debit",
             "amount_minor": fee, "currency": currency},
            {"account_id": account_id("revenue", currency), "direction": "credit",
             "amount_minor": gross, "currency": currency},
        ],
    }


def charge_txn(txn: str, ch: str, at_s: int, gross: int, fee: int | None = None,
               currency: str = "USD", category: str = "charge") -> dict:
    fee = fee_of(gross) if fee is None and category == "charge" else (fee or 0)
    return {
        "id": txn, "object": "balance_transaction", "amount": gross, "available_on": at_s + 172800,
        "created": at_s, "currency": currency.lower(), "description": None, "exchange_rate": None,
        "fee": fee, "fee_details": [], "net": gross - fee, "reporting_category": category,
        "source": ch, "status": "available", "type": category,
    }


def payout_entry(pid: str, at_s: int, amount: int, currency: str = "USD", kind: str = "standard",
                 reverses: str | None = None, jid: str | None = None) -> dict:
    out, inn = ("creator_payable", "payout_clearing") if kind == "standard" else ("payout_clearing", "creator_payable")
    return {
        "journal_id": jid or f"je-{pid}", "ts": format_ts_us(at_s * 1_000_000), "kind": kind,
        "memo": f"Payout {pid}", "batch_id": None, "provider": "payout_sandbox", "provider_reference": pid,
        "reverses": reverses, "posted_by": "t", "reviewed_by": None,
        "lines": [
            {"account_id": account_id(out, currency), "direction": "debit", "amount_minor": amount,
             "currency": currency},
            {"account_id": account_id(inn, currency), "direction": "credit", "amount_minor": amount,
             "currency": currency},
        ],
    }


def settlement(pid: str, at_s: int, amount: int, currency: str = "USD", status: str = "settled") -> dict:
    return {"id": f"stl_{pid}", "payout_id": pid, "amount_minor": amount, "currency": currency,
            "status": status, "settled_at": format_ts_us(at_s * 1_000_000)}


def pending_payout(pid: str, at_s: int, amount: int, currency: str = "USD") -> dict:
    return {"id": pid, "payout_id": pid, "amount_minor": amount, "currency": currency, "status": "pending",
            "created_at": format_ts_us(at_s * 1_000_000), "updated_at": format_ts_us(at_s * 1_000_000),
            "settled_at": None, "destination": "creator", "metadata": {}, "settlement_id": None}


def frames(entries: list[dict], txns: list[dict], payouts: list[dict]):
    return lines_frame(entries, ROLES), balance_transactions_frame(txns), settlements_frame(payouts)


def clean_day() -> tuple[list[dict], list[dict], list[dict]]:
    """A day where everything agrees: charges, a refund, a Stripe payout and creator payouts."""
    entries, txns, payouts = [], [], []
    for n in range(6):
        at = LO_S + 7200 + n * 3600
        gross = 1000 + 250 * n
        entries.append(charge_entry(f"ch_{n}", at, gross))
        txns.append(charge_txn(f"txn_c{n}", f"ch_{n}", at, gross))
    # A refund (booked as a reversal of charge 0) and Stripe's payout to the bank.
    refund = {
        "journal_id": "je-re_0", "ts": format_ts_us((LO_S + 40000) * 1_000_000), "kind": "reversal",
        "memo": "Refund", "batch_id": None, "provider": "stripe", "provider_reference": "re_0",
        "reverses": "je-ch_0", "posted_by": "t", "reviewed_by": None,
        "lines": [
            {"account_id": "refunds_usd", "direction": "debit", "amount_minor": 400, "currency": "USD"},
            {"account_id": "stripe_clearing_usd", "direction": "credit", "amount_minor": 400, "currency": "USD"},
        ],
    }
    entries.append(refund)
    txns.append(charge_txn("txn_r0", "re_0", LO_S + 40000, -400, category="refund"))
    bank = {
        "journal_id": "je-po_0", "ts": format_ts_us((LO_S + 10800) * 1_000_000), "kind": "standard",
        "memo": "Stripe payout", "batch_id": None, "provider": "stripe", "provider_reference": "po_0",
        "reverses": None, "posted_by": "t", "reviewed_by": None,
        "lines": [
            {"account_id": "bank_usd", "direction": "debit", "amount_minor": 5000, "currency": "USD"},
            {"account_id": "stripe_clearing_usd", "direction": "credit", "amount_minor": 5000, "currency": "USD"},
        ],
    }
    entries.append(bank)
    txns.append(charge_txn("txn_p0", "po_0", LO_S + 10800, -5000, category="payout"))
    for n, cur in enumerate(("USD", "JPY")):
        at = LO_S + 20000 + n * 100
        entries.append(payout_entry(f"pay_{n}", at, 70_000 + n, cur))
        payouts.append(settlement(f"pay_{n}", at - 30, 70_000 + n, cur))
    # Internal accrual with no provider: never reconciled.
    entries.append({
        "journal_id": "je-accrual", "ts": format_ts_us((LO_S + 5000) * 1_000_000), "kind": "standard",
        "memo": "accrual", "batch_id": None, "provider": None, "provider_reference": None, "reverses": None,
        "posted_by": "t", "reviewed_by": None,
        "lines": [
            {"account_id": "creator_costs_usd", "direction": "debit", "amount_minor": 10, "currency": "USD"},
            {"account_id": "creator_payable_usd", "direction": "credit", "amount_minor": 10, "currency": "USD"},
        ],
    })
    return entries, txns, payouts
