"""The daily reconciliation, its report, and the gates that decide whether it may be published.

No `from __future__ import annotations`: Dagster inspects the annotation types.

The gates (GX suites on the inputs, and parity) are blocking checks on the report, not on the
extract assets: a failing ledger suite must still let the report materialize so operators see
what to fix, while the proof step after it is skipped in the same run. Their verdict is also
recorded in the ledger database for exactly the inputs they read (quality/verdicts.py): the
proof step requires it whatever run reaches it.
"""

from typing import Any

import dagster as dg
import pandas as pd

from finance_pipeline.defs.io_managers import AS_SOURCE, StoredFrame, release_unused_memory
from finance_pipeline.defs.resources import LedgerResource, ReconciliationSettings

FRAME_INPUTS = ("ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements")
GATES_STEP = "reconcile_day"


def warm_up_gates(context: dg.AssetExecutionContext) -> None:
    """Start importing GX (seconds) at one of a run's first steps when this process runs the
    gates' step later: the code location's in-process executor runs a day's steps in one
    process, so the import overlaps the extract and the pulls. A step run in a process of
    its own (the multiprocess executor), or a run without the gates, does not pay for it."""
    from finance_pipeline.quality import gates

    # The plan of this process: every step of the run in process, only this step in a
    # multiprocess executor's child.
    try:
        plan = context.get_step_execution_context().execution_plan
    except dg.DagsterError:  # invoked directly (build_asset_context): no run, no plan
        return
    if GATES_STEP in plan.step_keys_to_execute:
        gates.warm_up()


def counterparts_sha256(counterparts: pd.DataFrame) -> str:
    """The digest of the entries found outside the read window: their spec leaves, in order,
    and the role of each account they touch (the roles decide their net and fee)."""
    from finance_pipeline.columnar.leaves import entry_leaves_jsonl
    from finance_pipeline.domain.canonical import canonical_bytes
    from finance_pipeline.quality.verdicts import sha256_of

    if not len(counterparts):
        return sha256_of(b"")
    roles = sorted({(str(a), None if pd.isna(r) else str(r))
                    for a, r in zip(counterparts["account_id"], counterparts["account_role"])})
    return sha256_of(entry_leaves_jsonl(counterparts) + canonical_bytes([list(r) for r in roles]))


def gate_inputs(day: str, sources: dict, report: dict, recon: ReconciliationSettings,
                counterparts: pd.DataFrame) -> Any:
    """What the gates of ``day`` run on: the stored inputs' digests, the entries the
    reconciliation followed outside its window, the report's digest, the settings."""
    from finance_pipeline.domain.canonical import canonical_bytes
    from finance_pipeline.quality.suites import SUITE_VERSIONS
    from finance_pipeline.quality.verdicts import GateInputs, sha256_of

    tol = recon.tolerances()
    digests = {name: sources[name].sha256() for name in FRAME_INPUTS}
    digests["ledger_counterparts"] = counterparts_sha256(counterparts)
    digests["reconciliation_report"] = sha256_of(canonical_bytes(report))
    settings = {
        "tolerances": {"time_s": tol.time_s, "amount_minor": tol.amount_minor,
                       "per_class_minor": dict(sorted(tol.per_class_minor.items()))},
        "parity_policy": recon.parity_policy().to_dict(),
        # A changed suite is another gate: a verdict under an older version vouches for nothing.
        "suites": dict(sorted(SUITE_VERSIONS.items())),
    }
    return GateInputs(day=day, digests=digests, settings=settings)


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
        name=GATES_STEP,
        group_name="reconciliation",
        partitions_def=partitions_def,
        # The inputs come as sources: their stored bytes are what the gate verdict names, and
        # the reconciliation reads the Stripe pull without its record texts (0.4 GB at a
        # million records), the gate reads it whole once that is done.
        ins={name: dg.AssetIn(metadata=AS_SOURCE) for name in FRAME_INPUTS},
        outs={
            "reconciliation": dg.AssetOut(
                io_manager_key="parquet_io_manager", kinds={"pandas"},
                description="One row per match and per discrepancy of the day.",
            ),
            "reconciliation_report": dg.AssetOut(
                io_manager_key="parquet_io_manager", kinds={"json"},
                description="reconciliation_report.json (finance-reconciliation/1), byte-for-byte deterministic.",
            ),
            "ledger_counterparts": dg.AssetOut(
                io_manager_key="parquet_io_manager", kinds={"pandas"},
                description=(
                    "Ledger entries outside the day's read window that the reconciliation followed by "
                    "reference (a payout reversed days later, a charge booked after midnight); published "
                    "in the package's reconciliation_context.json."),
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
        ledger: LedgerResource,
        ledger_extract: StoredFrame,
        stripe_balance_transactions: StoredFrame,
        stripe_payouts: StoredFrame,
        payout_settlements: StoredFrame,
    ):
        from finance_pipeline.export.prove import read_for_reconciliation
        from finance_pipeline.export.prove import reconcile_day as reconcile
        from finance_pipeline.providers.stripe_payouts import with_payout_transactions
        from finance_pipeline.quality import gates, verdicts
        from finance_pipeline.reconciliation import build_report
        from finance_pipeline.reconciliation.summary import markdown_table

        gates.warm_up()  # started by the run's first steps already when they ran in this process
        day = context.partition_key
        sources = {"ledger_extract": ledger_extract, "stripe_balance_transactions": stripe_balance_transactions,
                   "stripe_payouts": stripe_payouts, "payout_settlements": payout_settlements}
        # One pass over the extract, a piece at a time: the ledger gate judges each piece, the
        # reconciliation keeps only its claims' lines and columns.
        claims, entries, ledger_result = read_for_reconciliation(day, ledger_extract)
        day_payouts = stripe_payouts.read()
        payouts = payout_settlements.read()
        stripe = with_payout_transactions(stripe_balance_transactions.read(without=["record"]), day_payouts)
        rec, counterparts = reconcile(ledger.engine(), day, claims, stripe, payouts, recon.tolerances(),
                                      stripe_payouts=day_payouts, entries_in_day=entries)
        del stripe, claims
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
        yield dg.Output(counterparts, output_name="ledger_counterparts", metadata={
            "entries": dg.MetadataValue.int(int(counterparts["journal_id"].nunique()) if len(counterparts) else 0),
        })

        release_unused_memory()  # the reconciliation's working set, before the whole pull is read
        stripe_result = gates.run_stripe_checks(with_payout_transactions(stripe_balance_transactions.read(),
                                                                         day_payouts))
        payout_result = gates.run_payout_checks(payouts)
        parity_result = gates.run_parity_checks(rec.discrepancies, recon.parity_policy())
        results = {"ledger_suite": [ledger_result], "provider_suites": [stripe_result, payout_result],
                   "parity": [parity_result]}
        verdict = verdicts.record(ledger.engine(), gate_inputs(day, sources, report, recon, counterparts), results,
                                  run_id=context.run.run_id)
        if not verdict.passed:
            # One readable account of the block in the run's log: the gates, what failed, the fix.
            context.log.error(
                f"{day} is blocked by the gates {', '.join(verdict.failed_gates)}; nothing of this day "
                "will be signed until they pass on the day's inputs. Failed expectations:\n"
                + "\n".join(f"  - {line}" for line in verdict.failed_expectations()[:50])
                + f"\nFix: correct the ledger as docs/runbook.md says, then `{verdicts.check_command(day)}`.")
        yield _check("ledger_suite", day, results["ledger_suite"])
        yield _check("provider_suites", day, results["provider_suites"])
        yield _check("parity", day, results["parity"],
                     extra={"discrepancies_by_class": dg.MetadataValue.md(table)})

    return [reconcile_day]


def _check(name: str, day: str, results: list, extra: dict | None = None) -> dg.AssetCheckResult:
    from finance_pipeline.quality.verdicts import check_command

    passed = all(r.success for r in results)
    # The check's latest result shows which day it judged (checks are not partitioned here).
    metadata: dict = {"partition": dg.MetadataValue.text(day)}
    for r in results:
        metadata[r.name] = dg.MetadataValue.json(r.to_metadata())
    failed = [r for r in results if not r.success]
    metadata["failed_expectations"] = dg.MetadataValue.md(
        "\n\n".join(f"**{r.name}**\n\n{r.markdown()}" for r in failed) if failed else "none"
    )
    if failed:
        metadata["fix"] = dg.MetadataValue.text(
            f"correct the ledger (docs/runbook.md), then run the gates again: {check_command(day)}")
    metadata.update(extra or {})
    return dg.AssetCheckResult(
        check_name=name, asset_key="reconciliation_report", passed=passed,
        severity=dg.AssetCheckSeverity.ERROR, metadata=metadata,
        description=(f"{day}: passed" if passed else
                     f"{day}: blocked ({sum(len(r.failures) for r in failed)} failed expectations)"),
    )
