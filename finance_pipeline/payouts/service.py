"""Payouts: creation, approvals under the policy, and submission/settlement at the provider.

Plain Python over the ledger database. Every change writes an audit event (subject_type
``payout``) in the same transaction as the change; a refusal raises before anything is written.
Statuses: ``requested`` (not yet at the provider), ``pending`` (accepted, not settled),
``settled``, ``failed``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

import sqlalchemy as sa

from finance_pipeline.domain.canonical import MAX_SAFE_INT
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.money import is_currency
from finance_pipeline.ledger.audit import AuditEvent, list_events, record_event
from finance_pipeline.ledger.audit import now_us as _clock
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.schema import ACTOR_LEN, ID_LEN, payout_approvals, payouts
from finance_pipeline.payouts.policy import APPROVAL_ROLES, PayoutPolicy, missing_roles
from finance_pipeline.providers import ProviderError

if TYPE_CHECKING:
    from finance_pipeline.providers.payout_client import PayoutProviderClient

SUBJECT = "payout"
FINISHED = ("settled", "failed")
# The provider's id rule, within the ledger's 64-character ids.
PAYOUT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,%d}$" % (ID_LEN - 1))
_DESTINATION_LEN = 255


# --------------------------------------------------------------------------- errors


class PayoutError(Exception):
    """A refused payout operation; ``errors`` name the fields. Nothing was written."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(map(str, self.errors)))


class PayoutValidationError(PayoutError, ValueError):
    """Bad input (HTTP 422)."""


class PayoutNotFoundError(PayoutError, LookupError):
    """No such payout (HTTP 404)."""


class PayoutConflictError(PayoutError):
    """The request contradicts what is stored (HTTP 409)."""


class ApprovalForbiddenError(PayoutError):
    """This approver may not give this approval (HTTP 403)."""


class QuorumNotMetError(PayoutConflictError):
    """The valid approvals do not cover the roles the payout's tier requires."""

    def __init__(self, payout_id: str, missing: tuple[str, ...], required: tuple[str, ...]):
        self.payout_id = payout_id
        self.missing_roles = missing
        self.required_roles = required
        super().__init__([FieldError(
            "approvals",
            f"payout {payout_id!r} lacks valid approvals by {', '.join(missing)} "
            f"(its tier needs {', '.join(required)}); collect them, then re-trigger",
        )])


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Payout:
    payout_id: str
    amount_minor: int
    currency: str
    destination: str
    status: str
    initiated_by: str
    provider_reference: str | None
    created_at_us: int
    updated_at_us: int

    def to_dict(self) -> dict:
        """The payout's own members as the API and the alerts show them (times as text)."""
        from finance_pipeline.domain.timeutil import format_ts_us

        return {"payout_id": self.payout_id, "amount_minor": self.amount_minor, "currency": self.currency,
                "destination": self.destination, "status": self.status, "initiated_by": self.initiated_by,
                "provider_reference": self.provider_reference, "created_at": format_ts_us(self.created_at_us)}


@dataclass(frozen=True)
class Approval:
    approver: str
    role: str
    approved_at_us: int
    expires_at_us: int

    def valid_at(self, now_us: int) -> bool:
        return now_us < self.expires_at_us


@dataclass(frozen=True)
class QuorumStatus:
    payout_id: str
    met: bool
    required_roles: tuple[str, ...]
    missing_roles: tuple[str, ...]
    valid: tuple[Approval, ...]
    expired: tuple[Approval, ...]
    as_of_us: int


@dataclass(frozen=True)
class ApprovalResult:
    approval: Approval
    outcome: str  # created | renewed (an expired approval given again) | unchanged (repeat)
    quorum: QuorumStatus


@dataclass(frozen=True)
class PayoutView:
    payout: Payout
    approvals: tuple[Approval, ...]
    events: tuple[AuditEvent, ...]


@dataclass(frozen=True)
class SettlementOutcome:
    payout_id: str
    status: str  # the payout's status after the call
    provider_status: str  # what the provider answered: settled | failed | pending
    audit_event_id: int

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- helpers


def _text_error(value: object, name: str, max_len: int) -> FieldError | None:
    if not isinstance(value, str) or not value.strip():
        return FieldError(name, f"must be a non-empty string, got {value!r}")
    if len(value) > max_len:
        return FieldError(name, f"must be at most {max_len} characters, got {len(value)}")
    if "\x00" in value:
        return FieldError(name, "must not contain NUL characters")
    return None


def _check_lookup_id(payout_id: object) -> str:
    # Lenient: any id the table can hold may be looked up; only unusable input is refused.
    error = _text_error(payout_id, "payout_id", ID_LEN)
    if error:
        raise PayoutValidationError([error])
    return payout_id  # type: ignore[return-value]


def payout_of_row(row) -> Payout:
    """The Payout of a ``payouts`` table row."""
    return Payout(row.payout_id, row.amount_minor, row.currency.strip(), row.destination,
                  row.status, row.initiated_by, row.provider_reference, row.created_at_us,
                  row.updated_at_us)


def _approval_of(row) -> Approval:
    return Approval(row.approver, row.role, row.approved_at_us, row.expires_at_us)


def _load(conn: sa.Connection, payout_id: str, *, lock: bool = False) -> Payout:
    stmt = sa.select(payouts).where(payouts.c.payout_id == payout_id)
    if lock:
        stmt = stmt.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes
    row = conn.execute(stmt).first()
    if row is None:
        raise PayoutNotFoundError([FieldError("payout_id", f"no payout {payout_id!r}")])
    return payout_of_row(row)


def _approvals(conn: sa.Connection, payout_id: str) -> list[Approval]:
    rows = conn.execute(sa.select(payout_approvals).where(payout_approvals.c.payout_id == payout_id)
                        .order_by(payout_approvals.c.approved_at_us, payout_approvals.c.id))
    return [_approval_of(r) for r in rows]


def _quorum(payout: Payout, approvals: list[Approval], now_us: int, policy: PayoutPolicy) -> QuorumStatus:
    required = policy.required_roles(payout.amount_minor, payout.currency)
    # An initiator's approval cannot be created here; one written around this module never counts.
    counted = [a for a in approvals if a.approver != payout.initiated_by]
    valid = tuple(a for a in counted if a.valid_at(now_us))
    expired = tuple(a for a in counted if not a.valid_at(now_us))
    missing = missing_roles(required, [a.role for a in valid])
    return QuorumStatus(payout.payout_id, not missing, required, missing, valid, expired, now_us)


# --------------------------------------------------------------------------- operations


def create_payout(
    engine: sa.Engine,
    payout_id: str,
    amount_minor: int,
    currency: str,
    destination: str,
    initiated_by: str,
    *,
    now_us: int | None = None,
) -> Payout:
    """Record a payout request (status ``requested``); an identical repeat returns the stored one.

    Raises PayoutValidationError for bad input and PayoutConflictError when ``payout_id`` is
    taken by a payout with other attributes.
    """
    errors = []
    if not isinstance(payout_id, str) or not PAYOUT_ID_RE.match(payout_id):
        errors.append(FieldError("payout_id", f"must be 1-{ID_LEN} characters of letters, digits "
                                              f"and _ . : - starting with a letter or digit, got {payout_id!r}"))
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        errors.append(FieldError("amount_minor", f"must be an integer number of minor units "
                                                 f"(1050 for 10.50), got {amount_minor!r}"))
    elif not 0 < amount_minor <= MAX_SAFE_INT:
        errors.append(FieldError("amount_minor", f"must be between 1 and {MAX_SAFE_INT}, got {amount_minor}"))
    if not is_currency(currency):
        errors.append(FieldError("currency", f"must be an ISO 4217 code in capitals such as 'USD', "
                                             f"got {currency!r}"))
    for name, value, limit in (("destination", destination, _DESTINATION_LEN),
                               ("initiated_by", initiated_by, ACTOR_LEN)):
        error = _text_error(value, name, limit)
        if error:
            errors.append(error)
    if errors:
        raise PayoutValidationError(errors)
    now = _clock() if now_us is None else now_us
    with begin_write(engine) as conn:
        row = conn.execute(sa.select(payouts).where(payouts.c.payout_id == payout_id)).first()
        if row is not None:
            found = payout_of_row(row)
            wanted = (amount_minor, currency, destination, initiated_by)
            have = (found.amount_minor, found.currency, found.destination, found.initiated_by)
            if wanted == have:
                return found
            raise PayoutConflictError([FieldError(
                "payout_id", f"payout {payout_id!r} already exists with other attributes "
                             f"({found.amount_minor} {found.currency} to {found.destination!r}, "
                             f"initiated by {found.initiated_by}); use a new payout_id")])
        conn.execute(payouts.insert().values(
            payout_id=payout_id, amount_minor=amount_minor, currency=currency,
            destination=destination, status="requested", initiated_by=initiated_by,
            provider_reference=None, created_at_us=now, updated_at_us=now,
        ))
        record_event(conn, initiated_by, "payout.create", SUBJECT, payout_id, {
            "amount_minor": amount_minor, "currency": currency, "destination": destination,
        }, ts_us=now)
    return Payout(payout_id, amount_minor, currency, destination, "requested", initiated_by,
                  None, now, now)


def approve(
    engine: sa.Engine,
    payout_id: str,
    approver: str,
    role: str,
    now_us: int | None = None,
    *,
    approver_roles: Iterable[str],
    policy: PayoutPolicy | None = None,
) -> ApprovalResult:
    """Record ``approver``'s approval as ``role``, valid for the policy's TTL.

    ``approver_roles`` are the roles the approver holds (from their credential); the caller
    must say, so the check cannot be skipped by omission. A repeat of a still-valid approval
    in the same role changes nothing; an expired one is renewed.
    """
    policy = policy or PayoutPolicy()
    now = _clock() if now_us is None else now_us
    _check_lookup_id(payout_id)
    errors = [e for e in (_text_error(approver, "approver", ACTOR_LEN),) if e]
    if role not in APPROVAL_ROLES:
        errors.append(FieldError("role", f"must be one of {', '.join(APPROVAL_ROLES)}, got {role!r}"))
    if errors:
        raise PayoutValidationError(errors)
    held = set(approver_roles)
    if role not in held:
        raise ApprovalForbiddenError([FieldError(
            "role", f"{approver} does not hold the role {role} (holds: "
                    f"{', '.join(sorted(held)) or 'none'}); approve as a role you hold")])

    with begin_write(engine) as conn:
        payout = _load(conn, payout_id, lock=True)
        if approver == payout.initiated_by:
            raise ApprovalForbiddenError([FieldError(
                "approver", f"{approver} initiated payout {payout_id!r} and cannot approve it; "
                            "another person holding the role must")])
        if payout.status in FINISHED:
            raise PayoutConflictError([FieldError(
                "payout_id", f"payout {payout_id!r} is already {payout.status}; approvals no "
                             "longer apply")])
        required = policy.required_roles(payout.amount_minor, payout.currency)
        if role not in required:
            raise PayoutValidationError([FieldError(
                "role", f"payout {payout_id!r} ({payout.amount_minor} {payout.currency} minor "
                        f"units) needs approvals by {', '.join(required)}; {role} is not one of them")])
        existing = conn.execute(sa.select(payout_approvals).where(
            payout_approvals.c.payout_id == payout_id, payout_approvals.c.approver == approver)).first()
        approval = Approval(approver, role, now, now + policy.approval_ttl_us)
        if existing is not None:
            previous = _approval_of(existing)
            if previous.valid_at(now):
                if previous.role == role:
                    return ApprovalResult(previous, "unchanged",
                                          _quorum(payout, _approvals(conn, payout_id), now, policy))
                raise PayoutConflictError([FieldError(
                    "role", f"{approver} already approved payout {payout_id!r} as "
                            f"{previous.role} (valid until {previous.expires_at_us} us); one "
                            "approval per approver")])
            # Expired: the approver signs again (one row per approver, so the row is renewed).
            conn.execute(payout_approvals.update().where(payout_approvals.c.id == existing.id).values(
                role=role, approved_at_us=approval.approved_at_us, expires_at_us=approval.expires_at_us))
            outcome = "renewed"
        else:
            conn.execute(payout_approvals.insert().values(
                payout_id=payout_id, approver=approver, role=role,
                approved_at_us=approval.approved_at_us, expires_at_us=approval.expires_at_us))
            outcome = "created"
        record_event(conn, approver, "payout.approve", SUBJECT, payout_id, {
            "role": role, "expires_at_us": approval.expires_at_us, "outcome": outcome,
        }, ts_us=now)
        quorum = _quorum(payout, _approvals(conn, payout_id), now, policy)
    return ApprovalResult(approval, outcome, quorum)


def approval_status(
    engine: sa.Engine, payout_id: str, now_us: int | None = None, *, policy: PayoutPolicy | None = None
) -> QuorumStatus:
    """Whether the valid (unexpired) approvals cover the roles the payout's tier requires."""
    policy = policy or PayoutPolicy()
    now = _clock() if now_us is None else now_us
    _check_lookup_id(payout_id)
    with engine.connect() as conn:
        payout = _load(conn, payout_id)
        return _quorum(payout, _approvals(conn, payout_id), now, policy)


def get_payout(engine: sa.Engine, payout_id: str) -> PayoutView:
    """The payout, its approvals and its audit events (oldest first)."""
    _check_lookup_id(payout_id)
    with engine.connect() as conn:
        payout = _load(conn, payout_id)
        approvals = _approvals(conn, payout_id)
    events = list_events(engine, subject_type=SUBJECT, subject_id=payout_id)
    return PayoutView(payout, tuple(approvals), tuple(events))


def submit_or_retrigger(
    engine: sa.Engine,
    payout_id: str,
    client: PayoutProviderClient,
    actor: str,
    now_us: int | None = None,
    *,
    policy: PayoutPolicy | None = None,
) -> SettlementOutcome:
    """Submit the payout to the provider and ask it to settle, if the quorum holds now.

    Idempotent: the provider creates a payout once per payout_id and settles it once, so this
    is also the on-call re-trigger for a stuck payout. The payout's status follows the
    provider's answer (settled / failed / still pending) and an audit event records the
    outcome either way. A payout already settled or failed is not sent again.
    Raises QuorumNotMetError (nothing written), PayoutNotFoundError, or ProviderError (after
    recording the failed attempt).
    """
    policy = policy or PayoutPolicy()
    now = _clock() if now_us is None else now_us
    _check_lookup_id(payout_id)
    error = _text_error(actor, "actor", ACTOR_LEN)
    if error:
        raise PayoutValidationError([error])
    with engine.connect() as conn:
        payout = _load(conn, payout_id)
        quorum = _quorum(payout, _approvals(conn, payout_id), now, policy)

    if payout.status in FINISHED:
        with begin_write(engine) as conn:
            event_id = record_event(conn, actor, "payout.settle", SUBJECT, payout_id, {
                "status_before": payout.status, "status": payout.status,
                "provider_status": None, "provider_called": False,
            }, ts_us=now)
        return SettlementOutcome(payout_id, payout.status, payout.status, event_id)
    if not quorum.met:
        raise QuorumNotMetError(payout_id, quorum.missing_roles, quorum.required_roles)

    try:
        # Stable metadata: the provider's idempotency compares the whole create body.
        created = client.create(payout.payout_id, payout.amount_minor, payout.currency,
                                payout.destination, {"initiated_by": payout.initiated_by})
        result = client.settle(payout.payout_id)
    except ProviderError as exc:
        with begin_write(engine) as conn:
            record_event(conn, actor, "payout.settle_error", SUBJECT, payout_id, {
                "endpoint": exc.endpoint, "provider_http_status": exc.status,
                "attempts": exc.attempts, "error": exc.detail[:500],
            }, ts_us=now)
        raise

    with begin_write(engine) as conn:
        current = _load(conn, payout_id, lock=True)
        # Never move a finished payout back: a concurrent re-trigger may have recorded it first.
        status = current.status if current.status in FINISHED else result.status
        values: dict = {"status": status, "updated_at_us": max(now, current.updated_at_us)}
        if current.provider_reference is None:
            values["provider_reference"] = str(created.get("id") or payout_id)
        conn.execute(payouts.update().where(payouts.c.payout_id == payout_id).values(**values))
        event_id = record_event(conn, actor, "payout.settle", SUBJECT, payout_id, {
            "status_before": current.status, "status": status,
            "provider_status": result.status, "provider_http_status": result.http_status,
            "provider_called": True,
            "approvals": [[a.approver, a.role] for a in quorum.valid],
        }, ts_us=now)
    return SettlementOutcome(payout_id, status, result.status, event_id)
