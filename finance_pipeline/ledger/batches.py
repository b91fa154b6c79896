"""Journal batches: stage the payload first, then apply it; an interrupted apply can roll forward.

Staging validates the whole payload and stores it with the expected entry count in one
transaction; applying posts whatever of it is missing (idempotent) and marks the batch applied.
A batch is complete when every expected entry is posted under its batch_id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa

from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.journal import FieldError, JournalEntry
from finance_pipeline.ledger.audit import now_us as _now_us
from finance_pipeline.ledger.audit import record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.errors import BatchConflictError, BatchError
from finance_pipeline.ledger.posting import EntryWindow, PostResult, plan_entries, write_plan
from finance_pipeline.ledger.schema import ID_LEN, journal_batches, journal_entries


@dataclass(frozen=True, slots=True)
class BatchStatus:
    batch_id: str
    status: str  # staged | applied
    expected: int
    applied: int  # entries posted under this batch_id
    source: str | None
    created_at_us: int
    applied_at_us: int | None

    @property
    def complete(self) -> bool:
        return self.status == "applied" and self.applied == self.expected


def _check_batch_id(batch_id: object) -> str:
    if not isinstance(batch_id, str) or not 1 <= len(batch_id) <= ID_LEN:
        raise BatchError([FieldError("batch_id", f"must be a string of 1-{ID_LEN} characters, "
                                                 f"got {batch_id!r}")])
    return batch_id


def _payload_of(entries: Sequence[JournalEntry | dict]) -> list:
    return [e.to_leaf() if isinstance(e, JournalEntry) else e for e in entries]


def _duplicate_ids(payload: list) -> list[FieldError]:
    # A batch holds each entry once, so "expected" and "applied" count the same things.
    seen: dict[str, int] = {}
    errors = []
    for i, obj in enumerate(payload):
        jid = obj.get("journal_id") if isinstance(obj, dict) else None
        if not isinstance(jid, str):
            continue
        if jid in seen:
            errors.append(FieldError(f"entries[{i}].journal_id",
                                     f"{jid!r} already appears at entries[{seen[jid]}]; a batch "
                                     "holds each entry once"))
        else:
            seen[jid] = i
    return errors


def stage_batch(
    engine: sa.Engine,
    batch_id: str,
    entries: Sequence[JournalEntry | dict],
    source: str | None = None,
    *,
    apply: bool = True,
    now_us: int | None = None,
    actor: str = "system",
    window: EntryWindow = EntryWindow(),
) -> PostResult | None:
    """Validate and stage ``entries`` as batch ``batch_id``, then (by default) apply it.

    Staging the same payload again is a no-op (then applying rolls forward what is missing);
    another payload under a used batch_id is refused. Returns the apply result, or None
    when ``apply`` is False. Nothing is written when the payload is invalid.
    """
    _check_batch_id(batch_id)
    if isinstance(entries, (dict, JournalEntry)) or not isinstance(entries, Sequence):
        raise TypeError("stage_batch takes a sequence of entries")
    payload = _payload_of(entries)
    now = _now_us() if now_us is None else now_us

    with begin_write(engine) as conn:
        row = conn.execute(
            sa.select(journal_batches.c.staged_payload, journal_batches.c.source)
            .where(journal_batches.c.batch_id == batch_id)
        ).first()
        duplicates = _duplicate_ids(payload)
        if duplicates:
            raise BatchError(duplicates)
        # Validates everything; raises the posting errors with entries[i] paths.
        plan_entries(conn, payload, batch_id=batch_id, pending_batch=batch_id, window=window)
        text = canonical_str(payload)
        if row is not None and row.staged_payload != text:
            raise BatchConflictError([FieldError(
                "batch_id",
                f"batch {batch_id!r} was already staged with a different payload "
                f"(source {row.source!r}); use a new batch id for different entries",
            )])
        if row is None:
            conn.execute(journal_batches.insert().values(
                batch_id=batch_id, expected_entries=len(payload), staged_payload=text,
                status="staged", created_at_us=now, applied_at_us=None, source=source,
            ))
            record_event(conn, actor, "journal.batch_stage", "journal_batch", batch_id,
                         {"expected_entries": len(payload), "source": source}, ts_us=now)
    if not apply:
        return None
    return apply_batch(engine, batch_id, now_us=now_us, actor=actor, window=window)


def apply_batch(
    engine: sa.Engine, batch_id: str, *, now_us: int | None = None, actor: str = "system",
    window: EntryWindow = EntryWindow(),
) -> PostResult:
    """Post whatever of the staged batch is missing and mark it applied (idempotent).

    Refuses with BatchError when the batch is unknown or its staged payload is unreadable;
    the posting errors (validation, unknown account, closed day, conflict) propagate as is.
    """
    _check_batch_id(batch_id)
    now = _now_us() if now_us is None else now_us
    with begin_write(engine) as conn:
        row = conn.execute(
            sa.select(journal_batches).where(journal_batches.c.batch_id == batch_id)
        ).first()
        if row is None:
            raise BatchError([FieldError(
                "batch_id", f"no batch {batch_id!r} is staged; stage it first "
                            f"(`finance-pipeline journal import FILE --batch-id {batch_id}`)")])
        try:
            payload = json.loads(row.staged_payload)
        except ValueError as exc:
            payload, problem = None, f"is not valid JSON ({exc})"
        else:
            problem = None if isinstance(payload, list) else "is not a JSON array"
        if problem is None and len(payload) != row.expected_entries:
            problem = f"holds {len(payload)} entries but {row.expected_entries} are expected"
        if problem is None:
            dup = _duplicate_ids(payload)
            problem = f"repeats journal_ids ({dup[0]})" if dup else None
        if problem is not None:
            raise BatchError([FieldError(
                "staged_payload", f"of batch {batch_id!r} {problem}; it cannot be applied: "
                                  "re-import the entries under a new batch id")])
        plan = plan_entries(conn, payload, batch_id=batch_id, window=window)
        result = write_plan(conn, plan, now_us=now, actor=actor, batch_id=batch_id)
        if row.status != "applied":
            conn.execute(
                journal_batches.update().where(journal_batches.c.batch_id == batch_id)
                .values(status="applied", applied_at_us=now)
            )
    return result


def batch_status(engine: sa.Engine, batch_id: str) -> BatchStatus:
    """Expected versus applied entries of one batch; BatchError when it does not exist."""
    with engine.connect() as conn:
        statuses = _statuses(conn, journal_batches.c.batch_id == batch_id)
    if not statuses:
        raise BatchError([FieldError("batch_id", f"no batch {batch_id!r} exists")])
    return statuses[0]


def incomplete_batches(engine: sa.Engine) -> list[BatchStatus]:
    """Batches not yet applied, or with fewer entries posted than expected (for the repair job)."""
    with engine.connect() as conn:
        return [s for s in _statuses(conn, sa.true()) if not s.complete]


def _statuses(conn: sa.Connection, where) -> list[BatchStatus]:
    b = journal_batches.c
    # Correlated count: served by the index on journal_entries.batch_id.
    applied = (
        sa.select(sa.func.count()).select_from(journal_entries)
        .where(journal_entries.c.batch_id == b.batch_id)
        .scalar_subquery()
    )
    stmt = (
        sa.select(b.batch_id, b.status, b.expected_entries, applied,
                  b.source, b.created_at_us, b.applied_at_us)
        .where(where)
        .order_by(b.created_at_us, b.batch_id)
    )
    return [BatchStatus(*row) for row in conn.execute(stmt)]
