"""Payouts: the approval policy, approvals and quorum, and settlement at the payout provider.

Plain Python (no FastAPI, no Dagster): the Finance API and the on-call Dagster job both call
``service``; ``provider`` is the HTTP client for the provider's mutating calls.
"""

from finance_pipeline.payouts.policy import APPROVAL_ROLES, PayoutPolicy, PolicyConfigError, Tier
from finance_pipeline.providers.payout_client import PayoutProviderClient, SettleResult
from finance_pipeline.payouts.service import (
    Approval,
    ApprovalForbiddenError,
    ApprovalResult,
    Payout,
    PayoutConflictError,
    PayoutError,
    PayoutNotFoundError,
    PayoutValidationError,
    PayoutView,
    QuorumNotMetError,
    QuorumStatus,
    SettlementOutcome,
    approval_status,
    approve,
    create_payout,
    get_payout,
    submit_or_retrigger,
)

__all__ = [
    "APPROVAL_ROLES",
    "Approval",
    "ApprovalForbiddenError",
    "ApprovalResult",
    "Payout",
    "PayoutConflictError",
    "PayoutError",
    "PayoutNotFoundError",
    "PayoutPolicy",
    "PayoutProviderClient",
    "PayoutValidationError",
    "PayoutView",
    "PolicyConfigError",
    "QuorumNotMetError",
    "QuorumStatus",
    "SettleResult",
    "SettlementOutcome",
    "Tier",
    "approval_status",
    "approve",
    "create_payout",
    "get_payout",
    "submit_or_retrigger",
]
