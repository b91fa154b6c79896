"""Settings.from_environ: the one reader of the configuration (finance_pipeline/settings.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finance_pipeline.settings import Settings, SettingsError, validate_chain_start


def test_an_empty_environment_is_the_embedded_default():
    s = Settings.from_environ({})
    assert s == Settings()
    assert s.sources == {}
    assert s.var_dir == Path("var")
    assert s.database_url == "sqlite:///var/ledger.sqlite3"
    assert s.storage_dir == Path("var/storage")
    assert s.publish_dir == Path("var/published")
    assert s.api_tokens_file == Path("var/api_tokens.json")
    assert s.keys_dir == Path("var/keys")
    assert s.dagster_home is None and s.instance_home == (Path("var") / "dagster_home").resolve()
    assert (s.partitions_start, s.chain_start, s.first_chain_day) == ("2026-11-01", "", "2026-11-01")
    assert (s.entry_future_skew_s, s.journal_review_ttl_s) == (3600, 86400)
    assert s.export_cron == "0 2 * * *"
    assert (s.stripe_api_key, s.stripe_api_base) == ("sk_test_sandbox", "https://api.stripe.com")
    assert (s.stripe_pull_concurrency, s.stripe_pull_processes, s.stripe_http_client) == (4, 1, "requests")
    assert (s.payout_api_base, s.payout_api_token) == ("http://127.0.0.1:12112", "payout_sandbox_token")
    assert (s.payout_tiers, s.payout_approval_ttl_s) == ("", None)
    assert (s.recon_time_tolerance_s, s.recon_amount_tolerance_minor) == (3600, 0)
    assert (dict(s.recon_class_tolerance_minor), s.recon_blocking_classes, dict(s.recon_max_allowed)) == ({}, (), {})
    assert (s.s3_audit_bucket, s.s3_sse_kms_key_id, s.s3_object_lock_mode, s.s3_retention_days) == (
        "", "", "COMPLIANCE", 2555)
    assert (s.stuck_payout_sla_s, s.batch_grace_s) == (14400, 900)
    assert s.arrow_memory_pool == ""


def test_empty_variables_mean_unset():
    assert Settings.from_environ({name: "" for name in Settings.variables().values()}) == Settings()


# One value per variable, and what the field holds then.
VALUES = {
    "FP_VAR_DIR": ("/srv/fp", "var_dir", Path("/srv/fp")),
    "DATABASE_URL": ("postgresql://fp@db/ledger", "database_url", "postgresql://fp@db/ledger"),
    "FP_STORAGE_DIR": ("/data/storage", "storage_dir", Path("/data/storage")),
    "FP_STORAGE_S3_BUCKET": ("fp-storage", "storage_s3_bucket", "fp-storage"),
    "FP_PUBLISH_DIR": ("/data/published", "publish_dir", Path("/data/published")),
    "DAGSTER_HOME": ("/srv/dagster", "dagster_home", Path("/srv/dagster")),
    "FP_PARTITIONS_START": ("2026-10-15", "partitions_start", "2026-10-15"),
    "FP_CHAIN_START": ("2026-11-05", "chain_start", "2026-11-05"),
    "FP_ENTRY_FUTURE_SKEW_S": ("0", "entry_future_skew_s", 0),
    "FP_JOURNAL_REVIEW_TTL_S": ("600", "journal_review_ttl_s", 600),
    "FP_EXPORT_CRON": ("30 3 * * *", "export_cron", "30 3 * * *"),
    "STRIPE_API_KEY": ("rk_live_x", "stripe_api_key", "rk_live_x"),
    "STRIPE_API_BASE": ("http://127.0.0.1:12111", "stripe_api_base", "http://127.0.0.1:12111"),
    "STRIPE_PULL_CONCURRENCY": ("8", "stripe_pull_concurrency", 8),
    "STRIPE_PULL_PROCESSES": ("2", "stripe_pull_processes", 2),
    "STRIPE_HTTP_CLIENT": ("pycurl", "stripe_http_client", "pycurl"),
    "PAYOUT_API_BASE": ("https://payouts.example", "payout_api_base", "https://payouts.example"),
    "PAYOUT_API_TOKEN": ("tok", "payout_api_token", "tok"),
    "FP_PAYOUT_TIERS": ("/etc/fp/tiers.json", "payout_tiers", "/etc/fp/tiers.json"),
    "FP_PAYOUT_APPROVAL_TTL_S": ("60", "payout_approval_ttl_s", 60),
    "RECON_TIME_TOLERANCE_S": ("7200", "recon_time_tolerance_s", 7200),
    "RECON_AMOUNT_TOLERANCE_MINOR": ("2", "recon_amount_tolerance_minor", 2),
    "RECON_CLASS_TOLERANCE_MINOR": ('{"FEE_MISMATCH": 1}', "recon_class_tolerance_minor", {"FEE_MISMATCH": 1}),
    "RECON_BLOCKING_CLASSES": ("LEDGER_MISSING, PROVIDER_MISSING", "recon_blocking_classes",
                               ("LEDGER_MISSING", "PROVIDER_MISSING")),
    "RECON_MAX_ALLOWED": ('{"LEDGER_MISSING": 2}', "recon_max_allowed", {"LEDGER_MISSING": 2}),
    "FP_SIGNING_KEYS": ('[{"key_id": "k", "role": "r"}]', "signing_keys_json", '[{"key_id": "k", "role": "r"}]'),
    "FP_SIGNING_QUORUM": ('{"min_signatures": 1}', "signing_quorum_json", '{"min_signatures": 1}'),
    "KMS_KEY_ID": ("alias/proofs", "kms_key_id", "alias/proofs"),
    "KMS_KEY_ROLE": ("controller", "kms_key_role", "controller"),
    "S3_AUDIT_BUCKET": ("audit", "s3_audit_bucket", "audit"),
    "S3_SSE_KMS_KEY_ID": ("alias/sse", "s3_sse_kms_key_id", "alias/sse"),
    "S3_OBJECT_LOCK_MODE": ("GOVERNANCE", "s3_object_lock_mode", "GOVERNANCE"),
    "S3_RETENTION_DAYS": ("30", "s3_retention_days", 30),
    "AWS_ENDPOINT_URL": ("http://moto:5000", "aws_endpoint_url", "http://moto:5000"),
    "AWS_ENDPOINT_URL_KMS": ("http://kms:5000", "aws_endpoint_url_kms", "http://kms:5000"),
    "AWS_REGION": ("eu-west-1", "aws_region", "eu-west-1"),
    "AWS_DEFAULT_REGION": ("eu-central-1", "aws_default_region", "eu-central-1"),
    "FP_ALERT_WEBHOOK_URL": ("https://hooks.example/x", "alert_webhook_url", "https://hooks.example/x"),
    "FP_STUCK_PAYOUT_SLA_S": ("60", "stuck_payout_sla_s", 60),
    "FP_BATCH_GRACE_S": ("30", "batch_grace_s", 30),
    "FP_API_TOKENS_FILE": ("/etc/fp/tokens.json", "api_tokens_file", Path("/etc/fp/tokens.json")),
    "FP_API_TOKEN_PEPPER": ("pepper", "api_token_pepper", "pepper"),
    "FP_API_TOKEN": ("fpt_x", "api_token", "fpt_x"),
    "ARROW_DEFAULT_MEMORY_POOL": ("system", "arrow_memory_pool", "system"),
}


def test_every_variable_is_covered_here():
    assert set(VALUES) == set(Settings.variables().values())


@pytest.mark.parametrize("variable", sorted(VALUES))
def test_each_variable_sets_its_field_and_is_named_as_its_source(variable):
    text, name, expected = VALUES[variable]
    s = Settings.from_environ({variable: text})
    value = getattr(s, name)
    assert (dict(value) if name in ("recon_class_tolerance_minor", "recon_max_allowed") else value) == expected
    assert s.source(name) == variable
    # Nothing else moves, but what follows from it (the var_dir's files, KMS_KEY_ID's SSE key).
    follows = {"FP_VAR_DIR": {"database_url", "storage_dir", "publish_dir", "api_tokens_file"},
               "KMS_KEY_ID": {"s3_sse_kms_key_id"}}.get(variable, set())
    changed = {f for f in Settings.variables() if getattr(s, f) != getattr(Settings(), f)}
    assert changed == {name} | follows


def test_paths_under_the_var_dir_follow_it_unless_set():
    s = Settings.from_environ({"FP_VAR_DIR": "/srv/fp", "FP_STORAGE_DIR": "/data/storage"})
    assert s.database_url == "sqlite:////srv/fp/ledger.sqlite3"
    assert (s.storage_dir, s.publish_dir) == (Path("/data/storage"), Path("/srv/fp/published"))
    assert s.keys_dir == Path("/srv/fp/keys") and s.instance_home == Path("/srv/fp/dagster_home")
    assert s.source("database_url") is None


def test_the_sse_key_falls_back_to_the_signing_key_and_says_so():
    s = Settings.from_environ({"KMS_KEY_ID": "alias/proofs"})
    assert s.s3_sse_kms_key_id == "alias/proofs" and s.source("s3_sse_kms_key_id") == "KMS_KEY_ID"
    s = Settings.from_environ({"KMS_KEY_ID": "alias/proofs", "S3_SSE_KMS_KEY_ID": "alias/sse"})
    assert s.s3_sse_kms_key_id == "alias/sse" and s.source("s3_sse_kms_key_id") == "S3_SSE_KMS_KEY_ID"


def test_values_given_in_code_are_no_longer_the_variables():
    s = Settings.from_environ({"STRIPE_API_BASE": "http://127.0.0.1:1", "DATABASE_URL": "sqlite:///x"})
    moved = s.replace(stripe_api_base="http://127.0.0.1:2")
    assert moved.stripe_api_base == "http://127.0.0.1:2" and moved.source("stripe_api_base") is None
    assert moved.source("database_url") == "DATABASE_URL"


def test_credentials_stay_out_of_the_repr():
    secrets = {"DATABASE_URL": "postgresql://fp:SECRETpw@db/ledger", "STRIPE_API_KEY": "sk_live_SECRET",
               "PAYOUT_API_TOKEN": "SECRET-token", "FP_API_TOKEN_PEPPER": "SECRET-pepper",
               "FP_API_TOKEN": "fpt_SECRET", "FP_ALERT_WEBHOOK_URL": "https://hooks.example/SECRET"}
    s = Settings.from_environ(secrets)
    assert "SECRET" not in repr(s)
    assert s.stripe_api_key == "sk_live_SECRET"


@pytest.mark.parametrize(("variable", "text", "says"), [
    ("FP_PARTITIONS_START", "01/11/2026", "FP_PARTITIONS_START must be a day such as 2026-11-01, got '01/11/2026'"),
    ("FP_CHAIN_START", "1/11/2026", "FP_CHAIN_START must be a day such as 2026-11-01"),
    ("FP_ENTRY_FUTURE_SKEW_S", "soon", "FP_ENTRY_FUTURE_SKEW_S must be a number of seconds such as 3600, got 'soon'"),
    ("FP_ENTRY_FUTURE_SKEW_S", "-1", "FP_ENTRY_FUTURE_SKEW_S must be >= 0, got -1"),
    ("FP_JOURNAL_REVIEW_TTL_S", "0", "FP_JOURNAL_REVIEW_TTL_S must be a positive number of seconds such as 86400"),
    ("FP_JOURNAL_REVIEW_TTL_S", "a day", "FP_JOURNAL_REVIEW_TTL_S must be a positive number of seconds"),
    ("FP_PAYOUT_APPROVAL_TTL_S", "1.5", "FP_PAYOUT_APPROVAL_TTL_S: must be a positive integer number of seconds"),
    ("FP_STUCK_PAYOUT_SLA_S", "4h", "FP_STUCK_PAYOUT_SLA_S='4h' is not a whole number of seconds"),
    ("FP_BATCH_GRACE_S", "soon", "FP_BATCH_GRACE_S='soon' is not a whole number of seconds"),
    ("RECON_TIME_TOLERANCE_S", "1h", "RECON_TIME_TOLERANCE_S='1h' is not a whole number of seconds"),
    ("RECON_AMOUNT_TOLERANCE_MINOR", "0.5", "RECON_AMOUNT_TOLERANCE_MINOR='0.5' is not a whole number"),
    ("STRIPE_PULL_CONCURRENCY", "many", "STRIPE_PULL_CONCURRENCY='many' is not a whole number"),
    ("STRIPE_PULL_PROCESSES", "2.0", "STRIPE_PULL_PROCESSES='2.0' is not a whole number"),
    ("S3_RETENTION_DAYS", "7y", "S3_RETENTION_DAYS='7y' is not a whole number"),
    ("RECON_MAX_ALLOWED", "[1]", "RECON_MAX_ALLOWED must be a JSON object"),
    ("RECON_CLASS_TOLERANCE_MINOR", "{", "RECON_CLASS_TOLERANCE_MINOR must be a JSON object"),
    ("DAGSTER_HOME", "var/dagster_home", "DAGSTER_HOME must be an absolute path such as /"),
])
def test_a_bad_value_is_refused_naming_the_variable(variable, text, says):
    with pytest.raises(SettingsError) as exc:
        Settings.from_environ({variable: text})
    assert says in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_the_chain_starts_no_earlier_than_the_partitions():
    assert validate_chain_start("2026-11-02", "2026-11-01") == "2026-11-02"
    with pytest.raises(SettingsError, match="FP_CHAIN_START 2026-10-31 is before the first partition 2026-11-01"):
        validate_chain_start("2026-10-31", "2026-11-01")


def test_reading_is_pure():
    env = {"DATABASE_URL": "sqlite:///x"}
    assert Settings.from_environ(env) == Settings.from_environ(env)
    assert env == {"DATABASE_URL": "sqlite:///x"}
