"""Journal entries: submit, review, list (finance-journal/1)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from finance_pipeline.api import schemas
from finance_pipeline.api.common import (
    ApiContext,
    DAY_PATTERN,
    _body_doc,
    _decode_cursor,
    _encode_cursor,
    _errors,
    _journal_error,
    _journal_page,
    _parse_day,
    _submission_out,
)
from finance_pipeline.api.auth import (
    POST_JOURNAL_ROLES,
    READ_ROLES,
    REVIEWER_ROLES,
    SERVICE_ROLES,
    ApiError,
    require_role,
)
from finance_pipeline.api.tokens import Principal
from finance_pipeline.domain.journal import FieldError, JournalValidationError, parse_entry
from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.ledger import reviews
from finance_pipeline.ledger.errors import LedgerError
from finance_pipeline.ledger.posting import post_entries


def build_router(ctx: ApiContext) -> APIRouter:
    """The journal endpoints over ``ctx``."""
    engine, settings, principal, raw_body = ctx.engine, ctx.settings, ctx.principal, ctx.raw_body
    router = APIRouter()

    @router.post("/finance/journal", status_code=202, response_model=schemas.JournalSubmissionOut,
                 responses={200: {"model": schemas.JournalSubmissionOut,
                                  "description": "Already submitted with this exact body, still pending."},
                            201: {"model": schemas.JournalPostResult,
                                  "description": "Posted at once: the pipeline's service identity only."},
                            **_errors(401, 403, 409, 413, 422)},
                 openapi_extra=_body_doc(schemas.JournalEntryInput), tags=["journal"],
                 summary="Submit one journal entry (finance-journal/1) for review")
    def post_journal(who: Principal = Depends(principal), body: bytes = Depends(raw_body)) -> Any:
        """202: the entry waits for a second person (POST /finance/journal/{journal_id}/review);
        posted_by is you, reviewed_by the approver, both from the tokens, never from the body.
        A service token (system:...) posts at once: 201, or 200 when already posted. 409 when
        the journal_id is posted or pending with another body or its day is closed or sealed."""
        require_role(who, POST_JOURNAL_ROLES, "post journal entries")
        try:
            obj = schemas.loads_body(body)
        except schemas.BodyError as exc:
            raise ApiError(422, exc.errors) from None
        if isinstance(obj, dict) and isinstance(obj.get("posted_by"), str) and obj["posted_by"] != who.actor:
            raise ApiError(403, [FieldError(
                "posted_by", f"must be the authenticated actor {who.actor!r}, got "
                             f"{obj['posted_by']!r}; each person posts with their own token")])
        problems = schemas.string_problems(obj)
        if problems:
            raise ApiError(422, problems)
        if who.roles & SERVICE_ROLES:
            return _post_as_service(obj, who)
        try:
            submission, created = reviews.submit(engine, obj, submitter=who.actor, now_us=settings.clock(),
                                                 ttl_s=settings.review_ttl_s, window=settings.entry_window)
        except (LedgerError, JournalValidationError) as exc:
            raise _journal_error(exc) from None
        return JSONResponse(_submission_out(submission, settings.clock()), status_code=202 if created else 200)

    def _post_as_service(obj: Any, who: Principal) -> JSONResponse:
        if isinstance(obj, dict) and obj.get("posted_by") is None:
            obj = {**obj, "posted_by": who.actor}  # as documented: taken from the token
        errors: list[FieldError] = []
        entry = None
        try:
            entry = parse_entry(obj)
        except JournalValidationError as exc:
            errors.extend(exc.errors)
        if entry is not None and (entry.kind == "adjustment" or entry.reviewed_by is not None):
            errors.append(FieldError("kind", "adjustments, and any entry naming a reviewer, are people's "
                                             "corrections: submit them with a person's token for review"))
        if errors:
            raise ApiError(422, errors)
        assert entry is not None
        try:
            result = post_entries(engine, [obj], actor=who.actor, now_us=settings.clock(),
                                  window=settings.entry_window)
        except (LedgerError, JournalValidationError) as exc:
            raise _journal_error(exc) from None
        created = result.created == 1
        payload = {"status": "created" if created else "already_present", "journal_id": entry.journal_id,
                   "body_sha256": entry.body_sha256(), "entry": entry.to_leaf()}
        return JSONResponse(schemas.JournalPostResult.model_validate(payload).model_dump(),
                            status_code=201 if created else 200)

    @router.post("/finance/journal/{journal_id}/review", status_code=201, response_model=schemas.JournalSubmissionOut,
                 responses={200: {"model": schemas.JournalSubmissionOut, "description": "Rejected: not posted."},
                            **_errors(401, 403, 404, 409, 413, 422)},
                 openapi_extra=_body_doc(schemas.ReviewInput), tags=["journal"],
                 summary="Approve (post) or reject another person's submitted entry")
    def post_review(who: Principal = Depends(principal),
                    journal_id: str = Path(min_length=1, max_length=64, examples=["je-2026-11-02-0001"]),
                    body: bytes = Depends(raw_body)) -> Any:
        """The reviewer is the token's actor: a finance-lead or security-engineer who did not submit
        it. 201 approved and posted; 200 rejected; 409 expired, already reviewed, or its day closed."""
        require_role(who, REVIEWER_ROLES, "review journal entries")
        try:
            obj = schemas.loads_body(body)
        except schemas.BodyError as exc:
            raise ApiError(422, exc.errors) from None
        if not isinstance(obj, dict):
            raise ApiError(422, [FieldError("$", 'must be a JSON object such as {"decision": "approve"}')])
        unknown = sorted(set(obj) - {"decision", "comment"})
        if unknown:
            raise ApiError(422, [FieldError(unknown[0], "is not a member; send decision and, optionally, comment")])
        decision, comment = obj.get("decision"), obj.get("comment")
        if decision not in ("approve", "reject"):
            raise ApiError(422, [FieldError("decision", f"must be 'approve' or 'reject', got {decision!r}")])
        if comment is not None and (not isinstance(comment, str) or len(comment) > 1000
                                    or schemas.string_problems(comment)):
            raise ApiError(422, [FieldError("comment", "must be text of at most 1000 characters")])
        now = settings.clock()
        try:
            done = reviews.review(engine, journal_id, reviewer=who.actor, reviewer_roles=who.roles,
                                  approve=decision == "approve", now_us=now, comment=comment,
                                  window=settings.entry_window)
        except reviews.ReviewError as exc:
            raise ApiError(exc.status, exc.errors) from None
        except (LedgerError, JournalValidationError) as exc:
            raise _journal_error(exc) from None
        return JSONResponse(_submission_out(done, now), status_code=201 if done.status == "posted" else 200)

    @router.get("/finance/journal/reviews", response_model=schemas.JournalReviewsOut, tags=["journal"],
                responses=_errors(401, 403), summary="Entries waiting for a second person")
    def list_reviews(who: Principal = Depends(principal)) -> Any:
        """Pending submissions, oldest first (expired ones are left out)."""
        require_role(who, READ_ROLES, "read the journal")
        now = settings.clock()
        return {"reviews": [_submission_out(s, now) for s in reviews.pending(engine, now)]}

    @router.get("/finance/journal", response_model=schemas.JournalPage, tags=["journal"],
                responses=_errors(401, 413, 422), summary="List entries dated in UTC days FROM..TO")
    def list_journal(
        who: Principal = Depends(principal),
        from_day: str = Query(alias="from", pattern=DAY_PATTERN, description="First UTC day, YYYY-MM-DD.",
                                 json_schema_extra={"format": "date"}, examples=["2026-11-02"]),
        to_day: str | None = Query(None, alias="to", pattern=DAY_PATTERN, json_schema_extra={"format": "date"},
                                      description="Last UTC day, inclusive [default: from]."),
        limit: int = Query(settings.default_page_size, ge=1, le=settings.max_page_size,
                              description="Entries per page."),
        cursor: str | None = Query(None, max_length=1024, description="next_cursor of the previous page."),
    ) -> Any:
        """Entries ordered by ts then journal_id (code point order), as finance-journal/1."""
        require_role(who, READ_ROLES, "read the journal")
        first = _parse_day(from_day, "from")
        last = _parse_day(to_day, "to") if to_day is not None else first
        if last < first:
            raise ApiError(422, [FieldError("to", f"{last} is before from {first}; swap them")])
        lo, _ = day_bounds_us(first)
        _, hi = day_bounds_us(last)
        after = _decode_cursor(cursor, first.isoformat(), last.isoformat()) if cursor else None
        leaves, last_key = _journal_page(engine, lo, hi, after, limit)
        next_cursor = (_encode_cursor(first.isoformat(), last.isoformat(), *last_key)
                       if last_key else None)
        return {"format": schemas.JOURNAL_FORMAT, "from": first.isoformat(), "to": last.isoformat(),
                "entries": leaves, "next_cursor": next_cursor}

    # -- proofs

    return router
