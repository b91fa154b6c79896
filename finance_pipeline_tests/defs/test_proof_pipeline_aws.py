"""The proof step against AWS-shaped services: KMS keys and an Object Lock bucket on moto's
server, spoken to over HTTP through the same environment variables production uses."""

import json

import dagster as dg
import pytest

from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.export import registry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.proof.keyring import Keyring, KeyringKey, QuorumPolicy
from finance_pipeline.proof.package import Package
from finance_pipeline.proof.verify import verify_package
from finance_pipeline.publication import load_s3_package
from finance_pipeline_tests.fixtures.aws import DUMMY_CREDENTIALS


@pytest.fixture
def aws_env(clean_world, monkeypatch, moto_server, kms_keys, sse_kms_key, audit_bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("FP_SIGNING_KEYS", json.dumps([
        {"key_id": kms_keys[0]["Arn"], "role": "finance-lead", "source": "kms"},
        {"key_id": kms_keys[1]["Arn"], "role": "security-engineer", "source": "kms"},
    ]))
    monkeypatch.setenv("FP_SIGNING_QUORUM", json.dumps({"min_signatures": 2, "distinct_roles": True}))
    monkeypatch.setenv("S3_AUDIT_BUCKET", audit_bucket)
    monkeypatch.setenv("S3_SSE_KMS_KEY_ID", sse_kms_key)
    return clean_world


def _keyring(kms_client, kms_keys) -> Keyring:
    from cryptography.hazmat.primitives import serialization

    keys = []
    for meta, role in zip(kms_keys, ("finance-lead", "security-engineer")):
        der = kms_client.get_public_key(KeyId=meta["Arn"])["PublicKey"]
        pem = serialization.load_der_public_key(der).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        keys.append(KeyringKey(key_id=meta["Arn"], role=role, public_key_pem=pem))
    return Keyring(keys=keys, quorum=QuorumPolicy(min_signatures=2, distinct_roles=True))


def test_kms_quorum_signed_package_lands_in_s3_under_object_lock(aws_env, s3_client, kms_client, kms_keys,
                                                                 audit_bucket, sse_kms_key):
    inst = dg.DagsterInstance.ephemeral()
    run = materialize_day(aws_env.definitions(), "2026-11-01", inst)
    assert not run.failed, run.errors
    meta = run.metadata["proof_package"]
    assert meta["location"].startswith(f"s3://{audit_bucket}/proofs/2026/11/01/{meta['proofId']}/")

    files = load_s3_package(meta["location"], s3_client)
    result = verify_package(Package.from_files(files), _keyring(kms_client, kms_keys))
    assert result.ok, result.text()
    sigs = json.loads(files["proof_package.json"])["signatures"]
    assert sorted(s["role"] for s in sigs) == ["finance-lead", "security-engineer"]

    listed = s3_client.list_objects_v2(Bucket=audit_bucket, Prefix="proofs/2026/11/01/")["Contents"]
    data_keys = [o["Key"] for o in listed]
    assert {k.rsplit("/", 1)[1] for k in data_keys} >= {
        "ledger_entries.jsonl", "provider_records.jsonl", "reconciliation_report.json", "proof_package.json"}
    for key in [o["Key"] for o in listed]:
        head = s3_client.head_object(Bucket=audit_bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"].endswith(sse_kms_key.rsplit("/", 1)[-1])
        assert head.get("ChecksumSHA256")

    again = materialize_day(aws_env.definitions(), "2026-11-01", inst)
    assert again.metadata["proof_package"]["created"] is False
    assert len(s3_client.list_objects_v2(Bucket=audit_bucket, Prefix="proofs/2026/11/01/")["Contents"]) == len(listed)


def test_signing_failure_fails_the_run_with_a_diagnosis_and_publishes_nothing(
        aws_env, monkeypatch, s3_client, kms_keys, audit_bucket):
    monkeypatch.setenv("FP_SIGNING_KEYS", json.dumps([
        {"key_id": kms_keys[0]["Arn"], "role": "finance-lead", "source": "kms"},
        {"key_id": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
         "role": "security-engineer", "source": "kms"},
    ]))
    inst = dg.DagsterInstance.ephemeral()
    run = materialize_day(aws_env.definitions(), "2026-11-01", inst)
    assert run.failed == ["proof_package"]
    assert "00000000-0000-0000-0000-000000000000" in run.errors["proof_package"]
    assert s3_client.list_objects_v2(Bucket=audit_bucket, Prefix="proofs/").get("KeyCount", 0) == 0
    engine = create_ledger_engine(aws_env.database_url)
    assert registry.published_for_day(engine, "2026-11-01") == []

    # After the fix (the right key configured), re-running the partition signs and publishes.
    monkeypatch.setenv("FP_SIGNING_KEYS", json.dumps([
        {"key_id": kms_keys[0]["Arn"], "role": "finance-lead", "source": "kms"},
        {"key_id": kms_keys[1]["Arn"], "role": "security-engineer", "source": "kms"},
    ]))
    run = materialize_day(aws_env.definitions(), "2026-11-01", inst)
    assert not run.failed and run.metadata["proof_package"]["created"]


def test_verify_cli_reads_s3_and_trusts_only_the_named_kms_keys(aws_env, s3_client, kms_keys, audit_bucket):
    from click.testing import CliRunner

    from finance_pipeline.cli import main

    run = materialize_day(aws_env.definitions(), "2026-11-01", dg.DagsterInstance.ephemeral())
    location = run.metadata["proof_package"]["location"]
    kms = ["--kms", f"{kms_keys[0]['Arn']}=finance-lead", "--kms", f"{kms_keys[1]['Arn']}=security-engineer"]
    ok = CliRunner().invoke(main, ["verify", location, *kms])
    assert ok.exit_code == 0, ok.output
    # One KMS key alone cannot reach a quorum of two distinct roles.
    alone = CliRunner().invoke(main, ["verify", location, *kms[:2], "--min-signatures", "2"])
    assert alone.exit_code in (1, 2)
    # Object Lock keeps every version, but a new version under the same key is what a reader
    # fetches: the verifier must catch it.
    key = location.split(f"s3://{audit_bucket}/", 1)[1] + "ledger_entries.jsonl"
    body = s3_client.get_object(Bucket=audit_bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=audit_bucket, Key=key, Body=body.replace(b'"memo":"', b'"memo":"X', 1))
    bad = CliRunner().invoke(main, ["verify", location, *kms])
    assert bad.exit_code == 1
    assert "ledger.file_sha256" in bad.output
