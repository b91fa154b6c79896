"""Shapes of the Finance API: response models, documented request bodies, strict JSON input.

Request bodies are read raw and validated by the domain (``parse_entry``, the payout service),
so their error messages are the same everywhere. The input models here only document them in
the OpenAPI document, and are never stricter than the domain: whatever the document calls
invalid, the API rejects (the fuzz test holds us to that).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from finance_pipeline.domain.canonical import MAX_SAFE_INT
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.strict_json import loads_strict

JOURNAL_FORMAT = "finance-journal/1"
Id = Annotated[str, Field(min_length=1, max_length=64)]
Actor = Annotated[str, Field(min_length=1, max_length=200)]
Kind = Literal["standard", "adjustment", "reversal"]
Direction = Literal["debit", "credit"]
Provider = Literal["stripe", "payout_sandbox"]
ApprovalRole = Literal["finance-lead", "security-engineer", "super-admin"]
PayoutStatus = Literal["requested", "pending", "settled", "failed"]


# --------------------------------------------------------------------------- errors


class FieldErrorOut(BaseModel):
    field: str = Field(description="Where the problem is, e.g. 'lines[0].amount_minor' or 'Authorization'.")
    message: str = Field(description="What is wrong and how to fix it.")


class ErrorBody(BaseModel):
    """Every error response: one or more field-addressed problems."""

    errors: list[FieldErrorOut]


class QuorumErrorBody(ErrorBody):
    """409 from a re-trigger whose approvals do not make the quorum."""

    missing_roles: list[str] = Field(default_factory=list)
    required_roles: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- journal


class JournalLineInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: Annotated[str, Field(min_length=1)]
    direction: Direction
    amount_minor: Annotated[int, Field(ge=1, le=MAX_SAFE_INT, description="Integer minor units (cents); never a float.")]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code in capitals.")]


EXAMPLE_ENTRY = {
    "journal_id": "je-2026-11-02-0001", "ts": "2026-11-02T10:15:00Z", "kind": "standard",
    "memo": "Order 1042 paid by card", "batch_id": None, "provider": "stripe",
    "provider_reference": "txn_1042", "reverses": None, "posted_by": "ops:ana", "reviewed_by": None,
    "lines": [
        {"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": 12500, "currency": "USD"},
        {"account_id": "revenue_usd", "direction": "credit", "amount_minor": 12500, "currency": "USD"},
    ],
}


class JournalEntryInput(BaseModel):
    """finance-journal/1 as posted; members whose value is null may be omitted."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_ENTRY]})
    journal_id: Id
    ts: Annotated[str, Field(description="UTC 'YYYY-MM-DDTHH:MM:SSZ' (an explicit offset is converted).")]
    kind: Kind
    memo: str
    batch_id: Id | None = None
    provider: Provider | None = None
    provider_reference: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    reverses: Id | None = Field(default=None, description="Required for kind=reversal.")
    posted_by: Actor | None = Field(default=None, description=(
        "The authenticated actor, or left out: it is taken from the token."))
    reviewed_by: None = Field(default=None, description=(
        "Left out: the second person's approval (POST /finance/journal/{journal_id}/review) sets it."))
    lines: Annotated[list[JournalLineInput], Field(min_length=2)]


class JournalLine(BaseModel):
    account_id: str
    direction: Direction
    amount_minor: int
    currency: str


class JournalEntry(BaseModel):
    """finance-journal/1 as stored: all eleven members, nulls included, lines in posted order."""

    journal_id: str
    ts: str
    kind: Kind
    memo: str
    batch_id: str | None
    provider: Provider | None
    provider_reference: str | None
    reverses: str | None
    posted_by: str
    reviewed_by: str | None
    lines: list[JournalLine]


class JournalPostResult(BaseModel):
    status: Literal["created", "already_present"]
    journal_id: str
    body_sha256: str = Field(description="SHA-256 of the entry's canonical leaf.")
    entry: JournalEntry


class JournalSubmissionOut(BaseModel):
    status: Literal["pending", "posted", "rejected", "expired"]
    journal_id: str
    submitted_by: str = Field(description="The submitter, as their token authenticated them.")
    submitted_at: str
    expires_at: str = Field(description="Unreviewed by then, the submission lapses.")
    reviewed_by: str | None = Field(description="The second person, as their token authenticated them.")
    reviewed_at: str | None
    comment: str | None
    entry: dict[str, Any] = Field(description="The entry as it will be posted (reviewed_by set by the approval).")
    review: str = Field(description="Where a second person approves or rejects it.")


class JournalReviewsOut(BaseModel):
    reviews: list[JournalSubmissionOut]


class ReviewInput(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"decision": "approve"}]})
    decision: Literal["approve", "reject"] = Field(description="approve posts the entry; reject drops it.")
    comment: str | None = Field(default=None, max_length=1000)


class JournalPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    format: Literal["finance-journal/1"]
    from_: str = Field(alias="from", description="First UTC day, inclusive.")
    to: str = Field(description="Last UTC day, inclusive.")
    entries: list[JournalEntry]
    next_cursor: str | None = Field(description="Pass back as `cursor` for the next page; null on the last.")


# --------------------------------------------------------------------------- proofs


class ProofOut(BaseModel):
    proof_id: str
    day: str
    merkle_root: str
    statement_sha256: str
    location: str
    published_at: str
    published_at_us: int
    format: str


# --------------------------------------------------------------------------- payouts


class ApprovalInput(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "finance-lead"}]})
    role: ApprovalRole = Field(description="The role you approve as; you must hold it.")


class ApprovalOut(BaseModel):
    approver: str
    role: str
    approved_at: str
    expires_at: str
    valid: bool = Field(description="Not expired at the time of the response.")


class QuorumOut(BaseModel):
    met: bool
    required_roles: list[str]
    missing_roles: list[str]
    as_of: str


class AuditEventOut(BaseModel):
    id: int
    ts: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


class PayoutOut(BaseModel):
    payout_id: str
    amount_minor: int
    currency: str
    destination: str
    status: PayoutStatus
    initiated_by: str
    provider_reference: str | None
    created_at: str
    updated_at: str
    approvals: list[ApprovalOut]
    quorum: QuorumOut
    audit_events: list[AuditEventOut]


class ApprovalResultOut(BaseModel):
    outcome: Literal["created", "renewed", "unchanged"]
    approval: ApprovalOut
    quorum: QuorumOut


class SettleOut(BaseModel):
    payout_id: str
    status: PayoutStatus
    provider_status: Literal["settled", "failed", "pending"]
    audit_event_id: int


# --------------------------------------------------------------------------- strict JSON input


def loads_body(raw: bytes) -> Any:
    """A request body as JSON; raises BodyError (a 422 naming the problem) when it is not usable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError([FieldError("$", f"is not UTF-8 ({exc.reason} at byte {exc.start})")]) from None
    if not text.strip():
        raise BodyError([FieldError("$", "is empty; send a JSON object")])
    try:
        value = loads_strict(text, allow_float=True)  # floats are read: validation names them
    except ValueError as exc:
        raise BodyError([FieldError("$", f"is not valid JSON ({exc})")]) from None
    problems = string_problems(value)
    if problems:
        raise BodyError(problems)
    return value


class BodyError(ValueError):
    """A request body that is not usable JSON; ``errors`` name where."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(map(str, errors)))


def string_problems(value: Any) -> list[FieldError]:
    """Strings no database column can hold: NUL characters and lone surrogates (iterative,
    since the body may be nested as deeply as the JSON parser allows)."""
    out: list[FieldError] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            problem = _bad_string(item)
            if problem:
                out.append(FieldError(path or "$", problem))
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _bad_string(key)
                if problem:
                    out.append(FieldError(path or "$", f"member name {problem}"))
                    continue
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            for i, child in enumerate(item):
                stack.append((child, f"{path}[{i}]" if path else f"[{i}]"))
    return sorted(out, key=lambda e: e.field)


def _bad_string(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate escape such as \\ud800)"
    return None
