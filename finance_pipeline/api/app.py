"""The Finance HTTP API: post and list journal entries, read proofs, approve and settle payouts.

``create_app(engine, tokens=..., payout_client=..., settings=...)`` builds the FastAPI app;
``finance-pipeline serve`` runs it under uvicorn. Every error answers
``{"errors": [{"field": ..., "message": ...}]}``; a rejected request writes nothing, and every
accepted mutation writes an audit event (through the posting core and the payout service).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finance_pipeline.api import schemas
from finance_pipeline.api.auth import (
    POST_JOURNAL_ROLES,
    READ_ROLES,
    REVIEWER_ROLES,
    SERVICE_ROLES,
    SETTLE_ROLES,
    ApiError,
    authenticate,
    require_role,
)
from finance_pipeline.api.tokens import Principal, TokenDirectory
from finance_pipeline.domain.journal import FieldError, JournalValidationError, parse_entry
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.export import registry
from finance_pipeline.ledger.audit import now_us
from finance_pipeline.ledger.errors import (
    ClosedDayError,
    JournalConflictError,
    LedgerError,
)
from finance_pipeline.ledger import reviews
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.ledger.schema import journal_entries, journal_lines
from finance_pipeline.payouts import service
from finance_pipeline.payouts.policy import APPROVAL_ROLES, PayoutPolicy
from finance_pipeline.providers import ProviderError

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
PAYOUT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PROOF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
EXAMPLE_PAYOUT_ID = "pay_20261102_001"
EXAMPLE_PROOF_ID = "fp1-20261102-0123456789abcdef01234567"


@dataclass(frozen=True)
class ApiSettings:
    """Limits and collaborators of the API. ``clock`` returns UTC microseconds (tests inject it)."""

    max_body_bytes: int = 64 * 1024
    default_page_size: int = 100
    max_page_size: int = 500
    payout_policy: PayoutPolicy | None = None  # None: FP_PAYOUT_TIERS, read when the app is built
    review_ttl_s: int = 86400  # how long a submitted entry waits for its review (FP_JOURNAL_REVIEW_TTL_S)
    clock: Callable[[], int] = field(default=now_us)


# --------------------------------------------------------------------------- body limit


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``, counted on the raw stream.

    A declared Content-Length over the limit is refused before reading; a chunked body is
    counted as it arrives. Up to ``drain_bytes`` of an oversized body are read and dropped
    first, so the client (still sending) gets the 413 instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 1024 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.max_bytes:
            if declared <= self.drain_bytes:
                await self._drain(receive, 0)
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away; nobody to answer
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, total)
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, seen: int) -> None:
        while seen <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _too_large(self, send: Send) -> None:
        error = ApiError(413, [FieldError("$", f"request body exceeds this API's limit of "
                                                f"{self.max_bytes} bytes; post one entry per request")])
        payload = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": payload})


# --------------------------------------------------------------------------- helpers


_ENTRY_PREFIX = re.compile(r"^entries\[0\]\.?")


def _single_entry_errors(errors: list[FieldError]) -> list[FieldError]:
    """The posting core addresses fields as ``entries[0].x``; one posted entry is just ``x``."""
    return [FieldError(_ENTRY_PREFIX.sub("", e.field) or "$", e.message) for e in errors]


def _journal_error(exc: Exception) -> ApiError:
    errors = _single_entry_errors(getattr(exc, "errors", []) or [FieldError("$", str(exc))])
    if isinstance(exc, (ClosedDayError, JournalConflictError)):
        return ApiError(409, errors)
    return ApiError(422, errors)


def _payout_error(exc: service.PayoutError) -> ApiError:
    if isinstance(exc, service.QuorumNotMetError):
        return ApiError(409, exc.errors, extra={"missing_roles": list(exc.missing_roles),
                                                "required_roles": list(exc.required_roles)})
    status = {service.PayoutNotFoundError: 404, service.PayoutValidationError: 422,
              service.ApprovalForbiddenError: 403, service.PayoutConflictError: 409}
    for cls, code in status.items():
        if isinstance(exc, cls):
            return ApiError(code, exc.errors)
    return ApiError(422, exc.errors)


def _approval_out(a: service.Approval, now: int) -> dict[str, Any]:
    return {"approver": a.approver, "role": a.role, "approved_at": format_ts_us(a.approved_at_us),
            "expires_at": format_ts_us(a.expires_at_us), "valid": a.valid_at(now)}


def _quorum_out(q: service.QuorumStatus) -> dict[str, Any]:
    return {"met": q.met, "required_roles": list(q.required_roles),
            "missing_roles": list(q.missing_roles), "as_of": format_ts_us(q.as_of_us)}


def _encode_cursor(from_day: str, to_day: str, ts_us: int, journal_id: str) -> str:
    raw = json.dumps({"f": from_day, "t": to_day, "ts": ts_us, "id": journal_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, from_day: str, to_day: str) -> tuple[int, str]:
    bad = ApiError(422, [FieldError("cursor", "is not a cursor this API issued; pass next_cursor "
                                              "back unchanged")])
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts_us, journal_id = data["ts"], data["id"]
        same_query = (data["f"], data["t"]) == (from_day, to_day)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad from None
    # Only values the keyset query can bind: a BIGINT and a text the database can hold.
    if (isinstance(ts_us, bool) or not isinstance(ts_us, int) or not -2**63 <= ts_us < 2**63
            or not isinstance(journal_id, str) or schemas.string_problems(journal_id)):
        raise bad
    if not same_query:
        raise ApiError(422, [FieldError("cursor", "was issued for other from/to days; keep from and "
                                                  "to unchanged while paging")])
    return ts_us, journal_id


def _journal_page(engine: sa.Engine, lo_us: int, hi_us: int, after: tuple[int, str] | None,
                  limit: int) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """Up to ``limit`` leaves with lo <= ts < hi after the keyset ``after``, by (ts, journal_id)."""
    e, ln = journal_entries.c, journal_lines.c
    with engine.connect() as conn:
        # Code point order on PostgreSQL too (its default collation is linguistic), as in the proof.
        jid = e.journal_id.collate("C") if conn.dialect.name == "postgresql" else e.journal_id
        stmt = sa.select(journal_entries).where(e.ts_us >= lo_us, e.ts_us < hi_us)
        if after is not None:
            stmt = stmt.where(sa.or_(e.ts_us > after[0], sa.and_(e.ts_us == after[0], jid > after[1])))
        rows = conn.execute(stmt.order_by(e.ts_us, jid).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        lines: dict[str, list[dict[str, Any]]] = {r.journal_id: [] for r in rows}
        if rows:
            for line in conn.execute(sa.select(journal_lines).where(ln.journal_id.in_(list(lines)))
                                     .order_by(ln.journal_id, ln.line_no)):
                lines[line.journal_id].append({
                    "account_id": line.account_id, "direction": line.direction,
                    "amount_minor": line.amount_minor, "currency": line.currency.strip(),
                })
    leaves = [{
        "journal_id": r.journal_id, "ts": format_ts_us(r.ts_us), "kind": r.kind, "memo": r.memo,
        "batch_id": r.batch_id, "provider": r.provider, "provider_reference": r.provider_reference,
        "reverses": r.reverses, "posted_by": r.posted_by, "reviewed_by": r.reviewed_by,
        "lines": lines[r.journal_id],
    } for r in rows]
    last = (rows[-1].ts_us, rows[-1].journal_id) if more else None
    return leaves, last


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {401: "Missing or invalid bearer token.", 403: "The actor lacks the role.",
                 404: "Not found.", 409: "Conflicts with what is stored.",
                 413: "Request body over the size limit.", 422: "Invalid input; errors name the fields.",
                 502: "The payout provider failed.", 503: "A dependency is unavailable."}
    return {s: {"model": schemas.ErrorBody, "description": described[s]} for s in statuses}


def _body_doc(model: type) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


# --------------------------------------------------------------------------- the app


def create_app(
    engine: sa.Engine,
    *,
    tokens: TokenDirectory,
    payout_client: Any = None,
    settings: ApiSettings = ApiSettings(),
) -> FastAPI:
    """The Finance API over ``engine``; ``tokens`` authenticates requests and knows the actors.

    ``payout_client`` (a PayoutProviderClient) is needed only to settle payouts; without it
    the settle endpoint answers 503.
    """
    policy = settings.payout_policy or PayoutPolicy.from_env()
    app = FastAPI(
        title="finance-pipeline Finance API",
        version=API_VERSION,
        description="Journal entries (finance-journal/1), proofs, and payout approvals. "
                    "Authenticate with `Authorization: Bearer <token>`; money is integer minor units.",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="A token from `finance-pipeline tokens add`.")

    def principal(request: Request, _: Any = Security(bearer)) -> Principal:
        return authenticate(request.headers.get("authorization"), tokens)

    async def raw_body(request: Request) -> bytes:
        return await request.body()

    # -- error handlers: one shape for every error
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
            name = ".".join(loc) or "$"
            errors.append({"field": name, "message": _friendly(name, err)})
        return JSONResponse({"errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        field_name = "$" if exc.status_code != 405 else "method"
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}"
        return JSONResponse({"errors": [{"field": field_name, "message": message}]},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(sa.exc.OperationalError)
    async def _db_down(request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"errors": [{"field": "$", "message": "the ledger database is unavailable; "
                                                                  "retry later"}]}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"errors": [{"field": "$", "message": "internal error; the server log has "
                                                                  "the details"}]}, status_code=500)

    # -- journal
    @app.post("/finance/journal", status_code=202, response_model=schemas.JournalSubmissionOut,
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
                                                 ttl_s=settings.review_ttl_s)
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
            result = post_entries(engine, [obj], actor=who.actor, now_us=settings.clock())
        except (LedgerError, JournalValidationError) as exc:
            raise _journal_error(exc) from None
        created = result.created == 1
        payload = {"status": "created" if created else "already_present", "journal_id": entry.journal_id,
                   "body_sha256": entry.body_sha256(), "entry": entry.to_leaf()}
        return JSONResponse(schemas.JournalPostResult.model_validate(payload).model_dump(),
                            status_code=201 if created else 200)

    @app.post("/finance/journal/{journal_id}/review", status_code=201, response_model=schemas.JournalSubmissionOut,
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
                                  approve=decision == "approve", now_us=now, comment=comment)
        except reviews.ReviewError as exc:
            raise ApiError(exc.status, exc.errors) from None
        except (LedgerError, JournalValidationError) as exc:
            raise _journal_error(exc) from None
        return JSONResponse(_submission_out(done, now), status_code=201 if done.status == "posted" else 200)

    @app.get("/finance/journal/reviews", response_model=schemas.JournalReviewsOut, tags=["journal"],
             responses=_errors(401, 403), summary="Entries waiting for a second person")
    def list_reviews(who: Principal = Depends(principal)) -> Any:
        """Pending submissions, oldest first (expired ones are left out)."""
        require_role(who, READ_ROLES, "read the journal")
        now = settings.clock()
        return {"reviews": [_submission_out(s, now) for s in reviews.pending(engine, now)]}

    @app.get("/finance/journal", response_model=schemas.JournalPage, tags=["journal"],
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
    @app.get("/finance/proofs/{proof_id}", response_model=schemas.ProofOut, tags=["proofs"],
             responses=_errors(401, 404, 413, 422), summary="A published proof's registry record")
    def get_proof(who: Principal = Depends(principal),
                  proof_id: str = Path(pattern=PROOF_ID_PATTERN, max_length=128,
                                       examples=[EXAMPLE_PROOF_ID])) -> Any:
        require_role(who, READ_ROLES, "read proofs")
        record = registry.get(engine, proof_id)
        if record is None:
            raise ApiError(404, [FieldError("proof_id", f"no published proof {proof_id!r}")])
        return {"proof_id": record.proof_id, "day": record.day, "merkle_root": record.merkle_root,
                "statement_sha256": record.statement_sha256, "location": record.location,
                "published_at": format_ts_us(record.published_at_us),
                "published_at_us": record.published_at_us, "format": record.format}

    # -- payouts
    @app.get("/payout/{payout_id}", response_model=schemas.PayoutOut, tags=["payouts"],
             responses=_errors(401, 404, 413, 422), summary="A payout: status, approvals, audit events")
    def get_payout(who: Principal = Depends(principal),
                   payout_id: str = Path(pattern=PAYOUT_ID_PATTERN, max_length=64,
                                        examples=[EXAMPLE_PAYOUT_ID])) -> Any:
        require_role(who, READ_ROLES, "read payouts")
        now = settings.clock()
        try:
            view = service.get_payout(engine, payout_id)
            quorum = service.approval_status(engine, payout_id, now, policy=policy)
        except service.PayoutError as exc:
            raise _payout_error(exc) from None
        p = view.payout
        return {
            "payout_id": p.payout_id, "amount_minor": p.amount_minor, "currency": p.currency,
            "destination": p.destination, "status": p.status, "initiated_by": p.initiated_by,
            "provider_reference": p.provider_reference, "created_at": format_ts_us(p.created_at_us),
            "updated_at": format_ts_us(p.updated_at_us),
            "approvals": [_approval_out(a, now) for a in view.approvals],
            "quorum": _quorum_out(quorum),
            "audit_events": [{"id": ev.id, "ts": format_ts_us(ev.ts_us), "actor": ev.actor,
                              "action": ev.action, "subject_type": ev.subject_type,
                              "subject_id": ev.subject_id, "detail": ev.detail} for ev in view.events],
        }

    @app.post("/payout/{payout_id}/approvals", status_code=201, response_model=schemas.ApprovalResultOut,
              responses={200: {"model": schemas.ApprovalResultOut,
                               "description": "You already approved in this role and it is still valid."},
                         **_errors(401, 403, 404, 409, 413, 422)},
              openapi_extra=_body_doc(schemas.ApprovalInput), tags=["payouts"],
              summary="Approve a payout as one of your roles")
    def post_approval(who: Principal = Depends(principal),
                      payout_id: str = Path(pattern=PAYOUT_ID_PATTERN, max_length=64,
                                        examples=[EXAMPLE_PAYOUT_ID]),
                      body: bytes = Depends(raw_body)) -> Any:
        """The approver is the token's actor; the role must be one the token holds, and the
        initiator of a payout cannot approve it."""
        require_role(who, frozenset(APPROVAL_ROLES), "approve payouts")
        try:
            obj = schemas.loads_body(body)
        except schemas.BodyError as exc:
            raise ApiError(422, exc.errors) from None
        if not isinstance(obj, dict):
            raise ApiError(422, [FieldError("$", 'must be a JSON object such as {"role": "finance-lead"}')])
        unknown = sorted(set(obj) - {"role"})
        if unknown:
            raise ApiError(422, [FieldError(unknown[0], "is not a member; send only role")])
        role = obj.get("role")
        if not isinstance(role, str):
            raise ApiError(422, [FieldError("role", "is required: the role you approve as, e.g. "
                                                    "'finance-lead'")])
        if role not in APPROVAL_ROLES:
            raise ApiError(422, [FieldError("role", f"must be one of {', '.join(APPROVAL_ROLES)}, "
                                                    f"got {role!r}")])
        now = settings.clock()
        try:
            result = service.approve(engine, payout_id, who.actor, role, now,
                                     approver_roles=who.roles, policy=policy)
        except service.PayoutError as exc:
            raise _payout_error(exc) from None
        payload = {"outcome": result.outcome, "approval": _approval_out(result.approval, now),
                   "quorum": _quorum_out(result.quorum)}
        return JSONResponse(schemas.ApprovalResultOut.model_validate(payload).model_dump(),
                            status_code=200 if result.outcome == "unchanged" else 201)

    @app.post("/payout/{payout_id}/settle", response_model=schemas.SettleOut, tags=["payouts"],
              responses={202: {"model": schemas.SettleOut,
                               "description": "Submitted, but the provider still has it pending."},
                         409: {"model": schemas.QuorumErrorBody,
                               "description": "The approvals do not make the quorum (missing_roles)."},
                         **_errors(401, 403, 404, 413, 422, 502, 503)},
              summary="Submit or re-trigger settlement at the payout provider")
    def post_settle(who: Principal = Depends(principal),
                    payout_id: str = Path(pattern=PAYOUT_ID_PATTERN, max_length=64,
                                        examples=[EXAMPLE_PAYOUT_ID]),
                    body: bytes = Depends(raw_body)) -> Any:
        """Idempotent. 200 when settled (or failed) at the provider, 202 while it stays pending;
        409 with ``missing_roles`` while the quorum does not hold."""
        require_role(who, SETTLE_ROLES, "trigger payout settlement")
        if body.strip():
            try:
                obj = schemas.loads_body(body)
            except schemas.BodyError as exc:
                raise ApiError(422, exc.errors) from None
            if obj != {}:
                raise ApiError(422, [FieldError("$", "settle takes no parameters; send no body or {}")])
        if payout_client is None:
            raise ApiError(503, [FieldError("provider", "no payout provider is configured on this "
                                                        "server; set PAYOUT_API_BASE and PAYOUT_API_TOKEN")])
        try:
            outcome = service.submit_or_retrigger(engine, payout_id, payout_client, who.actor,
                                                  settings.clock(), policy=policy)
        except service.PayoutError as exc:
            raise _payout_error(exc) from None
        except ProviderError as exc:
            raise ApiError(502, [FieldError("provider", str(exc))]) from None
        payload = outcome.to_dict()
        return JSONResponse(schemas.SettleOut.model_validate(payload).model_dump(),
                            status_code=202 if outcome.status == "pending" else 200)

    app.openapi = _openapi_with_inputs(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.policy = policy
    return app


def _submission_out(sub: Any, now: int) -> dict[str, Any]:
    doc = {**sub.to_dict(now), "review": f"/finance/journal/{sub.journal_id}/review"}
    return schemas.JournalSubmissionOut.model_validate(doc).model_dump()


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, [FieldError(name, f"{text!r} is not a day; write it as YYYY-MM-DD")]) from None


_FRIENDLY = {
    "from": "must be a UTC day written YYYY-MM-DD, e.g. 2026-11-02",
    "to": "must be a UTC day written YYYY-MM-DD, e.g. 2026-11-02",
    "payout_id": "must be 1-64 characters of letters, digits and _ . : - starting with a letter or digit",
    "proof_id": "must be 1-128 characters of letters, digits and _ . : - starting with a letter or digit",
}


def _friendly(name: str, err: dict[str, Any]) -> str:
    if name in _FRIENDLY and err.get("type") in ("string_pattern_mismatch", "string_too_long", "missing"):
        prefix = "is required; it " if err.get("type") == "missing" else ""
        return prefix + _FRIENDLY[name]
    return str(err.get("msg", "is invalid"))


def _openapi_with_inputs(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated document plus the raw-body request schemas it references."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (schemas.JournalEntryInput, schemas.ApprovalInput):
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
        app.openapi_schema = doc
        return doc

    return openapi
