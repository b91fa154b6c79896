"""finance_pipeline: daily ledger reconciliation and signed proof packages."""

__version__ = "0.1.0"
