"""What an operator posts to resolve the demo's injected discrepancies (the runbook's fixes).

Adjusting entries carry the provider reference they correct and a reviewer other than the
poster (two-person review); wrong bookings are reversed, never edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finance_pipeline.demo.scenario import Injection, Scenario, account_id
from finance_pipeline.domain.timeutil import format_ts_us, parse_ts_us

POSTER, REVIEWER = "ops:ana", "fin:lena"


@dataclass
class Fix:
    injection: Injection
    entries: list[dict]
    settle_payout: str | None = None  # re-trigger this payout's settlement at the provider
    settle_at: str | None = None

    def describe(self) -> str:
        what = [f"{e['kind']} {e['journal_id']}" for e in self.entries]
        if self.settle_payout:
            what.append(f"re-trigger settlement of {self.settle_payout}")
        return f"{self.injection.cls:<18} {self.injection.day}: " + ", ".join(what)


def _entry(jid: str, ts: str, kind: str, ref: str, lines: list[tuple[str, str, int, str]],
           provider: str = "stripe", reverses: str | None = None, memo: str = "") -> dict:
    return {
        "journal_id": jid, "ts": ts, "kind": kind, "memo": memo or f"{kind} for {ref}", "batch_id": None,
        "provider": provider, "provider_reference": ref, "reverses": reverses, "posted_by": POSTER,
        "reviewed_by": REVIEWER if kind == "adjustment" else None,
        "lines": [{"account_id": a, "direction": d, "amount_minor": m, "currency": c} for a, d, m, c in lines],
    }


def _reversal(original: dict, jid: str) -> dict:
    ts = format_ts_us(parse_ts_us(original["ts"]) + 60_000_000)
    lines = [(l["account_id"], "credit" if l["direction"] == "debit" else "debit", l["amount_minor"], l["currency"])
             for l in original["lines"]]
    return _entry(jid, ts, "reversal", original["provider_reference"], lines, provider=original["provider"],
                  reverses=original["journal_id"], memo=f"Reverse {original['journal_id']}")


def _charge_lines(txn: dict) -> list[tuple[str, str, int, str]]:
    cur = txn["currency"].upper()
    return [(account_id("stripe_clearing", cur), "debit", txn["net"], cur),
            (account_id("stripe_fees", cur), "debit", txn["fee"], cur),
            (account_id("revenue", cur), "credit", txn["amount"], cur)]


def corrections(sc: Scenario) -> list[Fix]:
    """One fix per injected discrepancy (TIMING_WINDOW needs none: it resolves itself)."""
    entries = {e["journal_id"]: e for e in sc.entries}
    txns = {t["id"]: t for t in sc.stripe_balance_transactions}
    fixes = []
    for inj in sc.injections:
        entry = entries.get(inj.journal_id or "")
        later = format_ts_us(parse_ts_us(entry["ts"]) + 60_000_000) if entry else None
        tag = f"fix-{inj.cls.lower()}-{inj.day}"
        if inj.cls == "LEDGER_MISSING":
            txn = txns[inj.provider_id]
            fixes.append(Fix(inj, [_entry(tag, format_ts_us(txn["created"] * 1_000_000), "adjustment",
                                          txn["source"], _charge_lines(txn), memo=f"Book missing {txn['source']}")]))
        elif inj.cls in ("PROVIDER_MISSING",):
            fixes.append(Fix(inj, [_reversal(entry, tag)]))
        elif inj.cls == "DUPLICATE_LEDGER":
            fixes.append(Fix(inj, [_reversal(entries[f"{inj.journal_id}-dup"], tag)]))
        elif inj.cls == "AMOUNT_MISMATCH":
            diff = inj_diff(entry, txns[inj.provider_id])
            fixes.append(Fix(inj, [_entry(tag, later, "adjustment", entry["provider_reference"], [
                ("revenue_usd", "debit", diff, "USD"), ("stripe_clearing_usd", "credit", diff, "USD")])]))
        elif inj.cls == "FEE_MISMATCH":
            fee_booked = next(l["amount_minor"] for l in entry["lines"] if l["account_id"].startswith("stripe_fees"))
            diff = txns[inj.provider_id]["fee"] - fee_booked
            fixes.append(Fix(inj, [_entry(tag, later, "adjustment", entry["provider_reference"], [
                ("stripe_fees_usd", "debit", diff, "USD"), ("stripe_clearing_usd", "credit", diff, "USD")])]))
        elif inj.cls == "CURRENCY_MISMATCH":
            txn = txns[inj.provider_id]
            fixes.append(Fix(inj, [_reversal(entry, f"{tag}-rev"),
                                   _entry(f"{tag}-rebook", later, "adjustment", entry["provider_reference"],
                                          _charge_lines(txn), memo="Rebook in the charged currency")]))
        elif inj.cls == "DUPLICATE_PROVIDER":
            ref = entry["provider_reference"]
            second = max(t["id"] for t in sc.stripe_balance_transactions if t["source"] == ref)
            fixes.append(Fix(inj, [_entry(tag, later, "adjustment", second, _charge_lines(txns[second]),
                                          memo=f"Stripe recorded {ref} twice: book {second}")]))
        elif inj.cls == "STATUS_MISMATCH":
            fixes.append(Fix(inj, [], settle_payout=inj.provider_id, settle_at=later))
    return fixes


def inj_diff(entry: dict, txn: dict) -> int:
    gross_booked = next(l["amount_minor"] for l in entry["lines"] if l["account_id"].startswith("revenue"))
    return gross_booked - txn["amount"]


def post_with_review(engine: Any, entries: list[dict], *, now_us: int | None = None, window: Any = None) -> None:
    """Post the corrections as the runbook does: the operator submits each, a finance lead
    (another person) approves it; the entry then carries both names. ``window``: the
    EntryWindow the ledger accepts (None: the embedded default)."""
    from finance_pipeline.ledger import reviews
    from finance_pipeline.ledger.audit import now_us as clock
    from finance_pipeline.ledger.posting import EntryWindow

    window = window or EntryWindow()
    for e in entries:
        body = {k: v for k, v in e.items() if k not in ("posted_by", "reviewed_by")}
        now = clock() if now_us is None else now_us
        reviews.submit(engine, body, submitter=POSTER, now_us=now, window=window)
        reviews.review(engine, e["journal_id"], reviewer=REVIEWER, reviewer_roles={"finance-lead"},
                       approve=True, now_us=now, window=window)
