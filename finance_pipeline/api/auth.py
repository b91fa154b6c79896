"""Bearer-token authentication and role checks for the Finance API.

401 when the token is missing or not valid, 403 when the actor lacks the role; both carry the
API's error shape and write nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from finance_pipeline.api.tokens import Principal, TokenDirectory
from finance_pipeline.domain.journal import FieldError

log = logging.getLogger(__name__)

# Who may do what. Reading is open to every role; auditors only read.
READ_ROLES = frozenset({"operator", "finance-lead", "security-engineer", "super-admin", "auditor", "service"})
POST_JOURNAL_ROLES = frozenset({"operator", "finance-lead", "service"})
# Who posts without a second person: the pipeline's service identity (bulk bookings).
SERVICE_ROLES = frozenset({"service"})
SETTLE_ROLES = frozenset({"operator", "finance-lead", "super-admin"})
# Roles whose holder may approve another person's entry (the runbook's paired review).
from finance_pipeline.ledger.reviews import REVIEWER_ROLES  # noqa: E402 - one home for the rule


class ApiError(Exception):
    """An error response: status, field errors, optional headers and extra members."""

    def __init__(self, status: int, errors: Iterable[FieldError], *, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.status = status
        self.errors = list(errors)
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(f"HTTP {status}: " + "; ".join(map(str, self.errors)))

    def body(self) -> dict[str, Any]:
        return {"errors": [{"field": e.field, "message": e.message} for e in self.errors], **self.extra}


def unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(401, [FieldError("Authorization", message)], headers={"WWW-Authenticate": challenge})


def authenticate(header: str | None, tokens: TokenDirectory) -> Principal:
    """The principal behind an ``Authorization: Bearer <token>`` header, or a 401 ApiError."""
    if not header or not header.strip():
        raise unauthorized("missing: send 'Authorization: Bearer <token>' (create one with "
                           "`finance-pipeline tokens add`)", invalid=False)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("must be 'Bearer <token>'", invalid=False)
    principal = tokens.authenticate(token.strip())
    if principal is None:
        log.warning("rejected a request with an unknown, revoked or malformed token")
        raise unauthorized("the token is unknown, revoked or malformed", invalid=True)
    return principal


def require_role(principal: Principal, allowed: frozenset[str], action: str) -> None:
    """403 unless the principal holds one of ``allowed``."""
    if principal.roles & allowed:
        return
    log.warning("403: %s (roles %s) may not %s", principal.actor, sorted(principal.roles), action)
    raise ApiError(403, [FieldError(
        "Authorization",
        f"{principal.actor} (roles: {', '.join(sorted(principal.roles))}) may not {action}; "
        f"that needs one of: {', '.join(sorted(allowed))}",
    )])
