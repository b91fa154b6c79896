"""Repair a partly applied batch by rolling it forward, and say which days must be re-reconciled.

Rolling forward (``apply_batch``) posts exactly the staged entries that are missing, through
the posting core with all its checks; it never edits or deletes what is posted. A batch whose
staged payload is unreadable is refused: nobody can know what it should have contained, so
the entries must be re-imported under a new batch id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from finance_pipeline.domain.timeutil import day_of_us, parse_ts_us

REPAIR_ACTION = "ops.batch_repair"
REFUSED_ACTION = "ops.batch_repair_refused"


class RepairRefusedError(RuntimeError):
    """The batch cannot be rolled forward; nothing was written but the audit event."""

    def __init__(self, batch_id: str, reason: str, audit_event_id: int | None):
        super().__init__(f"batch {batch_id}: repair refused: {reason}")
        self.batch_id = batch_id
        self.reason = reason
        self.audit_event_id = audit_event_id


@dataclass(frozen=True)
class RepairResult:
    batch_id: str
    created: int
    already_present: int
    created_ids: tuple[str, ...]
    days: tuple[str, ...]  # UTC days of the entries this repair posted
    audit_event_id: int

    def to_dict(self) -> dict:
        return {"batch_id": self.batch_id, "created": self.created,
                "already_present": self.already_present, "days": list(self.days),
                "audit_event_id": self.audit_event_id}


def _days_of(engine: sa.Engine, batch_id: str, ids: set[str]) -> tuple[str, ...]:
    from finance_pipeline.ledger.schema import journal_batches

    with engine.connect() as conn:
        text = conn.execute(sa.select(journal_batches.c.staged_payload)
                            .where(journal_batches.c.batch_id == batch_id)).scalar_one()
    days = {day_of_us(parse_ts_us(obj["ts"])).isoformat()
            for obj in json.loads(text) if obj.get("journal_id") in ids}
    return tuple(sorted(days))


def _record(engine: sa.Engine, actor: str, action: str, batch_id: str, detail: dict) -> int:
    from finance_pipeline.ledger.audit import record_event
    from finance_pipeline.ledger.engine import begin_write

    with begin_write(engine) as conn:
        return record_event(conn, actor, action, "journal_batch", batch_id, detail)


def repair_batch(engine: sa.Engine, batch_id: str, *, actor: str, window=None) -> RepairResult:
    """Roll ``batch_id`` forward; returns what was posted and the days it touched.
    ``window`` (an EntryWindow; None: the embedded default): the timestamps an entry may have.

    Raises RepairRefusedError for an unknown batch or an invalid staged payload (audited);
    a posting error (closed day, unknown account, ...) is audited as refused and re-raised.
    Repairing a complete batch is a no-op that touches no day.
    """
    from finance_pipeline.domain.journal import JournalValidationError
    from finance_pipeline.ledger.batches import apply_batch
    from finance_pipeline.ledger.errors import BatchError, LedgerError
    from finance_pipeline.ledger.posting import EntryWindow

    if not actor:
        raise ValueError("actor is required: say who is repairing the batch")
    try:
        result = apply_batch(engine, batch_id, actor=actor, window=window or EntryWindow())
    except BatchError as exc:
        reason = "; ".join(map(str, exc.errors)) or str(exc)
        event = _record(engine, actor, REFUSED_ACTION, batch_id, {"reason": reason})
        raise RepairRefusedError(batch_id, reason, event) from exc
    except (LedgerError, JournalValidationError) as exc:
        reason = "; ".join(map(str, getattr(exc, "errors", []))) or str(exc)
        _record(engine, actor, REFUSED_ACTION, batch_id,
                {"reason": reason, "error": type(exc).__name__})
        raise
    days = _days_of(engine, batch_id, set(result.created_ids)) if result.created else ()
    event = _record(engine, actor, REPAIR_ACTION, batch_id, {
        "created": result.created, "already_present": result.already_present, "days": list(days),
        "created_ids": list(result.created_ids[:100]),
    })
    return RepairResult(batch_id, result.created, result.already_present, result.created_ids,
                        days, event)
