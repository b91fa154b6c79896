"""Stuck payouts: submitted to the provider (``pending``) and unchanged for longer than the SLA.

A payout's ``updated_at_us`` moves on every status change and on a re-trigger, so "pending
since" is that time; a re-triggered payout gets a fresh SLA and, if it sticks again, a fresh
alert. Three queries in all (payouts, their approvals, their audit events), whatever the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.ledger.schema import audit_events, payout_approvals, payouts
from finance_pipeline.oncall.notify import Alert
from finance_pipeline.payouts.service import Payout, payout_of_row
from finance_pipeline.settings import DEFAULT_STUCK_PAYOUT_SLA_S

STUCK_PAYOUT = "stuck_payout"
STUCK_STATUSES = ("pending",)
_US = 1_000_000
# The audit trail of a payout may be long; an alert carries the latest events.
_EVENTS_LIMIT = 20


@dataclass(frozen=True)
class StuckPayout:
    payout: Payout
    pending_for_s: int
    approvals: list[dict[str, Any]] = field(default_factory=list)
    audit_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def payout_id(self) -> str:
        return self.payout.payout_id

    @property
    def pending_since_us(self) -> int:
        return self.payout.updated_at_us

    @property
    def key(self) -> str:
        # Same payout, same pending spell: one alert. A re-trigger moves pending_since.
        return f"{STUCK_PAYOUT}:{self.payout_id}:{self.pending_since_us}"

    def summary(self) -> str:
        from finance_pipeline.domain.money import Money, is_currency

        p = self.payout
        amount = (Money(p.amount_minor, p.currency).format() if is_currency(p.currency)
                  else f"{p.currency} {p.amount_minor}")
        hours = self.pending_for_s / 3600
        roles = sorted({a["role"] for a in self.approvals if a["valid"]})
        return (f"payout {self.payout_id} ({amount} to {p.destination}) has been {p.status} for "
                f"{hours:.1f} h since {format_ts_us(self.pending_since_us)}; valid approvals: "
                f"{', '.join(roles) or 'none'}; re-trigger with `finance-pipeline retrigger-settlement "
                f"{self.payout_id} --actor YOU` or the retrigger_settlement job")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.payout.to_dict(),
            "pending_since": format_ts_us(self.pending_since_us), "pending_for_s": self.pending_for_s,
            "approvals": self.approvals, "audit_events": self.audit_events,
        }

    def to_alert(self) -> Alert:
        return Alert(kind=STUCK_PAYOUT, key=self.key, summary=self.summary(), severity="warning",
                     detail=self.to_dict())


def find_stuck_payouts(engine: sa.Engine, *, sla_s: int = DEFAULT_STUCK_PAYOUT_SLA_S,
                       now_us: int | None = None) -> list[StuckPayout]:
    """Payouts in a stuck status whose last change is older than ``sla_s``, oldest first."""
    from finance_pipeline.ledger.audit import now_us as _now_us

    now = _now_us() if now_us is None else now_us
    p, a, ev = payouts.c, payout_approvals.c, audit_events.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(payouts)
            .where(p.status.in_(STUCK_STATUSES), p.updated_at_us <= now - sla_s * _US)
            .order_by(p.updated_at_us, p.payout_id)
        ).all()
        ids = [r.payout_id for r in rows]
        approvals: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        events: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            for r in conn.execute(sa.select(payout_approvals).where(a.payout_id.in_(ids))
                                  .order_by(a.payout_id, a.approved_at_us, a.approver)):
                approvals[r.payout_id].append({
                    "approver": r.approver, "role": r.role,
                    "approved_at": format_ts_us(r.approved_at_us),
                    "expires_at": format_ts_us(r.expires_at_us), "valid": r.expires_at_us > now,
                })
            # Payout events are addressed by payout id whatever their subject_type wording.
            for r in conn.execute(sa.select(audit_events).where(ev.subject_id.in_(ids))
                                  .where(ev.subject_type.in_(("payout", "payouts")))
                                  .order_by(ev.id)):
                events[r.subject_id].append({
                    "id": r.id, "ts": format_ts_us(r.ts_us), "actor": r.actor, "action": r.action,
                    "detail": json.loads(r.detail),
                })
    return [
        StuckPayout(
            payout=payout_of_row(r), pending_for_s=(now - int(r.updated_at_us)) // _US,
            approvals=approvals[r.payout_id], audit_events=events[r.payout_id][-_EVENTS_LIMIT:],
        )
        for r in rows
    ]


def retrigger_settlement(engine: sa.Engine, payout_id: str, *, base_url: str, token: str,
                         actor: str, retry=None, policy=None):
    """Re-submit a payout to the provider through the payouts service, which checks the
    approval quorum of ``policy`` (a PayoutPolicy; None: the built-in tiers) first
    (``QuorumNotMetError`` names the missing roles) and audits the outcome.

    Raises the service's PayoutError subclasses (refused; nothing sent) and ProviderError.
    """
    from finance_pipeline.providers.payout_client import PayoutProviderClient
    from finance_pipeline.payouts.service import submit_or_retrigger

    kwargs = {"retry": retry} if retry is not None else {}
    with PayoutProviderClient(base_url, token, **kwargs) as client:
        return submit_or_retrigger(engine, payout_id, client, actor, policy=policy)
