"""`reconciliation_report.json` (`finance-reconciliation/1`): the report and its exact bytes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.reconciliation.engine import CLASSES, DISCREPANCY_COLUMNS, Reconciliation

FORMAT = "finance-reconciliation/1"


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def build_report(rec: Reconciliation) -> dict:
    """The report as a plain dict; no wall-clock time, so it depends on the inputs alone."""
    rows = [
        {c: _plain(v) for c, v in zip(DISCREPANCY_COLUMNS, row)}
        for row in rec.discrepancies[DISCREPANCY_COLUMNS].itertuples(index=False, name=None)
    ]
    return {
        "format": FORMAT,
        "interval": {"from": format_ts_us(rec.lo_us), "to": format_ts_us(rec.hi_us)},
        "summary": {
            "ledger_entries": rec.ledger_entries,
            "provider_records": dict(rec.provider_records),
            "matched": len(rec.matches),
            "discrepancies": {cls: rec.counts[cls] for cls in CLASSES},
        },
        "discrepancies": rows,
    }


def report_bytes(report: dict) -> bytes:
    """The published bytes: RFC 8785 canonical JSON (members sorted, no insignificant space)."""
    return canonical_bytes(report)
