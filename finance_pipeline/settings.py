"""The configuration: one typed, frozen ``Settings``, read from the environment at the edge.

``Settings.from_environ(environ)`` is the one place that reads the variables (``DATABASE_URL``,
``STRIPE_API_KEY``, ``FP_PARTITIONS_START``, ...) and refuses a bad value by naming the variable
and the fix. The edges call it with ``os.environ`` when they start work, never at import: the
command line (``finance_pipeline.cli``), the Dagster code location
(``finance_pipeline.definitions``) and ``finance-pipeline serve``, which hands the API app
factory its values. Everything below them is given the object, or plain values from it.

Unset (or empty) variables mean the embedded defaults below: an SQLite ledger, the local
sandboxes and files under ``FP_VAR_DIR`` (``./var``). Stripe is the one default that is not
embedded: ``STRIPE_API_BASE`` unset means Stripe's own API.

Credentials (``repr=False``) never show in the object's repr. ``source(field)`` names the
variable a value was read from: the Dagster resources are wired with ``dg.EnvVar`` of that
name, so the UI and the instance see the name, never the value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

DEFAULT_VAR_DIR = "var"
DEFAULT_PARTITIONS_START = "2026-11-01"
DEFAULT_STRIPE_PORT = 12111
DEFAULT_PAYOUT_PORT = 12112
# Stripe's own API: the local sandbox (port above) is set explicitly (demo, `make dev`,
# tests), never a default, so a real key is never sent to a stand-in.
DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
DEFAULT_STRIPE_API_KEY = "sk_test_sandbox"
DEFAULT_PAYOUT_TOKEN = "payout_sandbox_token"
# Reconciliation tolerances (issue 3 documents them in full).
# One hour: the 02:00 UTC export of yesterday then sees every boundary counterpart.
DEFAULT_TIME_TOLERANCE_S = 3600
DEFAULT_AMOUNT_TOLERANCE_MINOR = 0
# How far in the future an entry may be dated (clock skew between writers), in seconds.
DEFAULT_ENTRY_FUTURE_SKEW_S = 3600
# How long a person's submitted entry waits for its second person, in seconds.
DEFAULT_JOURNAL_REVIEW_TTL_S = 86400
DEFAULT_EXPORT_CRON = "0 2 * * *"
DEFAULT_STUCK_PAYOUT_SLA_S = 4 * 3600
DEFAULT_BATCH_GRACE_S = 15 * 60
DEFAULT_S3_OBJECT_LOCK_MODE = "COMPLIANCE"
DEFAULT_S3_RETENTION_DAYS = 2555


class SettingsError(ValueError):
    """A variable holds a value the pipeline cannot use; the message names it and the fix."""


def default_payout_api_base() -> str:
    return f"http://127.0.0.1:{DEFAULT_PAYOUT_PORT}"


def sqlite_url(var_dir: Path | str) -> str:
    """The embedded default ledger: ``sqlite:///<var_dir>/ledger.sqlite3``."""
    return f"sqlite:///{Path(var_dir) / 'ledger.sqlite3'}"


def validate_chain_start(chain_start: str, partitions_start: str) -> str:
    """FP_CHAIN_START: the first day whose proof has no predecessor; not before the partitions."""
    try:
        day = date.fromisoformat(chain_start).isoformat()
    except ValueError:
        raise SettingsError(f"FP_CHAIN_START must be a day such as 2026-11-01, got {chain_start!r}") from None
    if day < date.fromisoformat(partitions_start).isoformat():
        raise SettingsError(f"FP_CHAIN_START {day} is before the first partition {partitions_start} "
                            "(FP_PARTITIONS_START): the chain must start on a day that has a partition")
    return day


def _var(name: str, default: Any = "", *, secret: bool = False, factory: Any = None) -> Any:
    """A field read from variable ``name`` (its metadata says which)."""
    extra = {"default_factory": factory} if factory is not None else {"default": default}
    return field(repr=not secret, metadata={"env": name}, **extra)


@dataclass(frozen=True)
class Settings:
    """Every setting of the pipeline, typed; ``Settings()`` is the embedded default.

    Paths that default under ``var_dir`` (the ledger, storage, published packages, tokens)
    follow ``var_dir`` when left empty.
    """

    # -- where things live
    var_dir: Path = _var("FP_VAR_DIR", Path(DEFAULT_VAR_DIR))
    database_url: str = _var("DATABASE_URL", secret=True)  # "" -> sqlite under var_dir
    storage_dir: Path | None = _var("FP_STORAGE_DIR", None)  # None -> var_dir/storage
    storage_s3_bucket: str = _var("FP_STORAGE_S3_BUCKET")
    publish_dir: Path | None = _var("FP_PUBLISH_DIR", None)  # None -> var_dir/published
    dagster_home: Path | None = _var("DAGSTER_HOME", None)  # None -> var_dir/dagster_home
    # -- days
    partitions_start: str = _var("FP_PARTITIONS_START", DEFAULT_PARTITIONS_START)
    chain_start: str = _var("FP_CHAIN_START")  # "" -> partitions_start
    entry_future_skew_s: int = _var("FP_ENTRY_FUTURE_SKEW_S", DEFAULT_ENTRY_FUTURE_SKEW_S)
    journal_review_ttl_s: int = _var("FP_JOURNAL_REVIEW_TTL_S", DEFAULT_JOURNAL_REVIEW_TTL_S)
    export_cron: str = _var("FP_EXPORT_CRON", DEFAULT_EXPORT_CRON)
    # -- Stripe
    stripe_api_key: str = _var("STRIPE_API_KEY", DEFAULT_STRIPE_API_KEY, secret=True)
    stripe_api_base: str = _var("STRIPE_API_BASE", DEFAULT_STRIPE_API_BASE)
    stripe_pull_concurrency: int = _var("STRIPE_PULL_CONCURRENCY", 4)
    stripe_pull_processes: int = _var("STRIPE_PULL_PROCESSES", 1)
    stripe_http_client: str = _var("STRIPE_HTTP_CLIENT", "requests")
    # -- the payout provider
    payout_api_base: str = _var("PAYOUT_API_BASE", factory=default_payout_api_base)
    payout_api_token: str = _var("PAYOUT_API_TOKEN", DEFAULT_PAYOUT_TOKEN, secret=True)
    payout_tiers: str = _var("FP_PAYOUT_TIERS")  # JSON text or a file's path; payouts.policy reads it
    payout_approval_ttl_s: int | None = _var("FP_PAYOUT_APPROVAL_TTL_S", None)  # None: the tiers' own
    # -- reconciliation
    recon_time_tolerance_s: int = _var("RECON_TIME_TOLERANCE_S", DEFAULT_TIME_TOLERANCE_S)
    recon_amount_tolerance_minor: int = _var("RECON_AMOUNT_TOLERANCE_MINOR", DEFAULT_AMOUNT_TOLERANCE_MINOR)
    recon_class_tolerance_minor: Mapping[str, Any] = _var("RECON_CLASS_TOLERANCE_MINOR", factory=dict)
    recon_blocking_classes: tuple[str, ...] = _var("RECON_BLOCKING_CLASSES", ())
    recon_max_allowed: Mapping[str, Any] = _var("RECON_MAX_ALLOWED", factory=dict)
    # -- signing (JSON texts: signing.config parses them and names their members)
    signing_keys_json: str = _var("FP_SIGNING_KEYS")
    signing_quorum_json: str = _var("FP_SIGNING_QUORUM")
    kms_key_id: str = _var("KMS_KEY_ID")
    kms_key_role: str = _var("KMS_KEY_ROLE")
    # -- publication
    s3_audit_bucket: str = _var("S3_AUDIT_BUCKET")
    s3_sse_kms_key_id: str = _var("S3_SSE_KMS_KEY_ID")  # "" -> KMS_KEY_ID (from_environ)
    s3_object_lock_mode: str = _var("S3_OBJECT_LOCK_MODE", DEFAULT_S3_OBJECT_LOCK_MODE)
    s3_retention_days: int = _var("S3_RETENTION_DAYS", DEFAULT_S3_RETENTION_DAYS)
    # -- AWS (boto3 reads its credentials itself)
    aws_endpoint_url: str = _var("AWS_ENDPOINT_URL")
    aws_endpoint_url_kms: str = _var("AWS_ENDPOINT_URL_KMS")
    aws_region: str = _var("AWS_REGION")
    aws_default_region: str = _var("AWS_DEFAULT_REGION")
    # -- on call
    alert_webhook_url: str = _var("FP_ALERT_WEBHOOK_URL", secret=True)
    stuck_payout_sla_s: int = _var("FP_STUCK_PAYOUT_SLA_S", DEFAULT_STUCK_PAYOUT_SLA_S)
    batch_grace_s: int = _var("FP_BATCH_GRACE_S", DEFAULT_BATCH_GRACE_S)
    # -- the Finance API
    api_tokens_file: Path | None = _var("FP_API_TOKENS_FILE", None)  # None -> var_dir/api_tokens.json
    api_token_pepper: str = _var("FP_API_TOKEN_PEPPER", secret=True)
    api_token: str = _var("FP_API_TOKEN", secret=True)  # the CLI's own token (journal post/review)
    # -- Arrow's own switch: pyarrow reads it; set, memory.use_lean_arrow_pool leaves it alone
    arrow_memory_pool: str = _var("ARROW_DEFAULT_MEMORY_POOL")
    # Which variable each field was read from (field name -> variable name).
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "var_dir", Path(self.var_dir))
        if not self.database_url:
            set_(self, "database_url", sqlite_url(self.var_dir))
        for name, under in (("storage_dir", "storage"), ("publish_dir", "published"),
                            ("api_tokens_file", "api_tokens.json")):
            value = getattr(self, name)
            set_(self, name, Path(value) if value else self.var_dir / under)
        if self.dagster_home is not None:
            set_(self, "dagster_home", Path(self.dagster_home))
        set_(self, "recon_class_tolerance_minor", MappingProxyType(dict(self.recon_class_tolerance_minor)))
        set_(self, "recon_max_allowed", MappingProxyType(dict(self.recon_max_allowed)))
        set_(self, "recon_blocking_classes", tuple(self.recon_blocking_classes))
        set_(self, "sources", MappingProxyType(dict(self.sources)))

    # -- derived
    @property
    def first_chain_day(self) -> str:
        """FP_CHAIN_START, else the first partition."""
        return self.chain_start or self.partitions_start

    @property
    def keys_dir(self) -> Path:
        """The embedded default's local signing keys (`finance-pipeline keys init`)."""
        return self.var_dir / "keys"

    @property
    def instance_home(self) -> Path:
        """``DAGSTER_HOME``, else the embedded default ``var_dir/dagster_home`` (absolute)."""
        return self.dagster_home or (self.var_dir / "dagster_home").resolve()

    def source(self, name: str) -> str | None:
        """The variable field ``name`` was read from; None for a default or a value given in code."""
        return self.sources.get(name)

    def replace(self, **changes: Any) -> Settings:
        """These settings with ``changes`` given in code (the demo's sandboxes, a command's
        flag): the changed fields no longer count as read from their variables."""
        sources = {k: v for k, v in self.sources.items() if k not in changes}
        return dataclasses.replace(self, **changes, sources=sources)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> the variable it is read from."""
        return {f.name: f.metadata["env"] for f in dataclasses.fields(cls) if "env" in f.metadata}

    # -- reading
    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read every variable of ``environ`` (``os.environ`` at the edge); unset or empty means
        the default. Raises SettingsError naming the variable for a value that cannot be used."""
        names = cls.variables()
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}

        def raw(field_name: str, variable: str | None = None) -> str:
            variable = variable or names[field_name]
            text = environ.get(variable) or ""
            if text:
                sources[field_name] = variable
            return text

        for f in dataclasses.fields(cls):
            if f.name in names and f.name not in _PARSED:
                text = raw(f.name)
                if text:
                    values[f.name] = text
        # S3_SSE_KMS_KEY_ID, else the signing key KMS_KEY_ID.
        if not values.get("s3_sse_kms_key_id") and environ.get("KMS_KEY_ID"):
            values["s3_sse_kms_key_id"] = raw("s3_sse_kms_key_id", "KMS_KEY_ID")
        for field_name, parse in _PARSED.items():
            text = raw(field_name)
            if text:
                values[field_name] = parse(names[field_name], text)
        return cls(**values, sources=sources)


# -- parsers: each names its variable in the error ------------------------------------------------

def _day(name: str, text: str) -> str:
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise SettingsError(f"{name} must be a day such as 2026-11-01, got {text!r}") from None


def _whole(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a whole number") from None


def _seconds(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a whole number of seconds") from None


def _future_skew(name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds such as 3600, got {text!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0, got {value}")
    return value


def _positive_seconds(example: int):
    def parse(name: str, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise SettingsError(f"{name} must be a positive number of seconds such as {example}, got {text!r}")
        return value
    return parse


def _approval_ttl(name: str, text: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) <= 0:
        raise SettingsError(f"{name}: must be a positive integer number of seconds, got {text!r}")
    return int(text)


def _json_object(name: str, text: str) -> dict:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a JSON object such as '{{\"FEE_MISMATCH\": 1}}': {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name} must be a JSON object such as '{{\"FEE_MISMATCH\": 1}}'")
    return value


def _comma_list(name: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _path(name: str, text: str) -> Path:
    return Path(text)


def _absolute_path(name: str, text: str) -> Path:
    # Dagster refuses a relative DAGSTER_HOME (its runs and `dagster dev` would each resolve it
    # from their own working directory): refuse it here too, for every command alike.
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"{name} must be an absolute path such as {Path.cwd() / text}, got {text!r}")
    return path


_PARSED = {
    "var_dir": _path,
    "storage_dir": _path,
    "publish_dir": _path,
    "dagster_home": _absolute_path,
    "api_tokens_file": _path,
    "partitions_start": _day,
    "chain_start": _day,  # and not before the first partition: validate_chain_start, where both are known
    "entry_future_skew_s": _future_skew,
    "journal_review_ttl_s": _positive_seconds(DEFAULT_JOURNAL_REVIEW_TTL_S),
    "payout_approval_ttl_s": _approval_ttl,
    "stripe_pull_concurrency": _whole,
    "stripe_pull_processes": _whole,
    "recon_time_tolerance_s": _seconds,
    "recon_amount_tolerance_minor": _whole,
    "recon_class_tolerance_minor": _json_object,
    "recon_blocking_classes": _comma_list,
    "recon_max_allowed": _json_object,
    "s3_retention_days": _whole,
    "stuck_payout_sla_s": _seconds,
    "batch_grace_s": _seconds,
}
