"""Loads a demo scenario into the ledger and the two sandboxes' data files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from finance_pipeline.demo.scenario import Scenario, batch_id_for, build_scenario
from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.sandboxes.common import read_json_file, write_json_atomic

APPROVAL_TTL_US = 24 * 3600 * 1_000_000


@dataclass
class SeedResult:
    scenario: Scenario
    entries_applied: int
    stripe_data: Path
    payout_data: Path


def seed(engine: sa.Engine, stripe_data: Path, payout_data: Path, *, start: date, days: int, seed: int,
         inject: int = 1, charges_per_day: int = 12, window=None) -> SeedResult:
    """Write the scenario: accounts, one journal batch per day, payouts with approvals, and
    what Stripe and the payout provider recorded. Re-running with the same arguments is a no-op.
    ``window``: the EntryWindow the ledger accepts (None: the embedded default)."""
    from finance_pipeline.ledger.accounts import create_account
    from finance_pipeline.ledger.batches import stage_batch
    from finance_pipeline.ledger.migrate import upgrade
    from finance_pipeline.ledger.posting import EntryWindow

    upgrade(engine)
    sc = build_scenario(start, days, seed, inject=inject, charges_per_day=charges_per_day)
    for acc in sc.accounts:
        create_account(engine, acc["account_id"], acc["name"], acc["type"], acc["currency"], acc["role"],
                       actor="system:demo-seed")
    applied = 0
    for day in sc.day_keys:
        todays = [e for e in sc.entries if e["batch_id"] == batch_id_for(day)]
        res = stage_batch(engine, batch_id_for(day), todays, source=f"demo seed {seed}",
                          actor="system:demo-seed", window=window or EntryWindow())
        applied += res.created + res.already_present
    _seed_payouts(engine, sc)
    _merge_stripe(stripe_data, sc)
    _merge_payouts(payout_data, sc)
    return SeedResult(sc, applied, stripe_data, payout_data)


def _seed_payouts(engine: sa.Engine, sc: Scenario) -> None:
    from finance_pipeline.ledger.schema import payout_approvals, payouts

    with engine.begin() as conn:
        known = set(conn.execute(sa.select(payouts.c.payout_id)).scalars())
        for p in sc.creator_payouts:
            if p["payout_id"] in known:
                continue
            created = parse_ts_us(p["created_at"])
            updated = parse_ts_us(p["settled_at"]) if p["settled_at"] else created
            conn.execute(payouts.insert().values(
                payout_id=p["payout_id"], amount_minor=p["amount_minor"], currency=p["currency"],
                destination=p["destination"], status=p["status"], initiated_by=p["initiated_by"],
                provider_reference=p["payout_id"], created_at_us=created, updated_at_us=updated,
            ))
            for n, (approver, role) in enumerate(p["approvals"]):
                at = created + (n + 1) * 60_000_000
                conn.execute(payout_approvals.insert().values(
                    payout_id=p["payout_id"], approver=approver, role=role, approved_at_us=at,
                    expires_at_us=at + APPROVAL_TTL_US,
                ))


def _merge_stripe(path: Path, sc: Scenario) -> None:
    doc = read_json_file(path, "Stripe sandbox data") or {"balance_transactions": [], "payouts": []}
    for member, new in (("balance_transactions", sc.stripe_balance_transactions), ("payouts", sc.stripe_payouts)):
        have = {o["id"] for o in doc.setdefault(member, [])}
        doc[member] += [o for o in new if o["id"] not in have]
    write_json_atomic(path, doc)


def _merge_payouts(path: Path, sc: Scenario) -> None:
    doc = read_json_file(path, "payout sandbox data") or {"payouts": [], "stuck_payout_ids": []}
    have = {p["payout_id"] for p in doc.setdefault("payouts", [])}
    stuck = set(doc.get("stuck_payout_ids", []))
    for p in sc.creator_payouts:
        if p.get("stuck"):
            stuck.add(p["payout_id"])
        if p["payout_id"] in have:
            continue
        doc["payouts"].append({
            "payout_id": p["payout_id"], "amount_minor": p["amount_minor"], "currency": p["currency"],
            "destination": p["destination"], "metadata": {}, "status": p["status"],
            "created_at": p["created_at"], "settled_at": p["settled_at"],
        })
    doc["stuck_payout_ids"] = sorted(stuck)
    write_json_atomic(path, doc)
