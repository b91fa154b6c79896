"""The Dagster code location: `dagster dev -m finance_pipeline.definitions`.

An edge: when Dagster loads the definitions (never at import) the configuration is read from
this process's environment once, ``Settings.from_environ(os.environ)``, and handed to the
resources, partitions and schedule. The resources get ``dg.EnvVar`` of each variable that is
set (see ``defs.resources.configured``), so the UI shows names, never values.
"""

from __future__ import annotations

import os

import dagster as dg

from finance_pipeline.defs.drill.jobs import build_jobs as build_drill_jobs
from finance_pipeline.defs.io_managers import ParquetIOManager
from finance_pipeline.defs.ledger import assets as ledger_assets
from finance_pipeline.defs.oncall import build_defs as build_oncall_defs
from finance_pipeline.defs.partitions import daily_partitions
from finance_pipeline.defs.proofs import assets as proof_assets
from finance_pipeline.defs.providers import assets as provider_assets
from finance_pipeline.defs.reconciliation import assets as reconciliation_assets
from finance_pipeline.defs.resources import (
    LedgerResource,
    PayoutProviderResource,
    PublicationResource,
    ReconciliationSettings,
    SigningResource,
    StripeResource,
    configured,
)
from finance_pipeline.settings import Settings, validate_chain_start


def build_resources(config: Settings) -> dict[str, object]:
    """The resources, wired to ``config`` (see ``configured``)."""
    from dagster_aws.s3 import S3Resource

    def c(name: str):
        return configured(config, name)

    aws = {"aws_endpoint_url": c("aws_endpoint_url"), "aws_region": c("aws_region")}
    return {
        "ledger": LedgerResource(database_url=c("database_url"), first_day=config.partitions_start,
                                 entry_future_skew_s=c("entry_future_skew_s"), **aws),
        "stripe": StripeResource(
            api_key=c("stripe_api_key"), api_base=c("stripe_api_base"),
            concurrency=c("stripe_pull_concurrency"), processes=c("stripe_pull_processes"),
            http_client=c("stripe_http_client"), **aws,
        ),
        "payouts": PayoutProviderResource(base_url=c("payout_api_base"), token=c("payout_api_token"), **aws),
        "recon": ReconciliationSettings(
            time_tolerance_s=c("recon_time_tolerance_s"),
            amount_tolerance_minor=c("recon_amount_tolerance_minor"),
            # JSON and lists are parsed by the settings: plain values, never credentials.
            class_tolerance_minor=dict(config.recon_class_tolerance_minor),
            blocking_classes=list(config.recon_blocking_classes),
            max_allowed=dict(config.recon_max_allowed),
        ),
        "signing": SigningResource(
            signing_keys_json=c("signing_keys_json"), kms_key_id=c("kms_key_id"),
            kms_key_role=c("kms_key_role"), quorum_json=c("signing_quorum_json"),
            keys_dir=str(config.keys_dir), **aws,
        ),
        "publication": PublicationResource(
            s3_audit_bucket=c("s3_audit_bucket"), sse_kms_key_id=c("s3_sse_kms_key_id"),
            object_lock_mode=c("s3_object_lock_mode"), retention_days=c("s3_retention_days"),
            local_dir=c("publish_dir"), **aws,
        ),
        "parquet_io_manager": ParquetIOManager(
            base_dir=c("storage_dir"), s3_bucket=c("storage_s3_bucket"),
            s3=S3Resource(endpoint_url=c("aws_endpoint_url") or None),
        ),
    }


def build_definitions(partitions_start: str | None = None, chain_start: str | None = None,
                      config: Settings | None = None) -> dg.Definitions:
    """The code location on ``config`` (None: read from this process's environment now), with
    ``partitions_start`` / ``chain_start`` given in code overriding it."""
    from finance_pipeline.memory import use_lean_allocators

    config = config if config is not None else Settings.from_environ(os.environ)
    if partitions_start:
        config = config.replace(partitions_start=partitions_start)
    partitions = daily_partitions(config.partitions_start)
    chain = validate_chain_start(chain_start or config.first_chain_day, config.partitions_start)
    # The process's allocators (Arrow's and glibc's), chosen once here (every run's process loads
    # the definitions).
    use_lean_allocators(config.arrow_memory_pool)
    assets = [
        *ledger_assets.build_assets(partitions),
        *provider_assets.build_assets(partitions),
        *reconciliation_assets.build_assets(partitions),
        *proof_assets.build_assets(partitions, chain),
    ]
    # A day's steps run in one process: the UI, backfills and the CLI then pay the code
    # location's import once per run, not once per step.
    core = dg.Definitions(assets=assets, jobs=build_drill_jobs(), resources=build_resources(config),
                          executor=dg.in_process_executor)
    return dg.Definitions.merge(core, build_oncall_defs(partitions, config=config))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
