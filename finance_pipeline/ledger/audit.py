"""Append-only audit trail: who did what to which subject, with a JSON detail."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import json
import sqlalchemy as sa

from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.ledger.schema import audit_events


def now_us() -> int:
    """Current UTC time in microseconds since the epoch."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    ts_us: int
    actor: str
    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


def record_event(
    conn: sa.Connection,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    detail: dict[str, Any],
    *,
    ts_us: int | None = None,
) -> int:
    """Append one event inside the caller's transaction (so it commits or rolls back with it)."""
    if not isinstance(detail, dict):
        raise TypeError("detail must be a dict (stored as canonical JSON)")
    result = conn.execute(
        audit_events.insert().values(
            ts_us=now_us() if ts_us is None else ts_us,
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            # Canonical so the stored text does not depend on which writer produced it.
            detail=canonical_str(detail),
        )
    )
    return int(result.inserted_primary_key[0])


def list_events(
    engine: sa.Engine, *, subject_type: str | None = None, subject_id: str | None = None,
    action: str | None = None,
) -> list[AuditEvent]:
    """Events in the order they were recorded, optionally filtered."""
    stmt = sa.select(audit_events).order_by(audit_events.c.id)
    if subject_type is not None:
        stmt = stmt.where(audit_events.c.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(audit_events.c.subject_id == subject_id)
    if action is not None:
        stmt = stmt.where(audit_events.c.action == action)
    with engine.connect() as conn:
        return [
            AuditEvent(r.id, r.ts_us, r.actor, r.action, r.subject_type, r.subject_id,
                       json.loads(r.detail))
            for r in conn.execute(stmt)
        ]
