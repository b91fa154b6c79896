"""Resources: configuration plus a handle on the outside world, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from finance_pipeline import settings
from finance_pipeline.settings import Settings

if TYPE_CHECKING:
    import pandas as pd


def configured(config: Settings, name: str) -> Any:
    """What a resource is given for setting ``name``: ``dg.EnvVar`` of the variable the value
    was read from, else the value itself (a default, or a value given in code).

    Dagster writes a resource's plain values into the job snapshot it stores in the instance
    and shows them in the UI; an EnvVar is stored and shown as the variable's name, and a run
    reads the value from its own environment. So no key, token or password reaches either.
    """
    value = getattr(config, name)
    variable = config.source(name)
    if variable is None:
        return str(value) if isinstance(value, Path) else value
    return dg.EnvVar.int(variable) if isinstance(value, int) and not isinstance(value, bool) else dg.EnvVar(variable)


class _SecretsResolver(dg.ConfigurableResource):
    """Fields that may hold an ``aws-sm://`` reference, resolved through Secrets Manager at
    ``aws_endpoint_url`` in ``aws_region`` (AWS_ENDPOINT_URL, AWS_REGION; empty: boto3's own)."""

    aws_endpoint_url: str = ""
    aws_region: str = ""

    def _secret(self, value: Any) -> Any:
        from finance_pipeline.secrets import resolve_secret

        return resolve_secret(value, endpoint_url=self.aws_endpoint_url or None, region=self.aws_region or None)


class LedgerResource(_SecretsResolver):
    """The ledger database (``DATABASE_URL``; embedded SQLite under ./var when unset), and which
    timestamps its entries may have (``FP_PARTITIONS_START``, ``FP_ENTRY_FUTURE_SKEW_S``)."""

    database_url: str = ""
    first_day: str = settings.DEFAULT_PARTITIONS_START
    entry_future_skew_s: int = settings.DEFAULT_ENTRY_FUTURE_SKEW_S

    _engine: Any = PrivateAttr(default=None)

    @property
    def url(self) -> str:
        """The URL, with an ``aws-sm://`` reference resolved (once per run: the engine is cached)."""
        return self._secret(self.database_url) or settings.sqlite_url(settings.DEFAULT_VAR_DIR)

    def entry_window(self):
        from finance_pipeline.ledger.posting import EntryWindow

        return EntryWindow(self.first_day, self.entry_future_skew_s)

    def engine(self):
        if self._engine is None:
            from finance_pipeline.ledger.engine import create_ledger_engine

            self._engine = create_ledger_engine(self.url)
        return self._engine

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


class StripeResource(_SecretsResolver):
    """Stripe, reached only through the official SDK (``STRIPE_API_KEY``, ``STRIPE_API_BASE``)."""

    api_key: str = settings.DEFAULT_STRIPE_API_KEY
    api_base: str = ""
    page_size: int = 100
    # Slices of the day paged at once (Stripe allows 100 reads/s in live mode, 25 in test mode).
    concurrency: int = 4
    # Worker processes, each paging its part of the day with `concurrency` slices: for days of
    # hundreds of thousands of records, where decoding pages outruns one process (see bench/).
    processes: int = 1
    # The SDK's HTTP client: "requests", or "pycurl" (about a third less CPU per page; the
    # SDK's own timeouts). See providers/stripe_pull.py.
    http_client: str = "requests"
    max_attempts: int = 6
    max_retry_delay_s: float = 30.0

    @property
    def base(self) -> str:
        return self.api_base or settings.DEFAULT_STRIPE_API_BASE

    def balance_transactions_frame(self, created_gte: int, created_lt: int) -> pd.DataFrame:
        """The balance transactions created in [created_gte, created_lt) as the pipeline's frame."""
        from finance_pipeline.providers.retry import RetryPolicy
        from finance_pipeline.providers.stripe_pull import pull_balance_transactions_frame

        return pull_balance_transactions_frame(
            self._secret(self.api_key), self.base, created_gte, created_lt,
            retry=RetryPolicy(max_attempts=self.max_attempts, max_delay_s=self.max_retry_delay_s),
            page_size=self.page_size, concurrency=self.concurrency, processes=self.processes,
            http_client=self.http_client,
        )

    def payouts_frame(self, window: tuple[int, int], day: tuple[int, int]) -> pd.DataFrame:
        """The payouts created in ``window`` or arriving in ``day`` (unix seconds), with the
        balance transactions of those created before the window."""
        from finance_pipeline.providers.retry import RetryPolicy
        from finance_pipeline.providers.stripe_payouts import pull_day_payouts

        return pull_day_payouts(
            self._secret(self.api_key), self.base, window, day,
            retry=RetryPolicy(max_attempts=self.max_attempts, max_delay_s=self.max_retry_delay_s),
            page_size=self.page_size, http_client=self.http_client,
        )


class PayoutProviderResource(_SecretsResolver):
    """The payout provider's HTTP API (``PAYOUT_API_BASE``, ``PAYOUT_API_TOKEN``)."""

    base_url: str = ""
    token: str = settings.DEFAULT_PAYOUT_TOKEN
    max_attempts: int = 6
    max_retry_delay_s: float = 30.0

    @property
    def base(self) -> str:
        return self.base_url or settings.default_payout_api_base()

    def _token(self) -> str:
        return self._secret(self.token)

    def _retry(self):
        from finance_pipeline.providers.retry import RetryPolicy

        return RetryPolicy(max_attempts=self.max_attempts, max_delay_s=self.max_retry_delay_s)

    def pull_settlements(self, from_ts: str, to_ts: str) -> list[dict]:
        from finance_pipeline.providers.payout_pull import pull_settlements

        return pull_settlements(self.base, self._token(), from_ts, to_ts, retry=self._retry())

    def pull_pending_payouts(self, created_to: str) -> list[dict]:
        from finance_pipeline.providers.payout_pull import pull_pending_payouts

        return pull_pending_payouts(self.base, self._token(), created_to, retry=self._retry())


class ReconciliationSettings(dg.ConfigurableResource):
    """Tolerances and the parity policy shared by the pulls, the reconciliation and its gate.

    ``blocking_classes`` empty means the default: every class but TIMING_WINDOW blocks.
    ``class_tolerance_minor`` overrides the amount tolerance per class (e.g. FEE_MISMATCH: 1);
    ``max_allowed`` tolerates that many discrepancies of a class before it blocks.
    """

    time_tolerance_s: int = settings.DEFAULT_TIME_TOLERANCE_S
    amount_tolerance_minor: int = settings.DEFAULT_AMOUNT_TOLERANCE_MINOR
    class_tolerance_minor: dict[str, int] = {}
    blocking_classes: list[str] = []
    max_allowed: dict[str, int] = {}

    def tolerances(self):
        from finance_pipeline.reconciliation.engine import CLASSES, Tolerances

        unknown = sorted(set(self.class_tolerance_minor) - set(CLASSES))
        if unknown:
            raise ValueError(
                f"class_tolerance_minor names unknown classes {unknown}; use some of {', '.join(CLASSES)}"
            )
        return Tolerances(
            time_s=self.time_tolerance_s,
            amount_minor=self.amount_tolerance_minor,
            per_class_minor=dict(self.class_tolerance_minor),
        )

    def parity_policy(self):
        from finance_pipeline.quality.gates import ParityPolicy

        return ParityPolicy.from_config(self.blocking_classes or None, self.max_allowed or None)


class SigningResource(dg.ConfigurableResource):
    """Who signs proofs: ``FP_SIGNING_KEYS`` (JSON list), else ``KMS_KEY_ID`` alone, else the
    two local keys in ``keys_dir`` ($FP_VAR_DIR/keys; `finance-pipeline keys init`)."""

    signing_keys_json: str = ""
    kms_key_id: str = ""
    kms_key_role: str = ""
    quorum_json: str = ""
    aws_endpoint_url: str = ""
    aws_region: str = ""
    keys_dir: str = ""  # empty: the embedded default var/keys

    def config(self):
        from finance_pipeline.signing.config import SigningConfig

        return SigningConfig.resolve(
            keys_json=self.signing_keys_json, kms_key_id=self.kms_key_id, kms_key_role=self.kms_key_role,
            quorum_json=self.quorum_json, kms_endpoint_url=self.aws_endpoint_url, region=self.aws_region,
            keys_dir=self.keys_dir or Settings().keys_dir)

    def signers(self):
        from finance_pipeline.signing.config import build_signers

        config = self.config()
        return build_signers(config), config.quorum


class PublicationResource(dg.ConfigurableResource):
    """Where proofs go: ``S3_AUDIT_BUCKET`` under Object Lock with SSE-KMS, else ./var/published."""

    s3_audit_bucket: str = ""
    sse_kms_key_id: str = ""
    object_lock_mode: str = settings.DEFAULT_S3_OBJECT_LOCK_MODE
    retention_days: int = settings.DEFAULT_S3_RETENTION_DAYS
    local_dir: str = ""
    aws_endpoint_url: str = ""
    aws_region: str = ""

    def publisher(self):
        from finance_pipeline.export.exporter import build_publisher

        return build_publisher(
            bucket=self.s3_audit_bucket, kms_key_id=self.sse_kms_key_id, lock_mode=self.object_lock_mode,
            retention_days=self.retention_days, local_dir=self.local_dir,
            endpoint_url=self.aws_endpoint_url or None, region=self.aws_region or None,
        )
