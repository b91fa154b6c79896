"""Reconciliation of the ledger against Stripe and the payout provider (plain pandas)."""

from finance_pipeline.reconciliation.engine import (
    CLASSES,
    Reconciliation,
    Tolerances,
    reconcile,
)
from finance_pipeline.reconciliation.report import build_report, report_bytes

__all__ = ["CLASSES", "Reconciliation", "Tolerances", "build_report", "reconcile", "report_bytes"]
