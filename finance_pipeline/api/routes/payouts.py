"""Payouts: read, approve (quorum), settle at the provider."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from finance_pipeline.api import schemas
from finance_pipeline.api.common import (
    ApiContext,
    EXAMPLE_PAYOUT_ID,
    PAYOUT_ID_PATTERN,
    _approval_out,
    _body_doc,
    _errors,
    _payout_error,
    _quorum_out,
)
from finance_pipeline.api.auth import ApiError, READ_ROLES, SETTLE_ROLES, require_role
from finance_pipeline.api.tokens import Principal
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.payouts import service
from finance_pipeline.payouts.policy import APPROVAL_ROLES
from finance_pipeline.providers import ProviderError


def build_router(ctx: ApiContext) -> APIRouter:
    """The payouts endpoints over ``ctx``."""
    engine, settings, policy, payout_client = ctx.engine, ctx.settings, ctx.policy, ctx.payout_client
    principal, raw_body = ctx.principal, ctx.raw_body
    router = APIRouter()

    @router.get("/payout/{payout_id}", response_model=schemas.PayoutOut, tags=["payouts"],
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
            **p.to_dict(), "updated_at": format_ts_us(p.updated_at_us),
            "approvals": [_approval_out(a, now) for a in view.approvals],
            "quorum": _quorum_out(quorum),
            "audit_events": [{"id": ev.id, "ts": format_ts_us(ev.ts_us), "actor": ev.actor,
                              "action": ev.action, "subject_type": ev.subject_type,
                              "subject_id": ev.subject_id, "detail": ev.detail} for ev in view.events],
        }

    @router.post("/payout/{payout_id}/approvals", status_code=201, response_model=schemas.ApprovalResultOut,
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

    @router.post("/payout/{payout_id}/settle", response_model=schemas.SettleOut, tags=["payouts"],
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

    return router
