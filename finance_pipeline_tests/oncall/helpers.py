"""Shared helpers for the on-call tests: a real local webhook receiver, a partly applied batch."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import sqlalchemy as sa


class WebhookReceiver:
    """An HTTP server on a free 127.0.0.1 port that records every POST.

    ``statuses`` scripts the answers in order (then 200 for ever), e.g. [500, 500] fails twice.
    """

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = owner.statuses.pop(0) if owner.statuses else 200
                owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body, "status": status})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def json_bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

def refused_url() -> str:
    """A URL on which nothing listens (a port just released), so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/alerts"

def make_partial_batch(engine: sa.Engine, batch_id: str, entries: list[dict], applied: int,
                       *, staged_at_us: int) -> None:
    """Stage ``entries`` as a batch without applying it, then post only the first ``applied``
    of them through the posting core under the batch id: an import that stopped half-way."""
    from finance_pipeline.ledger.batches import stage_batch
    from finance_pipeline.ledger.posting import post_entries

    stage_batch(engine, batch_id, entries, source="test import", apply=False, now_us=staged_at_us,
                actor="test")
    if applied:
        post_entries(engine, entries[:applied], batch_id=batch_id, actor="test")

HOUR_US = 3600 * 10**6

BIG_USD = 15_000_000  # USD 150,000.00: the default policy wants finance-lead and security-engineer

def make_stuck_payout(engine: sa.Engine, sandbox, payout_id: str, *, at_us: int,
                      amount_minor: int = BIG_USD) -> None:
    """A payout created, approved by finance-lead and security-engineer and submitted at
    ``at_us`` while the provider keeps it pending (the sandbox marks it stuck), all through the
    payouts service as production does. Approvals expire 24 h after ``at_us``."""
    from finance_pipeline.providers.payout_client import PayoutProviderClient
    from finance_pipeline.payouts.service import approve, create_payout, submit_or_retrigger

    create_payout(engine, payout_id, amount_minor, "USD", "creator_4242", "ops:oscar", now_us=at_us)
    approve(engine, payout_id, "fin:lena", "finance-lead", at_us, approver_roles=["finance-lead"])
    approve(engine, payout_id, "sec:sam", "security-engineer", at_us, approver_roles=["security-engineer"])
    sandbox.mark_stuck([payout_id])
    with PayoutProviderClient(sandbox.url, sandbox.token) as client:
        outcome = submit_or_retrigger(engine, payout_id, client, "ops:oscar", at_us)
    assert outcome.status == "pending", outcome

def renew_approvals(engine: sa.Engine, payout_id: str) -> None:
    """Both approvers approve again now (an expired approval is renewed)."""
    from finance_pipeline.payouts.service import approve

    approve(engine, payout_id, "fin:lena", "finance-lead", approver_roles=["finance-lead"])
    approve(engine, payout_id, "sec:sam", "security-engineer", approver_roles=["security-engineer"])

WORLD_START = "2026-11-01"

LATE_DAY = "2026-11-02"

LATE_BATCH = "late-import-2026-11-02"

def _late_charges() -> tuple[list[dict], list[dict]]:
    """Two Stripe charges of LATE_DAY: the balance transactions and their ledger entries."""
    from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us

    lo_s = day_bounds_us(LATE_DAY)[0] // 10**6
    txns, entries = [], []
    for n, (gross, fee) in enumerate(((5_000, 175), (12_000, 378))):
        created = lo_s + (14 + n) * 3600
        ch, txn_id = f"ch_late_{n}", f"txn_late_{n}"
        txns.append({
            "id": txn_id, "object": "balance_transaction", "amount": gross, "available_on": created + 172800,
            "created": created, "currency": "usd", "description": f"Order late {n}", "exchange_rate": None,
            "fee": fee, "fee_details": [{"amount": fee, "application": None, "currency": "usd",
                                         "description": "Stripe processing fees", "type": "stripe_fee"}],
            "net": gross - fee, "reporting_category": "charge", "source": ch, "status": "available",
            "type": "charge",
        })
        entries.append({
            "journal_id": f"je-{ch}", "ts": format_ts_us(created * 10**6), "kind": "standard",
            "memo": f"Charge {ch}", "batch_id": None, "provider": "stripe", "provider_reference": ch,
            "reverses": None, "posted_by": "system:importer", "reviewed_by": None,
            "lines": [
                {"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": gross - fee, "currency": "USD"},
                {"account_id": "stripe_fees_usd", "direction": "debit", "amount_minor": fee, "currency": "USD"},
                {"account_id": "revenue_usd", "direction": "credit", "amount_minor": gross, "currency": "USD"},
            ],
        })
    return txns, entries

def inject_partial_batch(world) -> list[dict]:
    """Stripe has two late charges of LATE_DAY; their import batch stopped after the first
    entry, an hour ago (past the grace period). Returns the batch's entries."""
    from finance_pipeline.ledger.audit import now_us
    from finance_pipeline.ledger.engine import create_ledger_engine

    txns, entries = _late_charges()
    world.stripe.add_objects(balance_transactions=txns)
    engine = create_ledger_engine(world.database_url)
    try:
        make_partial_batch(engine, LATE_BATCH, entries, applied=1, staged_at_us=now_us() - HOUR_US)
    finally:
        engine.dispose()
    return entries

def ops_definitions():
    from finance_pipeline.definitions import build_definitions

    return build_definitions(WORLD_START)
