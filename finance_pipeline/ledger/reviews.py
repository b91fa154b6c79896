"""Two-person review of manual postings.

A person's entry (API or CLI: a standard, adjustment or reversal entry typed by someone) is
submitted, checked as the posting core would check it, and kept pending. It is posted only
when a second, different actor holding a reviewer role approves it before it expires; the
entry's `posted_by` is the submitter and its `reviewed_by` the approver, both as their tokens
authenticated them, never as a body says. Every step is an audit event. Bulk imports by the
pipeline's service identity do not pass through here (ledger/batches.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.journal import FieldError, JournalValidationError, parse_entry
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.ledger.audit import record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.errors import JournalConflictError, LedgerError
from finance_pipeline.ledger.posting import EntryWindow, plan_entries, post_entries_in
from finance_pipeline.ledger.schema import journal_reviews
from finance_pipeline.settings import DEFAULT_JOURNAL_REVIEW_TTL_S

# Who may approve another person's entry.
REVIEWER_ROLES = frozenset({"finance-lead", "security-engineer"})
# Stands in for the approver while a submission is checked (adjustments must name one).
_PENDING_REVIEWER = "review:pending"


class ReviewError(LedgerError):
    """A review that cannot be done; ``status`` is the HTTP status that says why."""

    status = 409

    def __init__(self, message: str, field: str = "journal_id"):
        self.errors = [FieldError(field, message)]
        super().__init__(message)


class ReviewNotFoundError(ReviewError):
    status = 404


class ReviewForbiddenError(ReviewError):
    status = 403


@dataclass(frozen=True)
class Submission:
    journal_id: str
    status: str  # pending | posted | rejected
    entry: dict[str, Any]
    body_sha256: str
    submitted_by: str
    submitted_at_us: int
    expires_at_us: int
    reviewed_by: str | None = None
    reviewed_at_us: int | None = None
    comment: str | None = None

    def expired(self, now_us: int) -> bool:
        return self.status == "pending" and now_us >= self.expires_at_us

    def to_dict(self, now_us: int) -> dict[str, Any]:
        state = "expired" if self.expired(now_us) else self.status
        return {"journal_id": self.journal_id, "status": state, "submitted_by": self.submitted_by,
                "submitted_at": format_ts_us(self.submitted_at_us), "expires_at": format_ts_us(self.expires_at_us),
                "reviewed_by": self.reviewed_by,
                "reviewed_at": format_ts_us(self.reviewed_at_us) if self.reviewed_at_us is not None else None,
                "comment": self.comment, "entry": self.entry}


def _row(row: Any) -> Submission:
    import json

    m = row._mapping
    return Submission(journal_id=m["journal_id"], status=m["status"], entry=json.loads(m["body"]),
                      body_sha256=m["body_sha256"], submitted_by=m["submitted_by"],
                      submitted_at_us=int(m["submitted_at_us"]), expires_at_us=int(m["expires_at_us"]),
                      reviewed_by=m["reviewed_by"], reviewed_at_us=m["reviewed_at_us"], comment=m["comment"])


def submit(engine: sa.Engine, obj: Any, *, submitter: str, now_us: int,
           ttl_s: int = DEFAULT_JOURNAL_REVIEW_TTL_S, window: EntryWindow = EntryWindow()) -> tuple[Submission, bool]:
    """Keep ``obj`` pending review; (submission, created). The same body again is a no-op.
    ``window``: the timestamps an entry may have (the posting core's check).

    Raises JournalValidationError (and the posting core's errors: unknown account, closed or
    sealed day, a journal_id posted or pending with another body) naming the field; nothing
    is written then.
    """
    if not isinstance(obj, dict):
        raise JournalValidationError([FieldError("$", "must be a JSON object (one finance-journal/1 entry)")])
    errors: list[FieldError] = []
    if obj.get("posted_by") not in (None, submitter):
        errors.append(FieldError("posted_by", f"must be you, {submitter!r} (as your token says), or left out; "
                                              "each person submits with their own token"))
    if obj.get("reviewed_by") is not None:
        errors.append(FieldError("reviewed_by", "is set by the review, not by the submission: leave it out; a "
                                                "second person approves the entry with their own token"))
    body = {**obj, "posted_by": submitter, "reviewed_by": None}
    probe = {**body, "reviewed_by": _PENDING_REVIEWER}
    try:
        entry = parse_entry(probe)
    except JournalValidationError as exc:
        errors.extend(e for e in exc.errors if e.field != "reviewed_by")
        entry = None
    if errors:
        raise JournalValidationError(errors)
    assert entry is not None
    body = {**entry.to_leaf(), "reviewed_by": None}
    sha = hashlib.sha256(canonical_bytes(body)).hexdigest()
    with begin_write(engine) as conn:
        existing = conn.execute(sa.select(journal_reviews)
                                .where(journal_reviews.c.journal_id == entry.journal_id)).first()
        found = _row(existing) if existing is not None else None
        if found is not None and found.status == "pending" and not found.expired(now_us):
            if found.body_sha256 == sha:
                return found, False
            raise JournalConflictError([FieldError(
                "journal_id", f"{entry.journal_id!r} awaits review with another body (submitted by "
                              f"{found.submitted_by}); submit this entry under a new journal_id")])
        # A rejected or expired submission may be submitted again (its history is in the audit log).
        plan = plan_entries(conn, [probe], window=window)  # every check of the posting core, nothing written
        if plan.present_ids:
            raise JournalConflictError([FieldError("journal_id", f"{entry.journal_id!r} is already posted")])
        values = dict(journal_id=entry.journal_id, body=canonical_bytes(body).decode("utf-8"), body_sha256=sha,
                      ts_us=entry.ts_us, status="pending", submitted_by=submitter, submitted_at_us=now_us,
                      expires_at_us=now_us + ttl_s * 1_000_000)
        if found is None:
            conn.execute(journal_reviews.insert().values(**values))
        else:
            conn.execute(journal_reviews.update().where(journal_reviews.c.journal_id == entry.journal_id)
                         .values(**values, reviewed_by=None, reviewed_at_us=None, comment=None))
        record_event(conn, submitter, "journal.submit", "journal_entry", entry.journal_id,
                     {"kind": entry.kind, "ts": format_ts_us(entry.ts_us), "body_sha256": sha,
                      "expires_at": format_ts_us(values["expires_at_us"])}, ts_us=now_us)
    return Submission(journal_id=entry.journal_id, status="pending", entry=body, body_sha256=sha,
                      submitted_by=submitter, submitted_at_us=now_us, expires_at_us=values["expires_at_us"]), True


def review(engine: sa.Engine, journal_id: str, *, reviewer: str, reviewer_roles: Iterable[str], approve: bool,
           now_us: int, comment: str | None = None, window: EntryWindow = EntryWindow()) -> Submission:
    """Approve (post, with ``reviewed_by`` = ``reviewer``) or reject a pending submission."""
    roles = frozenset(reviewer_roles)
    with begin_write(engine) as conn:
        query = sa.select(journal_reviews).where(journal_reviews.c.journal_id == journal_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise ReviewNotFoundError(f"no submission {journal_id!r} awaits review; list them with "
                                      "GET /finance/journal/reviews or `finance-pipeline journal pending`")
        found = _row(row)
        if found.status != "pending":
            raise ReviewError(f"{journal_id!r} was already {found.status} by {found.reviewed_by}")
        if found.expired(now_us):
            raise ReviewError(f"{journal_id!r} expired at {format_ts_us(found.expires_at_us)} without a review; "
                              "its author submits it again")
        if reviewer == found.submitted_by:
            raise ReviewForbiddenError(f"{reviewer!r} submitted {journal_id!r} and cannot review it: a second "
                                       "person approves (two-person review)", field="reviewer")
        if not roles & REVIEWER_ROLES:
            raise ReviewForbiddenError(f"reviewing needs one of the roles {', '.join(sorted(REVIEWER_ROLES))}; "
                                       f"{reviewer!r} holds {', '.join(sorted(roles)) or 'none'}", field="reviewer")
        if approve:
            post_entries_in(conn, [{**found.entry, "reviewed_by": reviewer}], now_us=now_us, actor=reviewer,
                            window=window)
        status = "posted" if approve else "rejected"
        conn.execute(journal_reviews.update().where(journal_reviews.c.journal_id == journal_id).values(
            status=status, reviewed_by=reviewer, reviewed_at_us=now_us, comment=comment))
        record_event(conn, reviewer, "journal.approve" if approve else "journal.reject", "journal_entry",
                     journal_id, {"submitted_by": found.submitted_by, "comment": comment}, ts_us=now_us)
    return Submission(**{**found.__dict__, "status": status, "reviewed_by": reviewer, "reviewed_at_us": now_us,
                         "comment": comment})


def get(engine: sa.Engine, journal_id: str) -> Submission | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(journal_reviews).where(journal_reviews.c.journal_id == journal_id)).first()
    return _row(row) if row is not None else None


def pending(engine: sa.Engine, now_us: int, *, day: str | None = None) -> list[Submission]:
    """Submissions waiting for a review (expired ones left out), oldest first; of ``day`` only
    when given (by the entry's ts)."""
    query = sa.select(journal_reviews).where(journal_reviews.c.status == "pending",
                                             journal_reviews.c.expires_at_us > now_us)
    if day is not None:
        lo, hi = day_bounds_us(day)
        query = query.where(journal_reviews.c.ts_us >= lo, journal_reviews.c.ts_us < hi)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(journal_reviews.c.submitted_at_us, journal_reviews.c.journal_id)).all()
    return [_row(r) for r in rows]
