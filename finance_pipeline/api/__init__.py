"""The Finance HTTP API (FastAPI): journal entries, proofs, payout approvals and settlement.

``create_app`` builds it; ``finance-pipeline serve`` runs it. Tokens live in ``tokens``.
"""

from finance_pipeline.api.app import ApiSettings, create_app
from finance_pipeline.api.tokens import Principal, TokenStore

__all__ = ["ApiSettings", "Principal", "TokenStore", "create_app"]
