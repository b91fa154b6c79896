"""S3Publisher against a moto server over HTTP.

moto stores SSE-KMS headers without encrypting and does not enforce COMPLIANCE retention the
way S3 does, so these tests assert what WE SEND (the PutObject parameters and the headers on
the wire, recorded through botocore events on the real client) as well as what moto returns.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import datetime, timezone

import pytest

from finance_pipeline.proof.package import PROOF_FILE
from finance_pipeline.publication import (
    AlreadyPublishedError,
    PublicationError,
    S3Publisher,
    load_s3_package,
)
from finance_pipeline_tests.fixtures.aws import boto3_client

DAY = "2026-11-02"
NOW = datetime(2026, 11, 3, 2, 0, 5, 123456, tzinfo=timezone.utc)
RETAIN_UNTIL = datetime(2033, 11, 1, 2, 0, 5, tzinfo=timezone.utc)  # NOW + 2555 days, whole seconds


def package(tag: str = "a") -> dict[str, bytes]:
    return {"ledger_entries.jsonl": f'{{"e":"{tag}"}}\n'.encode(),
            "provider_records.jsonl": b"",
            "reconciliation_report.json": f'{{"r":"{tag}"}}'.encode(),
            PROOF_FILE: f'{{"statement":{{"proof_id":"{tag}"}}}}'.encode()}


class PutRecorder:
    """Records PutObject API parameters and the HTTP headers actually sent."""

    def __init__(self, client):
        self.params: list[dict] = []
        self.headers: list[dict] = []
        client.meta.events.register("provide-client-params.s3.PutObject", self._params)
        client.meta.events.register("before-send.s3.PutObject", self._send)

    def _params(self, params, **_):
        self.params.append(dict(params))

    def _send(self, request, **_):
        self.headers.append({k.lower(): (v.decode() if isinstance(v, bytes) else v)
                             for k, v in request.headers.items()})

    def keys(self) -> list[str]:
        return [p["Key"] for p in self.params]


@pytest.fixture
def recorder(s3_client):
    return PutRecorder(s3_client)


@pytest.fixture
def publisher(s3_client, audit_bucket, sse_kms_key):
    return S3Publisher(s3_client, audit_bucket, kms_key_id=sse_kms_key, clock=lambda: NOW)


def test_every_object_is_locked_encrypted_and_checksummed(publisher, recorder, s3_client,
                                                          audit_bucket, sse_kms_key):
    result = publisher.publish(DAY, "proof-a", package())
    assert result.created
    assert result.location == f"s3://{audit_bucket}/proofs/2026/11/02/proof-a/"

    files = package()
    prefix = "proofs/2026/11/02/"
    expected = {f"{prefix}proof-a/{n}": d for n, d in files.items()}
    assert sorted(recorder.keys()) == sorted(expected)
    for params, headers in zip(recorder.params, recorder.headers):
        body = expected[params["Key"]]
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        # What we send, as API parameters ...
        assert params["ObjectLockMode"] == "COMPLIANCE"
        assert params["ObjectLockRetainUntilDate"] == RETAIN_UNTIL
        assert params["ServerSideEncryption"] == "aws:kms"
        assert params["SSEKMSKeyId"] == sse_kms_key
        assert params["ChecksumAlgorithm"] == "SHA256"
        assert params["ChecksumSHA256"] == checksum
        assert params["IfNoneMatch"] == "*"
        assert params["ContentType"] in ("application/json", "application/x-ndjson")
        # ... and as headers on the wire.
        assert headers["x-amz-object-lock-mode"] == "COMPLIANCE"
        assert headers["x-amz-object-lock-retain-until-date"] == "2033-11-01T02:00:05Z"
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == sse_kms_key
        assert headers["x-amz-checksum-sha256"] == checksum
        assert headers["if-none-match"] == "*"
        # ... and what S3 (moto) reports for the stored object.
        head = s3_client.head_object(Bucket=audit_bucket, Key=params["Key"], ChecksumMode="ENABLED")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == RETAIN_UNTIL
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == sse_kms_key
        assert head["ChecksumSHA256"] == checksum
    assert publisher.read(result.location) == files
    assert load_s3_package(result.location, s3_client) == files
    assert publisher.existing_for_day(DAY) == ["proof-a"]


def test_statement_is_the_last_object_written(publisher, recorder):
    publisher.publish(DAY, "proof-a", package())
    assert recorder.keys()[-1] == "proofs/2026/11/02/proof-a/proof_package.json"
    # Nothing but the package: no claim object that retention would keep forever.
    assert all(k.startswith("proofs/2026/11/02/proof-a/") for k in recorder.keys())


def test_governance_mode_custom_retention_and_prefix(s3_client, audit_bucket, sse_kms_key, recorder):
    publisher = S3Publisher(s3_client, audit_bucket, kms_key_id=sse_kms_key, lock_mode="GOVERNANCE",
                            retention_days=30, prefix="audit/proofs", clock=lambda: NOW)
    result = publisher.publish(DAY, "proof-a", package())
    assert result.location == f"s3://{audit_bucket}/audit/proofs/2026/11/02/proof-a/"
    assert {p["ObjectLockMode"] for p in recorder.params} == {"GOVERNANCE"}
    assert {p["ObjectLockRetainUntilDate"] for p in recorder.params} == {
        datetime(2026, 12, 3, 2, 0, 5, tzinfo=timezone.utc)}


def test_identical_republish_sends_nothing(publisher, recorder):
    publisher.publish(DAY, "proof-a", package())
    sent = len(recorder.params)
    again = publisher.publish(DAY, "proof-a", package())
    assert not again.created and len(recorder.params) == sent


def test_same_proof_id_with_different_bytes_is_refused(publisher, recorder):
    publisher.publish(DAY, "proof-a", package())
    sent = len(recorder.params)
    changed = {**package(), "reconciliation_report.json": b'{"r":"tampered"}'}
    with pytest.raises(PublicationError, match="already exists with different content"):
        publisher.publish(DAY, "proof-a", changed)
    assert len(recorder.params) == sent
    assert publisher.read(publisher.location(DAY, "proof-a")) == package()


def test_different_proof_for_a_published_day_is_refused(publisher, recorder):
    publisher.publish(DAY, "proof-a", package("a"))
    sent = len(recorder.params)
    with pytest.raises(AlreadyPublishedError, match=r"^ledger changed since proof proof-a was published"):
        publisher.publish(DAY, "proof-b", package("b"))
    assert len(recorder.params) == sent
    assert publisher.existing_for_day(DAY) == ["proof-a"]


def test_racing_writer_is_caught_by_the_conditional_write(publisher, s3_client, audit_bucket):
    """Another writer creates the key between our existence check and our PutObject."""
    rival = boto3_client("s3", s3_client.meta.endpoint_url)
    key = "proofs/2026/11/02/proof-a/ledger_entries.jsonl"

    def race(params, **_):
        if params["Key"] == key:
            rival.put_object(Bucket=audit_bucket, Key=key, Body=b"rival bytes\n",
                             ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=RETAIN_UNTIL,
                             ChecksumAlgorithm="SHA256")

    statuses = []
    s3_client.meta.events.register("provide-client-params.s3.PutObject", race)
    s3_client.meta.events.register(
        "after-call.s3.PutObject",
        lambda http_response, **_: statuses.append(http_response.status_code))
    with pytest.raises(PublicationError, match="ledger_entries.jsonl already exists with different"):
        publisher.publish(DAY, "proof-a", package())
    s3_client.meta.events.unregister("provide-client-params.s3.PutObject", race)
    assert statuses == [412]  # If-None-Match: * refused the second create
    # The rival's object was not overwritten, and no statement was written.
    body = s3_client.get_object(Bucket=audit_bucket, Key=key)["Body"].read()
    assert body == b"rival bytes\n"
    assert publisher.existing_for_day(DAY) == []


def test_bucket_without_object_lock_is_refused(s3_client, sse_kms_key, recorder):
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    publisher = S3Publisher(s3_client, bucket, kms_key_id=sse_kms_key)
    with pytest.raises(PublicationError, match="does not have Object Lock enabled.*object-lock-enabled"):
        publisher.publish(DAY, "proof-a", package())
    assert recorder.params == []


def test_missing_bucket_is_diagnosed(s3_client, sse_kms_key):
    publisher = S3Publisher(s3_client, f"missing-{uuid.uuid4().hex[:12]}", kms_key_id=sse_kms_key)
    with pytest.raises(PublicationError, match="does not exist"):
        publisher.publish(DAY, "proof-a", package())


def test_incomplete_package_is_not_read_and_resumes(publisher, s3_client, audit_bucket):
    prefix = "proofs/2026/11/02/proof-a/"
    for name, data in package().items():  # a crash before the statement
        if name != PROOF_FILE:
            s3_client.put_object(Bucket=audit_bucket, Key=prefix + name, Body=data,
                                 ChecksumAlgorithm="SHA256")
    location = f"s3://{audit_bucket}/{prefix}"
    assert publisher.existing_for_day(DAY) == []
    with pytest.raises(PublicationError, match="no proof_package.json.*interrupted"):
        load_s3_package(location, s3_client)
    with pytest.raises(PublicationError, match="no package at"):
        load_s3_package(f"s3://{audit_bucket}/proofs/2026/11/02/other/", s3_client)
    assert publisher.publish(DAY, "proof-a", package()).created
    assert publisher.read(location) == package()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"lock_mode": "LEGAL_HOLD"}, "lock_mode"),
    ({"retention_days": 0}, "retention_days"),
    ({"kms_key_id": ""}, "kms_key_id is required"),
])
def test_bad_settings_are_refused(s3_client, kwargs, message):
    with pytest.raises(PublicationError, match=message):
        S3Publisher(s3_client, "bucket", **{"kms_key_id": "k", **kwargs})


def test_bad_uri_is_refused(s3_client):
    with pytest.raises(PublicationError, match="is not an s3://bucket/prefix/ URI"):
        load_s3_package("/tmp/x", s3_client)


def test_keys_beside_an_s3_package_reach_the_verifier_as_foreign_files(publisher, s3_client, audit_bucket,
                                                                       sse_kms_key):
    """A file added under the package prefix, nested or oddly named, is not dropped on loading:
    the verifier must see it to refuse it (proof-package.md: no other file is part of it)."""
    from finance_pipeline.proof.package import Package
    from finance_pipeline.proof.verify import verify_package
    from finance_pipeline_tests.proof.helpers import build, keyring

    pkg = build()
    result = publisher.publish(DAY, "proof-x", pkg.files())
    prefix = result.location.split(f"s3://{audit_bucket}/", 1)[1]
    loaded = Package.from_files(load_s3_package(result.location, s3_client))
    assert verify_package(loaded, keyring()).ok
    for key in ("sub/notes.txt", "NOTICE.txt", "odd name.txt"):
        s3_client.put_object(Bucket=audit_bucket, Key=prefix + key, Body=b"unsigned",
                             ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime(2030, 1, 1),
                             ServerSideEncryption="aws:kms", SSEKMSKeyId=sse_kms_key)
    loaded = Package.from_files(load_s3_package(result.location, s3_client))
    verdict = verify_package(loaded, keyring())
    assert verdict.failed == ["package.files"]
    detail = verdict.check("package.files").detail
    assert all(name in detail for name in ("sub/notes.txt", "NOTICE.txt", "odd name.txt"))
