"""What the API's routers share: limits and patterns, the request context, error and output
helpers. ``app.py`` assembles the routers (``routes/``) into the FastAPI app."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable

import sqlalchemy as sa

from finance_pipeline.api import schemas
from finance_pipeline.api.auth import ApiError
from finance_pipeline.api.tokens import Principal
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.ledger.errors import ClosedDayError, JournalConflictError
from finance_pipeline.ledger.schema import journal_entries, journal_lines
from finance_pipeline.payouts import service
from finance_pipeline.payouts.policy import PayoutPolicy

API_VERSION = "1.0.0"
PAYOUT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PROOF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
EXAMPLE_PAYOUT_ID = "pay_20261102_001"
EXAMPLE_PROOF_ID = "fp1-20261102-0123456789abcdef01234567"


@dataclass(frozen=True)
class ApiContext:
    """What every router needs: the ledger, the settings and the payout policy, the payout
    provider client (settle only), and the dependencies that authenticate and read the body."""

    engine: sa.Engine
    settings: Any
    policy: PayoutPolicy
    payout_client: Any
    principal: Callable[..., Principal]
    raw_body: Callable[..., Any]


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


def _submission_out(sub: Any, now: int) -> dict[str, Any]:
    doc = {**sub.to_dict(now), "review": f"/finance/journal/{sub.journal_id}/review"}
    return schemas.JournalSubmissionOut.model_validate(doc).model_dump()


def _parse_day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, [FieldError(name, f"{text!r} is not a day; write it as YYYY-MM-DD")]) from None
