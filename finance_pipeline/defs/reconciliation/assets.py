"""The daily reconciliation, its report, and the gates that decide whether it may be published.

No `from __future__ import annotations`: Dagster inspects the annotation types.

The gates (GX suites on the inputs, and parity) are blocking checks on the report, not on the
extract assets: a failing ledger suite must still let the report materialize so operators see
what to fix, while the proof step after it is skipped in the same run.
"""

import dagster as dg
import pandas as pd

from finance_pipeline.defs.io_managers import AS_SOURCE, StoredFrame, release_unused_memory
from finance_pipeline.defs.resources import ReconciliationSettings
from finance_pipeline.domain.timeutil import day_bounds_us

GATES = ("ledger_suite", "provider_suites", "parity")


def _outcome_frame(rec) -> pd.DataFrame:
    matched = rec.matches.assign(outcome="MATCHED", detail="")
    disc = rec.discrepancies.rename(columns={"class": "outcome"})
    frame = pd.concat([matched, disc], ignore_index=True)
    cols = ["outcome", "provider", "provider_id", "journal_id", "currency", "amount_minor",
            "provider_amount_minor", "ledger_amount_minor", "matched_by", "detail"]
    for c in cols:
        if c not in frame:
            frame[c] = None
    for c in ("amount_minor", "provider_amount_minor", "ledger_amount_minor"):
        frame[c] = frame[c].astype("Int64")
    for c in ("outcome", "provider", "provider_id", "journal_id", "currency", "matched_by", "detail"):
        frame[c] = frame[c].astype("string")
    return frame[cols]


def build_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.multi_asset(
        name="reconcile_day",
        group_name="reconciliation",
        partitions_def=partitions_def,
        # The Stripe pull comes as a source: the reconciliation reads it without its record
        # texts (0.4 GB at a million records), the gate reads it whole once that is done.
        ins={"stripe_balance_transactions": dg.AssetIn(metadata=AS_SOURCE)},
        outs={
            "reconciliation": dg.AssetOut(
                io_manager_key="parquet_io_manager", kinds={"pandas"},
                description="One row per match and per discrepancy of the day.",
            ),
            "reconciliation_report": dg.AssetOut(
                io_manager_key="parquet_io_manager", kinds={"json"},
                description="reconciliation_report.json (finance-reconciliation/1), byte-for-byte deterministic.",
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                "ledger_suite", asset="reconciliation_report", blocking=True,
                description="GX: ledger extract ids, amounts, currencies, directions, balance per currency.",
            ),
            dg.AssetCheckSpec(
                "provider_suites", asset="reconciliation_report", blocking=True,
                description="GX: Stripe and payout-provider pulls: schema, unique ids, known currencies.",
            ),
            dg.AssetCheckSpec(
                "parity", asset="reconciliation_report", blocking=True,
                description="No unresolved discrepancy of a blocking class (policy in ReconciliationSettings).",
            ),
        ],
    )
    def reconcile_day(
        context: dg.AssetExecutionContext,
        recon: ReconciliationSettings,
        ledger_extract: pd.DataFrame,
        stripe_balance_transactions: StoredFrame,
        payout_settlements: pd.DataFrame,
    ):
        from finance_pipeline.quality import gates
        from finance_pipeline.reconciliation import build_report, reconcile
        from finance_pipeline.reconciliation.summary import markdown_table

        gates.warm_up()  # GX's import overlaps the reconciliation instead of following it
        lo, hi = day_bounds_us(context.partition_key)
        stripe = stripe_balance_transactions.read(without=["record"])
        rec = reconcile(ledger_extract, stripe, payout_settlements, lo, hi, recon.tolerances())
        del stripe
        report = build_report(rec)
        counts = rec.counts
        table = markdown_table(rec.discrepancies)
        yield dg.Output(
            _outcome_frame(rec), output_name="reconciliation",
            metadata={"matched": len(rec.matches), "discrepancies": int(sum(counts.values()))},
        )
        yield dg.Output(
            report, output_name="reconciliation_report",
            metadata={
                "matched": dg.MetadataValue.int(len(rec.matches)),
                "ledger_entries": dg.MetadataValue.int(rec.ledger_entries),
                **{f"discrepancies/{cls}": dg.MetadataValue.int(n) for cls, n in counts.items()},
                "discrepancies_total": dg.MetadataValue.int(int(sum(counts.values()))),
                "discrepancies_by_class": dg.MetadataValue.md(table),
            },
        )

        ledger_result = gates.run_ledger_checks(ledger_extract)
        release_unused_memory()  # the reconciliation's working set, before the whole pull is read
        stripe_result = gates.run_stripe_checks(stripe_balance_transactions.read())
        payout_result = gates.run_payout_checks(payout_settlements)
        parity_result = gates.run_parity_checks(rec.discrepancies, recon.parity_policy())
        yield _check("ledger_suite", [ledger_result])
        yield _check("provider_suites", [stripe_result, payout_result])
        yield _check("parity", [parity_result], extra={"discrepancies_by_class": dg.MetadataValue.md(table)})

    return [reconcile_day]


def _check(name: str, results: list, extra: dict | None = None) -> dg.AssetCheckResult:
    passed = all(r.success for r in results)
    metadata: dict = {}
    for r in results:
        metadata[r.name] = dg.MetadataValue.json(r.to_metadata())
    failed = [r for r in results if not r.success]
    metadata["failed_expectations"] = dg.MetadataValue.md(
        "\n\n".join(f"**{r.name}**\n\n{r.markdown()}" for r in failed) if failed else "none"
    )
    metadata.update(extra or {})
    return dg.AssetCheckResult(
        check_name=name, asset_key="reconciliation_report", passed=passed,
        severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
    )
