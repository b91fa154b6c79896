"""The Dagster code location: `dagster dev -m finance_pipeline.definitions`."""

from __future__ import annotations

import json
import os

import dagster as dg

from finance_pipeline import settings
from finance_pipeline.defs.drill.jobs import build_jobs as build_drill_jobs
from finance_pipeline.defs.io_managers import ParquetIOManager
from finance_pipeline.defs.ledger import assets as ledger_assets
from finance_pipeline.defs.oncall import build_defs as build_oncall_defs
from finance_pipeline.defs.partitions import daily_partitions, validate_chain_start
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
    env_int_or,
    env_or,
)


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def _env_json_dict(name: str) -> dict:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a JSON object such as '{{\"FEE_MISMATCH\": 1}}': {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object such as '{{\"FEE_MISMATCH\": 1}}'")
    return value


def build_resources() -> dict[str, object]:
    """Resources wired to the environment; unset variables mean the embedded defaults."""
    from dagster_aws.s3 import S3Resource

    return {
        "ledger": LedgerResource(database_url=env_or("DATABASE_URL", "")),
        "stripe": StripeResource(
            api_key=env_or("STRIPE_API_KEY", settings.DEFAULT_STRIPE_API_KEY),
            api_base=env_or("STRIPE_API_BASE", ""),
            concurrency=env_int_or("STRIPE_PULL_CONCURRENCY", 4),
            processes=env_int_or("STRIPE_PULL_PROCESSES", 1),
            http_client=env_or("STRIPE_HTTP_CLIENT", "requests"),
        ),
        "payouts": PayoutProviderResource(
            base_url=env_or("PAYOUT_API_BASE", ""),
            token=env_or("PAYOUT_API_TOKEN", settings.DEFAULT_PAYOUT_TOKEN),
        ),
        "recon": ReconciliationSettings(
            time_tolerance_s=env_int_or("RECON_TIME_TOLERANCE_S", settings.DEFAULT_TIME_TOLERANCE_S),
            amount_tolerance_minor=env_int_or(
                "RECON_AMOUNT_TOLERANCE_MINOR", settings.DEFAULT_AMOUNT_TOLERANCE_MINOR
            ),
            class_tolerance_minor=_env_json_dict("RECON_CLASS_TOLERANCE_MINOR"),
            blocking_classes=_env_list("RECON_BLOCKING_CLASSES"),
            max_allowed=_env_json_dict("RECON_MAX_ALLOWED"),
        ),
        "signing": SigningResource(
            signing_keys_json=env_or("FP_SIGNING_KEYS", ""),
            kms_key_id=env_or("KMS_KEY_ID", ""),
            kms_key_role=env_or("KMS_KEY_ROLE", ""),
            quorum_json=env_or("FP_SIGNING_QUORUM", ""),
            aws_endpoint_url=env_or("AWS_ENDPOINT_URL", ""),
            aws_region=env_or("AWS_REGION", ""),
        ),
        "publication": PublicationResource(
            s3_audit_bucket=env_or("S3_AUDIT_BUCKET", ""),
            sse_kms_key_id=env_or("S3_SSE_KMS_KEY_ID", env_or("KMS_KEY_ID", "")),
            object_lock_mode=env_or("S3_OBJECT_LOCK_MODE", "COMPLIANCE"),
            retention_days=env_int_or("S3_RETENTION_DAYS", 2555),
            local_dir=env_or("FP_PUBLISH_DIR", ""),
            aws_endpoint_url=env_or("AWS_ENDPOINT_URL", ""),
            aws_region=env_or("AWS_REGION", ""),
        ),
        "parquet_io_manager": ParquetIOManager(
            base_dir=env_or("FP_STORAGE_DIR", ""),
            s3_bucket=env_or("FP_STORAGE_S3_BUCKET", ""),
            s3=S3Resource(endpoint_url=env_or("AWS_ENDPOINT_URL", None)),
        ),
    }


def build_definitions(partitions_start: str | None = None, chain_start: str | None = None) -> dg.Definitions:
    start = partitions_start or os.environ.get("FP_PARTITIONS_START") or settings.DEFAULT_PARTITIONS_START
    partitions = daily_partitions(start)
    chain = validate_chain_start(chain_start or os.environ.get("FP_CHAIN_START") or start, start)
    assets = [
        *ledger_assets.build_assets(partitions),
        *provider_assets.build_assets(partitions),
        *reconciliation_assets.build_assets(partitions),
        *proof_assets.build_assets(partitions, chain),
    ]
    # A day's steps run in one process: the UI, backfills and the CLI then pay the code
    # location's import once per run, not once per step.
    core = dg.Definitions(assets=assets, jobs=build_drill_jobs(), resources=build_resources(),
                          executor=dg.in_process_executor)
    return dg.Definitions.merge(core, build_oncall_defs(partitions))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
