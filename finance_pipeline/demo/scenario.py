"""Generates a deterministic marketplace scenario: ledger entries and what the providers saw.

The same (start, days, seed, injections) always gives the same objects, so demos and tests
can state exactly which discrepancies a reconciliation must find.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import date, timedelta

from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us

_US = 1_000_000
DISCREPANCY_CLASSES = (
    "LEDGER_MISSING", "PROVIDER_MISSING", "AMOUNT_MISMATCH", "FEE_MISMATCH",
    "CURRENCY_MISMATCH", "DUPLICATE_PROVIDER", "DUPLICATE_LEDGER", "STATUS_MISMATCH",
    "TIMING_WINDOW",
)
# JPY is zero-decimal: its amounts are whole yen.
CURRENCIES = ("USD", "EUR", "JPY")
_PRICE_RANGE = {"USD": (500, 25_000), "EUR": (500, 20_000), "JPY": (500, 30_000)}
_FEE = {"USD": (290, 30), "EUR": (250, 25), "JPY": (360, 0)}  # (basis points * 10, fixed minor)
ACTOR_SYSTEM = "system:demo-seed"
ACTOR_REVIEWER = "ops:rita"


def batch_id_for(day: str) -> str:
    return f"demo-{day}"


def account_id(role: str, currency: str) -> str:
    return f"{role}_{currency.lower()}"


ACCOUNT_ROLES = (
    # (role, type, name)
    ("stripe_clearing", "asset", "Stripe clearing"),
    ("stripe_fees", "expense", "Stripe fees"),
    ("bank", "asset", "Operating bank account"),
    ("revenue", "revenue", "Marketplace revenue"),
    ("refunds", "revenue", "Refunds (contra revenue)"),
    ("creator_payable", "liability", "Payable to creators"),
    ("creator_costs", "expense", "Creator share of revenue"),  # no reconciliation role
    ("payout_clearing", "asset", "Payout provider clearing"),
    ("stripe_application_fees", "expense", "Application fees"),
    ("stripe_fee_taxes", "expense", "Taxes on Stripe fees"),
)


@dataclass
class Injection:
    """One deliberately wrong record and the discrepancy class it must produce."""

    cls: str
    day: str
    provider: str | None
    provider_id: str | None
    journal_id: str | None
    note: str


@dataclass
class Scenario:
    start: date
    days: int
    accounts: list[dict] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    stripe_balance_transactions: list[dict] = field(default_factory=list)
    stripe_payouts: list[dict] = field(default_factory=list)
    creator_payouts: list[dict] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)

    @property
    def day_keys(self) -> list[str]:
        return [(self.start + timedelta(days=i)).isoformat() for i in range(self.days)]


class _Ids:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.seen: set[str] = set()

    def new(self, prefix: str) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            value = prefix + "".join(self.rng.choice(alphabet) for _ in range(16))
            if value not in self.seen:
                self.seen.add(value)
                return value


def _fee(currency: str, gross: int) -> int:
    permille_x10, fixed = _FEE[currency]
    return (gross * permille_x10 + 5_000) // 10_000 + fixed


def _entry(journal_id: str, ts_us: int, memo: str, lines: list[tuple[str, str, int, str]], *,
           provider: str | None = None, ref: str | None = None, kind: str = "standard",
           reverses: str | None = None, reviewed_by: str | None = None,
           batch_id: str | None = None) -> dict:
    return {
        "journal_id": journal_id, "ts": format_ts_us(ts_us), "kind": kind, "memo": memo,
        "batch_id": batch_id, "provider": provider, "provider_reference": ref,
        "reverses": reverses, "posted_by": ACTOR_SYSTEM, "reviewed_by": reviewed_by,
        "lines": [
            {"account_id": acc, "direction": d, "amount_minor": amt, "currency": cur}
            for acc, d, amt, cur in lines
        ],
    }


def _balance_txn(ids: _Ids, *, created: int, amount: int, fee: int, currency: str, category: str,
                 source: str, description: str) -> dict:
    return {
        "id": ids.new("txn_"), "object": "balance_transaction", "amount": amount,
        "available_on": created + 2 * 86400, "balance_type": "payments", "created": created,
        "currency": currency.lower(),
        "description": description, "exchange_rate": None, "fee": fee,
        "fee_details": (
            [{"amount": fee, "application": None, "currency": currency.lower(),
              "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else []
        ),
        "net": amount - fee, "reporting_category": category, "source": source,
        "status": "available", "type": category,
    }


def build_scenario(start: date, days: int, seed: int, *, charges_per_day: int = 12,
                   payouts_per_day: int = 3, inject: int = 1) -> Scenario:
    """A marketplace day after day: charges with fees, refunds, Stripe payouts to the bank,
    creator payouts through the payout provider; ``inject`` discrepancies of every class."""
    rng = random.Random(seed)
    ids = _Ids(rng)
    sc = Scenario(start=start, days=days)
    for currency in CURRENCIES:
        for role, typ, name in ACCOUNT_ROLES:
            sc.accounts.append({"account_id": account_id(role, currency), "name": f"{name} ({currency})",
                                "type": typ, "currency": currency,
                                "role": None if role == "creator_costs" else role})

    # Which day and which currency carries each injected discrepancy (spread over the days).
    plan = [(cls, k) for k in range(inject) for cls in DISCREPANCY_CLASSES]
    injected_on: dict[str, list[str]] = {}
    for i, (cls, _k) in enumerate(plan):
        day = sc.day_keys[i % days] if days else None
        if day:
            injected_on.setdefault(day, []).append(cls)

    previous_charges: list[tuple[str, str, int, str]] = []  # (journal_id, charge id, gross, currency)
    for day in sc.day_keys:
        lo, hi = day_bounds_us(day)
        lo_s = lo // _US
        todo = list(injected_on.get(day, []))
        first_of_day = len(sc.entries)
        # Keep the first and last two hours free of ordinary records so only the injected
        # timing cases sit near the day's boundary.
        def when() -> int:
            return lo_s + rng.randrange(2 * 3600, 22 * 3600)

        day_charges: list[tuple[str, str, int, str]] = []
        for n in range(charges_per_day):
            currency = CURRENCIES[n % len(CURRENCIES)]
            gross = rng.randrange(*_PRICE_RANGE[currency])
            fee = _fee(currency, gross)
            created = when()
            ch = ids.new("ch_")
            jid = f"je-{ch}"
            txn = _balance_txn(ids, created=created, amount=gross, fee=fee, currency=currency,
                               category="charge", source=ch, description=f"Order {ch[-6:]}")
            entry = _entry(jid, created * _US, f"Charge {ch}", [
                (account_id("stripe_clearing", currency), "debit", gross - fee, currency),
                (account_id("stripe_fees", currency), "debit", fee, currency),
                (account_id("revenue", currency), "credit", gross, currency),
            ], provider="stripe", ref=ch)
            sc.stripe_balance_transactions.append(txn)
            sc.entries.append(entry)
            day_charges.append((jid, ch, gross, currency))
            # Creators earn 70% of each sale: an internal accrual no provider sees.
            share = gross * 7 // 10
            sc.entries.append(_entry(f"je-accrual-{ch}", created * _US, f"Creator share of {ch}", [
                (account_id("creator_costs", currency), "debit", share, currency),
                (account_id("creator_payable", currency), "credit", share, currency),
            ]))

        # A partial refund of one of the previous day's charges.
        if previous_charges:
            jid_orig, ch, gross, currency = rng.choice(previous_charges)
            amount = max(1, gross // 2)
            re = ids.new("re_")
            created = when()
            sc.stripe_balance_transactions.append(_balance_txn(
                ids, created=created, amount=-amount, fee=0, currency=currency, category="refund",
                source=re, description=f"Refund of {ch}"))
            sc.entries.append(_entry(f"je-{re}", created * _US, f"Refund {re} of {ch}", [
                (account_id("refunds", currency), "debit", amount, currency),
                (account_id("stripe_clearing", currency), "credit", amount, currency),
            ], provider="stripe", ref=re, kind="reversal", reverses=jid_orig))

        # Stripe pays the previous day's net out to the bank, once per currency.
        for currency in CURRENCIES:
            net = sum(g - _fee(c, g) for _j, _ch, g, c in previous_charges if c == currency)
            if net <= 0:
                continue
            po = ids.new("po_")
            created = lo_s + 3 * 3600
            txn = _balance_txn(ids, created=created, amount=-net, fee=0, currency=currency,
                               category="payout", source=po, description="STRIPE PAYOUT")
            sc.stripe_balance_transactions.append(txn)
            sc.stripe_payouts.append({
                "id": po, "object": "payout", "amount": net, "arrival_date": created + 86400,
                "created": created, "currency": currency.lower(), "status": "paid",
                "balance_transaction": txn["id"], "method": "standard", "type": "bank_account",
                "destination": f"ba_{currency.lower()}_operating", "description": "STRIPE PAYOUT",
            })
            sc.entries.append(_entry(f"je-{po}", created * _US, f"Stripe payout {po} to bank", [
                (account_id("bank", currency), "debit", net, currency),
                (account_id("stripe_clearing", currency), "credit", net, currency),
            ], provider="stripe", ref=po))

        # Creator payouts through the payout provider, approved and settled the same day.
        for n in range(payouts_per_day):
            currency = CURRENCIES[(n + 1) % len(CURRENCIES)]
            amount = rng.randrange(*_PRICE_RANGE[currency]) * 3
            payout_id = f"pay_{day.replace('-', '')}_{n:03d}"
            created = when()
            settled = created + rng.randrange(600, 3600)
            sc.creator_payouts.append({
                "payout_id": payout_id, "amount_minor": amount, "currency": currency,
                "destination": f"creator_{rng.randrange(1000, 9999)}", "created_at": format_ts_us(created * _US),
                "settled_at": format_ts_us(settled * _US), "status": "settled",
                "initiated_by": "ops:oscar", "approvals": [("fin:lena", "finance-lead")],
            })
            sc.entries.append(_entry(f"je-{payout_id}", settled * _US, f"Creator payout {payout_id} settled", [
                (account_id("creator_payable", currency), "debit", amount, currency),
                (account_id("payout_clearing", currency), "credit", amount, currency),
            ], provider="payout_sandbox", ref=payout_id))

        # What real Stripe accounts also send (docs/stripe-mapping.md), from a generator of its
        # own so the ordinary records stay what they were.
        _real_world_activity(day, sc, random.Random(f"{seed}:{day}:stripe-real-world"))
        for cls in todo:
            _inject(cls, day, sc, ids, rng, day_charges)
        # Each day's bookings arrive as one import batch.
        for e in sc.entries[first_of_day:]:
            e["batch_id"] = batch_id_for(day)
        previous_charges = day_charges
    return sc


# A EUR price settled in USD, at a rate as Stripe reports it (EUR amount x rate = USD amount).
DEMO_EXCHANGE_RATE = 1.0832


def _real_world_activity(day: str, sc: Scenario, rng: random.Random) -> None:
    """One of each kind of activity the reconciliation maps beyond plain charges, booked as
    docs/stripe-mapping.md prescribes: a charge with an application fee and a tax on Stripe's
    fee, its refund returning the processing fee (a negative fee), a dispute and its
    reinstatement (two records of one source, booked by their txn ids), a payout that fails
    (reversed in the ledger), and a charge presented in EUR and settled in USD."""
    from decimal import ROUND_HALF_EVEN, Decimal

    ids = _Ids(rng)
    lo_s = day_bounds_us(day)[0] // _US
    usd = "USD"
    clock = iter(sorted(lo_s + rng.randrange(2 * 3600, 22 * 3600) for _ in range(8)))

    def book(txn: dict, memo: str, lines: list[tuple[str, str, int]], *, ref: str, currency: str = usd,
             kind: str = "standard", reverses: str | None = None, jid: str | None = None) -> None:
        sc.entries.append(_entry(jid or f"je-{txn['id'] if ref == txn['id'] else ref}", txn["created"] * _US, memo,
                                 [(account_id(role, currency), d, amt, currency) for role, d, amt in lines if amt],
                                 provider="stripe", ref=ref, kind=kind, reverses=reverses))

    # A charge whose fee is Stripe's, the platform's application fee and a tax on Stripe's fee.
    gross = rng.randrange(5_000, 20_000)
    stripe_fee, app_fee = _fee(usd, gross), gross // 20
    tax = stripe_fee * 8 // 100
    ch = ids.new("ch_")
    charge = _balance_txn(ids, created=next(clock), amount=gross, fee=stripe_fee + app_fee + tax, currency=usd,
                          category="charge", source=ch, description=f"Order {ch[-6:]} (platform)")
    charge["fee_details"] = [
        {"amount": app_fee, "application": "ca_demo_platform", "currency": "usd", "description": "Application fee",
         "type": "application_fee"},
        {"amount": stripe_fee, "application": None, "currency": "usd", "description": "Stripe processing fees",
         "type": "stripe_fee"},
        {"amount": tax, "application": None, "currency": "usd", "description": "Tax on Stripe fees", "type": "tax"},
    ]
    sc.stripe_balance_transactions.append(charge)
    book(charge, f"Charge {ch} with application fee", [
        ("stripe_clearing", "debit", charge["net"]), ("stripe_fees", "debit", stripe_fee),
        ("stripe_application_fees", "debit", app_fee), ("stripe_fee_taxes", "debit", tax),
        ("revenue", "credit", gross)], ref=ch)

    # Its full refund: Stripe returns its processing fee (a negative fee).
    re = ids.new("re_")
    refund = _balance_txn(ids, created=next(clock), amount=-gross, fee=-stripe_fee, currency=usd,
                          category="refund", source=re, description=f"Refund of {ch}")
    refund["fee_details"] = [{"amount": -stripe_fee, "application": None, "currency": "usd",
                              "description": "Stripe processing fees returned", "type": "stripe_fee"}]
    sc.stripe_balance_transactions.append(refund)
    book(refund, f"Refund {re} of {ch}, fee returned", [
        ("refunds", "debit", gross), ("stripe_fees", "credit", stripe_fee),
        ("stripe_clearing", "credit", gross - stripe_fee)], ref=re)

    # A dispute (funds withdrawn plus the dispute fee) and its reinstatement once won.
    du = ids.new("du_")
    disputed = rng.randrange(2_000, 9_000)
    for category, sign in (("dispute", -1), ("dispute_reversal", 1)):
        txn = _balance_txn(ids, created=next(clock), amount=sign * disputed, fee=-sign * 1_500, currency=usd,
                           category=category, source=du, description=f"Chargeback {du}")
        txn["type"] = "adjustment"
        txn["fee_details"] = [{"amount": -sign * 1_500, "application": None, "currency": "usd",
                               "description": "Dispute fee" if sign < 0 else "Dispute fee refunded",
                               "type": "stripe_fee"}]
        sc.stripe_balance_transactions.append(txn)
        withdraw = sign < 0
        book(txn, f"Dispute {du} {'withdrawal' if withdraw else 'reinstatement'}", [
            ("refunds", "debit" if withdraw else "credit", disputed),
            ("stripe_fees", "debit" if withdraw else "credit", 1_500),
            ("stripe_clearing", "credit" if withdraw else "debit", disputed + 1_500)], ref=txn["id"])

    # A payout to the bank that fails: Stripe returns the money; the ledger reverses the booking.
    po = ids.new("po_")
    amount = rng.randrange(10_000, 50_000)
    sent = _balance_txn(ids, created=next(clock), amount=-amount, fee=0, currency=usd, category="payout",
                        source=po, description="STRIPE PAYOUT")
    failed = _balance_txn(ids, created=next(clock), amount=amount, fee=0, currency=usd, category="payout_reversal",
                          source=po, description="STRIPE PAYOUT FAILED")
    failed["type"] = "payout_failure"
    sc.stripe_balance_transactions += [sent, failed]
    sc.stripe_payouts.append({
        "id": po, "object": "payout", "amount": amount, "arrival_date": sent["created"] + 86400,
        "created": sent["created"], "currency": "usd", "status": "failed", "balance_transaction": sent["id"],
        "failure_code": "account_closed", "failure_message": "The bank account has been closed.",
        "method": "standard", "type": "bank_account", "destination": "ba_usd_old", "description": "STRIPE PAYOUT",
    })
    book(sent, f"Stripe payout {po} to bank", [("bank", "debit", amount), ("stripe_clearing", "credit", amount)],
         ref=po)
    book(failed, f"Stripe payout {po} failed: account closed", [
        ("stripe_clearing", "debit", amount), ("bank", "credit", amount)],
        ref=po, kind="reversal", reverses=f"je-{po}", jid=f"je-{po}-failed")

    # A charge presented in EUR, settled in USD; booked in EUR (the fee converted back).
    rate = Decimal(repr(DEMO_EXCHANGE_RATE))
    gross_eur = rng.randrange(1_000, 15_000)
    gross_usd = int((gross_eur * rate).to_integral_value(ROUND_HALF_EVEN))
    fee_usd = _fee(usd, gross_usd)
    fee_eur = int((fee_usd / rate).to_integral_value(ROUND_HALF_EVEN))
    fx = ids.new("ch_")
    converted = _balance_txn(ids, created=next(clock), amount=gross_usd, fee=fee_usd, currency=usd,
                             category="charge", source=fx, description=f"Order {fx[-6:]} (EUR)")
    converted["exchange_rate"] = DEMO_EXCHANGE_RATE
    sc.stripe_balance_transactions.append(converted)
    book(converted, f"Charge {fx} presented in EUR", [
        ("stripe_clearing", "debit", gross_eur - fee_eur), ("stripe_fees", "debit", fee_eur),
        ("revenue", "credit", gross_eur)], ref=fx, currency="EUR")


def _inject(cls: str, day: str, sc: Scenario, ids: _Ids, rng: random.Random,
            day_charges: list[tuple[str, str, int, str]]) -> None:
    lo, hi = day_bounds_us(day)
    lo_s, hi_s = lo // _US, hi // _US
    currency = "USD"
    gross = 4_200 + rng.randrange(0, 100) * 10
    fee = _fee(currency, gross)
    created = lo_s + rng.randrange(4 * 3600, 20 * 3600)

    def charge_entry(jid: str, ch: str, *, ts_s: int = created, gross_: int = gross, fee_: int = fee,
                     cur: str = currency) -> dict:
        return _entry(jid, ts_s * _US, f"Charge {ch}", [
            (account_id("stripe_clearing", cur), "debit", gross_ - fee_, cur),
            (account_id("stripe_fees", cur), "debit", fee_, cur),
            (account_id("revenue", cur), "credit", gross_, cur),
        ], provider="stripe", ref=ch)

    def charge_txn(ch: str, *, ts_s: int = created, cur: str = currency) -> dict:
        return _balance_txn(ids, created=ts_s, amount=gross, fee=fee, currency=cur, category="charge",
                            source=ch, description=f"Order {ch[-6:]}")

    ch = ids.new("ch_")
    jid = f"je-{ch}"
    inj = Injection(cls=cls, day=day, provider="stripe", provider_id=None, journal_id=None, note="")
    if cls == "LEDGER_MISSING":
        txn = charge_txn(ch)
        sc.stripe_balance_transactions.append(txn)
        inj.provider_id, inj.note = txn["id"], "Stripe charge never booked in the ledger"
    elif cls == "PROVIDER_MISSING":
        sc.entries.append(charge_entry(jid, ch))
        inj.journal_id, inj.note = jid, "ledger books a Stripe charge Stripe does not have"
    elif cls == "AMOUNT_MISMATCH":
        txn = charge_txn(ch)
        sc.stripe_balance_transactions.append(txn)
        sc.entries.append(charge_entry(jid, ch, gross_=gross + 100))
        inj.provider_id, inj.journal_id, inj.note = txn["id"], jid, "ledger gross is 1.00 too high"
    elif cls == "FEE_MISMATCH":
        txn = charge_txn(ch)
        sc.stripe_balance_transactions.append(txn)
        sc.entries.append(charge_entry(jid, ch, fee_=fee - 7))
        inj.provider_id, inj.journal_id, inj.note = txn["id"], jid, "ledger fee is 0.07 too low"
    elif cls == "CURRENCY_MISMATCH":
        txn = charge_txn(ch)
        sc.stripe_balance_transactions.append(txn)
        sc.entries.append(charge_entry(jid, ch, cur="EUR"))
        inj.provider_id, inj.journal_id, inj.note = txn["id"], jid, "ledger booked EUR, Stripe charged USD"
    elif cls == "DUPLICATE_PROVIDER":
        first, second = charge_txn(ch), charge_txn(ch, ts_s=created + 5)
        sc.stripe_balance_transactions += [first, second]
        sc.entries.append(charge_entry(jid, ch))
        inj.journal_id, inj.note = jid, f"two Stripe balance transactions for {ch}"
        inj.provider_id = min(first["id"], second["id"])
    elif cls == "DUPLICATE_LEDGER":
        txn = charge_txn(ch)
        sc.stripe_balance_transactions.append(txn)
        sc.entries += [charge_entry(jid, ch), charge_entry(f"{jid}-dup", ch, ts_s=created + 60)]
        inj.provider_id, inj.note = txn["id"], "the same Stripe charge booked twice"
        inj.journal_id = jid
    elif cls == "STATUS_MISMATCH":
        payout_id = f"pay_{day.replace('-', '')}_stuck"
        amount = 150_000
        sc.creator_payouts.append({
            "payout_id": payout_id, "amount_minor": amount, "currency": currency,
            "destination": "creator_4242", "created_at": format_ts_us(created * _US),
            "settled_at": None, "status": "pending", "stuck": True,
            "initiated_by": "ops:oscar", "approvals": [("fin:lena", "finance-lead"), ("sec:sam", "security-engineer")],
        })
        pjid = f"je-{payout_id}"
        sc.entries.append(_entry(pjid, (created + 900) * _US, f"Creator payout {payout_id} settled", [
            (account_id("creator_payable", currency), "debit", amount, currency),
            (account_id("payout_clearing", currency), "credit", amount, currency),
        ], provider="payout_sandbox", ref=payout_id))
        inj.provider, inj.provider_id, inj.journal_id = "payout_sandbox", payout_id, pjid
        inj.note = "ledger books the payout settled; the provider still has it pending"
    elif cls == "TIMING_WINDOW":
        # The ledger booked it 40 s before midnight; Stripe created it 30 s after.
        txn = charge_txn(ch, ts_s=hi_s + 30)
        sc.stripe_balance_transactions.append(txn)
        sc.entries.append(charge_entry(jid, ch, ts_s=hi_s - 40))
        inj.provider_id, inj.journal_id = txn["id"], jid
        inj.note = "ledger booked the charge 40 s before midnight, Stripe created it 30 s after"
    else:  # pragma: no cover - DISCREPANCY_CLASSES is exhaustive
        raise ValueError(cls)
    sc.injections.append(inj)
