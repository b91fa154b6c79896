"""Published proofs: the registry record of one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path

from finance_pipeline.api import schemas
from finance_pipeline.api.common import (
    ApiContext,
    EXAMPLE_PROOF_ID,
    PROOF_ID_PATTERN,
    _errors,
)
from finance_pipeline.api.auth import ApiError, READ_ROLES, require_role
from finance_pipeline.api.tokens import Principal
from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.export import registry


def build_router(ctx: ApiContext) -> APIRouter:
    """The proofs endpoints over ``ctx``."""
    engine, principal = ctx.engine, ctx.principal
    router = APIRouter()

    @router.get("/finance/proofs/{proof_id}", response_model=schemas.ProofOut, tags=["proofs"],
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

    return router
