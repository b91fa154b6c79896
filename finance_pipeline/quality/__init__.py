"""Data-quality gates: Great Expectations 1.x suites defined in code (no Dagster here).

Importing this package is fast: Great Expectations is imported on the first gate run.
"""

from finance_pipeline.quality.gates import (
    Failure,
    GateResult,
    run_ledger_checks,
    run_parity_checks,
    run_payout_checks,
    run_stripe_checks,
)
from finance_pipeline.quality.suites import SUITE_VERSIONS, SUITES, ParityPolicy

__all__ = [
    "SUITES", "SUITE_VERSIONS", "Failure", "GateResult", "ParityPolicy", "run_ledger_checks",
    "run_parity_checks", "run_payout_checks", "run_stripe_checks",
]
