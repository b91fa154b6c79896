"""The signed proof package of a day, published write-once.

No `from __future__ import annotations`: Dagster inspects the annotation types.

Two guarantees hold however the step is reached (a whole day, `proof_package` alone from the
UI, a backfill, a retry):
- the gates: the step signs nothing unless the recorded gate verdict passed for exactly the
  stored inputs it reads (quality/verdicts.py); Dagster's blocking checks only gate later
  steps of their own run;
- the chain: the asset depends on its own previous day, so Dagster orders backfills day by
  day and does not run a day whose predecessor did not publish; the chain starts explicitly
  at ``chain_start`` (FP_CHAIN_START, default the first partition).
"""

import json
import time

import dagster as dg
import pandas as pd

from finance_pipeline.defs.io_managers import AS_SOURCE, StoredFrame, release_unused_memory
from finance_pipeline.defs.reconciliation.assets import FRAME_INPUTS, gate_inputs
from finance_pipeline.defs.resources import (
    LedgerResource,
    PublicationResource,
    ReconciliationSettings,
    SigningResource,
)


def _run_alive(instance: dg.DagsterInstance, holder: str) -> bool:
    """Whether the run holding a day's seal may still be publishing it. Unknown holders (another
    instance, a command) count as alive: their seal is taken over only when its lease ends."""
    if not holder.startswith("run:"):
        return True
    run = instance.get_run_by_id(holder[len("run:"):])
    return run is None or not run.is_finished


def _location_value(location: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(location) if "://" in location else dg.MetadataValue.path(location)


def build_assets(partitions_def: dg.TimeWindowPartitionsDefinition, chain_start: str) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="proof_package",
        group_name="proofs",
        partitions_def=partitions_def,
        kinds={"s3"},
        # The frames come as sources: the bundle reads them one by one and lets each go once
        # its file is written, and none is held while the package is signed and verified.
        ins={name: dg.AssetIn(metadata=AS_SOURCE) for name in FRAME_INPUTS},
        # The proof chain, in the asset graph: day N follows day N-1's published proof.
        deps=[dg.AssetDep("proof_package",
                          partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))],
        description=(
            "finance-proof/1 package of the day: ledger_entries.jsonl (RFC 8785 leaves), "
            "provider_records.jsonl, reconciliation_report.json and the signed proof_package.json, "
            "verified against the public keyring, then published write-once. Signed only when the "
            "day's gates passed on exactly these inputs, and only after the previous day's proof "
            f"(the chain starts on {chain_start})."
        ),
        metadata={"finance_pipeline/chain_start": chain_start},
    )
    def proof_package(
        context: dg.AssetExecutionContext,
        ledger: LedgerResource,
        signing: SigningResource,
        publication: PublicationResource,
        recon: ReconciliationSettings,
        reconciliation_report: dict,
        ledger_counterparts: pd.DataFrame,
        ledger_extract: StoredFrame,
        stripe_balance_transactions: StoredFrame,
        stripe_payouts: StoredFrame,
        payout_settlements: StoredFrame,
    ) -> dg.MaterializeResult:
        from finance_pipeline.export import registry
        from finance_pipeline.export.exporter import publish_day, seal
        from finance_pipeline.export.prove import prove_day
        from finance_pipeline.ledger import periods
        from finance_pipeline.quality import verdicts

        started = time.perf_counter()
        day = context.partition_key
        engine = ledger.engine()
        sources = {"ledger_extract": ledger_extract, "stripe_balance_transactions": stripe_balance_transactions,
                   "stripe_payouts": stripe_payouts, "payout_settlements": payout_settlements}
        try:
            verdict = verdicts.require_passed(engine, gate_inputs(day, sources, reconciliation_report, recon,
                                                                  ledger_counterparts))
            previous = registry.previous_link(engine, day, chain_start)
        except (verdicts.GatesNotPassedError, registry.ChainError) as exc:
            # A refusal, not a crash: the UI shows this text, without a stack trace to read past.
            raise dg.Failure(description=str(exc), allow_retries=False, metadata={
                "day": day, "fix": verdicts.check_command(day) if isinstance(exc, verdicts.GatesNotPassedError)
                else f"publish the days from {chain_start} (FP_CHAIN_START) up to the day before, in order",
            }) from None
        bundle = prove_day(day, ledger_extract, stripe_balance_transactions, payout_settlements,
                           reconciliation_report, recon.tolerances(), previous,
                           counterparts=ledger_counterparts, stripe_payouts=stripe_payouts.read())
        publisher = publication.publisher()
        release_unused_memory()  # what building the bundle freed, before the verification's work

        def sign() -> dict:
            signers, quorum = signing.signers()
            return seal(bundle, signers, quorum)

        try:
            published = publish_day(engine, bundle, publisher, sign, holder=f"run:{context.run.run_id}",
                                    holder_alive=lambda holder: _run_alive(context.instance, holder))
        except (periods.LedgerMovedError, periods.PublicationInProgressError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False, metadata={"day": day}) from None
        duration_ms = int((time.perf_counter() - started) * 1000)
        publication_status = "published" if published.created else "unchanged"
        context.log.info(json.dumps({
            "event": "proof.published", "day": day, "proofId": published.proof_id,
            "location": published.location, "created": published.created,
            "publication": publication_status,
            "recovered": published.recovered, "exports.duration_ms": duration_ms,
        }, sort_keys=True))
        return dg.MaterializeResult(metadata={
            "proofId": published.proof_id,
            # "published": signed and written by this run; "unchanged": this very package was
            # already published (a re-run of a closed day signs and writes nothing).
            "publication": publication_status,
            "recovered": published.recovered,
            "location": _location_value(published.location),
            "merkle_root": published.merkle_root,
            "statement_sha256": published.statement_sha256,
            "previous": previous["proof_id"] if previous else "none (chain start)",
            "gate_verdict": verdict.verdict_id,
            "created": published.created,
            "ledger_entries": dg.MetadataValue.int(bundle.entries),
            "exports.duration_ms": dg.MetadataValue.int(duration_ms),
        })

    return [proof_package]
