"""The daily ledger extract.

No `from __future__ import annotations` in asset modules: Dagster inspects the real
annotation types of `context` and resources.
"""


import dagster as dg
import pandas as pd

from finance_pipeline.defs.resources import LedgerResource
from finance_pipeline.domain.timeutil import day_bounds_us


def totals_by_currency(lines: pd.DataFrame) -> pd.DataFrame:
    """Debits and credits in minor units per currency, sorted by currency."""
    if lines.empty:
        return pd.DataFrame({"currency": [], "debits_minor": [], "credits_minor": []}).astype(
            {"debits_minor": "int64", "credits_minor": "int64"}
        )
    signed = lines.assign(
        debits_minor=lines["amount_minor"].where(lines["direction"] == "debit", 0),
        credits_minor=lines["amount_minor"].where(lines["direction"] == "credit", 0),
    )
    out = signed.groupby("currency", sort=True)[["debits_minor", "credits_minor"]].sum()
    return out.reset_index().astype({"debits_minor": "int64", "credits_minor": "int64"})


def build_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="ledger_extract",
        group_name="ledger",
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        kinds={"sql", "pandas"},
        description="Every journal line whose entry's ts lies in the UTC day, money as integer minor units.",
    )
    def ledger_extract(context: dg.AssetExecutionContext, ledger: LedgerResource) -> dg.Output:
        from finance_pipeline.ledger.extract import extract_day_lines

        lo, hi = day_bounds_us(context.partition_key)
        lines = extract_day_lines(ledger.engine(), lo, hi)
        totals = totals_by_currency(lines)
        return dg.Output(
            lines,
            metadata={
                "entries": int(lines["journal_id"].nunique()),
                "lines": len(lines),
                "totals": dg.MetadataValue.md(
                    totals.to_markdown(index=False) if not totals.empty else "_no entries_"
                ),
            },
        )

    return [ledger_extract]
