"""The signed proof package of a day, published write-once.

No `from __future__ import annotations`: Dagster inspects the annotation types.
Runs only when the reconciliation report's blocking gates passed in the same run.
"""

import json
import time

import dagster as dg

from finance_pipeline.defs.io_managers import AS_SOURCE, StoredFrame, release_unused_memory
from finance_pipeline.defs.resources import (
    LedgerResource,
    PublicationResource,
    ReconciliationSettings,
    SigningResource,
)


def _run_started_s(context: dg.AssetExecutionContext) -> float:
    stats = context.instance.get_run_stats(context.run.run_id)
    return stats.start_time or time.time()


def build_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="proof_package",
        group_name="proofs",
        partitions_def=partitions_def,
        kinds={"s3"},
        # The frames come as sources: the bundle reads them one by one and lets each go once
        # its file is written, and none is held while the package is signed and verified.
        ins={name: dg.AssetIn(metadata=AS_SOURCE)
             for name in ("ledger_extract", "stripe_balance_transactions", "payout_settlements")},
        description=(
            "finance-proof/1 package of the day: ledger_entries.jsonl (RFC 8785 leaves), "
            "provider_records.jsonl, reconciliation_report.json and the signed proof_package.json, "
            "verified against the public keyring, then published write-once."
        ),
    )
    def proof_package(
        context: dg.AssetExecutionContext,
        ledger: LedgerResource,
        signing: SigningResource,
        publication: PublicationResource,
        recon: ReconciliationSettings,
        reconciliation_report: dict,
        ledger_extract: StoredFrame,
        stripe_balance_transactions: StoredFrame,
        payout_settlements: StoredFrame,
    ) -> dg.MaterializeResult:
        from finance_pipeline.export import registry
        from finance_pipeline.export.bundle import build_bundle
        from finance_pipeline.export.exporter import already_published, publish, seal

        day = context.partition_key
        engine = ledger.engine()
        previous = registry.previous_link(engine, day, partitions_def.get_first_partition_key())
        bundle = build_bundle(day, ledger_extract, stripe_balance_transactions, payout_settlements,
                              reconciliation_report, recon.tolerances(), previous)
        publisher = publication.publisher()
        published = already_published(engine, bundle, publisher)
        release_unused_memory()  # what building the bundle freed, before the verification's work
        if published is None:
            signers, quorum = signing.signers()
            files = seal(bundle, signers, quorum)
            published = publish(engine, bundle, files, publisher)
        duration_ms = int((time.time() - _run_started_s(context)) * 1000)
        context.log.info(json.dumps({
            "event": "proof.published", "day": day, "proofId": published.proof_id,
            "location": published.location, "created": published.created,
            "exports.duration_ms": duration_ms,
        }, sort_keys=True))
        return dg.MaterializeResult(metadata={
            "proofId": published.proof_id,
            "location": dg.MetadataValue.path(published.location),
            "merkle_root": published.merkle_root,
            "statement_sha256": published.statement_sha256,
            "previous": json.dumps(previous),
            "created": published.created,
            "ledger_entries": dg.MetadataValue.int(bundle.statement["ledger"]["entries"]),
            "exports.duration_ms": dg.MetadataValue.int(duration_ms),
        })

    return [proof_package]
