"""Publish proof packages to S3 with Object Lock (WORM) and SSE-KMS.

Every object is written with:
- `ObjectLockMode` (COMPLIANCE by default: nobody, root included, can delete or shorten it) and
  `ObjectLockRetainUntilDate` = now + retention (default 2555 days, about 7 years);
- `ServerSideEncryption=aws:kms` with the given `SSEKMSKeyId`;
- `ChecksumAlgorithm=SHA256` plus our own `ChecksumSHA256`, so S3 rejects a corrupted upload
  (and Object Lock uploads require an integrity checksum anyway);
- `IfNoneMatch="*"`: a create-only conditional write, so a racing writer gets 412 instead of
  silently adding a version.

Permissions the publisher needs: s3:GetBucketObjectLockConfiguration, s3:ListBucket,
s3:GetObject, s3:PutObject, s3:PutObjectRetention on the bucket/prefix, and
kms:GenerateDataKey + kms:Decrypt on the SSE key. See publication/base.py for the layout,
the write order (`proof_package.json` last).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlparse

from finance_pipeline.publication.base import (
    DEFAULT_PREFIX,
    PROOF_FILE,
    AlreadyPublishedError,
    PublicationError,
    PublishResult,
    check_package,
    day_path,
    ordered_names,
    same_statement,
)
from finance_pipeline.settings import DEFAULT_S3_OBJECT_LOCK_MODE, DEFAULT_S3_RETENTION_DAYS

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
_CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson"}


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client at ``endpoint_url`` in ``region`` (AWS_ENDPOINT_URL, AWS_REGION from
    the settings); boto3's own chain decides what is left out."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)


def content_type(name: str) -> str:
    for suffix, value in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return value
    return "application/octet-stream"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def diagnose_s3_error(exc: BaseException, action: str, bucket: str, key: str = "",
                      kms_key_id: str | None = None) -> str:
    """A sentence naming what failed on S3 and how to fix it."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    where = f"s3://{bucket}/{key}"
    if isinstance(exc, EndpointConnectionError):
        return (f"S3 endpoint unreachable for {action} on {where} ({exc}): check network access and "
                "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS_REGION")
    if isinstance(exc, NoCredentialsError):
        return (f"no AWS credentials for S3 {action}: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached")
    if not isinstance(exc, ClientError):
        return f"S3 {action} on {where} failed: {type(exc).__name__}: {exc}"
    code = _error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    permission = {"PutObject": "s3:PutObject (and s3:PutObjectRetention)",
                  "GetObject": "s3:GetObject", "ListObjectsV2": "s3:ListBucket",
                  "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration"}.get(action,
                                                                                          action)
    if code in ("NoSuchBucket",):
        return f"bucket {bucket} does not exist: create it with Object Lock enabled or fix the name"
    if code.startswith("KMS."):
        return (f"S3 could not use SSE-KMS key {kms_key_id} for {where} ({code}: {message}): the "
                "publisher needs kms:GenerateDataKey and kms:Decrypt on that key and the key must "
                "be enabled, in the bucket's region")
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return (f"the publisher lacks {permission} on {where} ({message or code}): grant it in the "
                f"IAM/bucket policy; SSE-KMS also needs kms:GenerateDataKey on {kms_key_id}")
    if code == "InvalidRequest" and "Object Lock" in message:
        return (f"S3 refused the Object Lock parameters for {where} ({message}): the bucket must "
                "have Object Lock enabled")
    return f"S3 {action} on {where} failed: {code}: {message}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> (bucket, `some/prefix/`)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise PublicationError(f"{uri!r} is not an s3://bucket/prefix/ URI")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return parsed.netloc, prefix


def _list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except (BotoCoreError, ClientError) as exc:
        raise PublicationError(diagnose_s3_error(exc, "ListObjectsV2", bucket, prefix)) from exc
    return keys


def _get(client: Any, bucket: str, key: str) -> bytes | None:
    """Object bytes (checksum validated by botocore when S3 stored one), or None if absent."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        return response["Body"].read()
    except ClientError as exc:
        if _error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise PublicationError(diagnose_s3_error(exc, "GetObject", bucket, key)) from exc
    except BotoCoreError as exc:
        raise PublicationError(diagnose_s3_error(exc, "GetObject", bucket, key)) from exc


def load_s3_package(uri: str, client: Any) -> dict[str, bytes]:
    """All files of the complete package at `s3://bucket/.../<proof_id>/` (for the verifier)."""
    bucket, prefix = parse_s3_uri(uri)
    if not prefix:
        raise PublicationError(f"{uri} names a whole bucket; give the package prefix "
                               "s3://bucket/proofs/YYYY/MM/DD/<proof_id>/")
    names = [k[len(prefix):] for k in _list_keys(client, bucket, prefix)]
    # Nested keys are kept (as names with '/'): not part of any package, the verifier must see
    # them to refuse them, not have them dropped here.
    names = [n for n in names if n]
    if not names:
        raise PublicationError(f"no package at {uri}: check the bucket, day and proof id")
    if PROOF_FILE not in names:
        raise PublicationError(f"{uri} has no {PROOF_FILE}: the publication was interrupted and "
                               "the package is incomplete; re-run the export for that day")
    files = {}
    for name in sorted(names):
        data = _get(client, bucket, prefix + name)
        if data is None:
            raise PublicationError(f"s3://{bucket}/{prefix}{name} disappeared while reading")
        files[name] = data
    return files


class S3Publisher:
    """Write-once publisher to an Object Lock bucket: `s3://<bucket>/<prefix>/YYYY/MM/DD/<proof_id>/`."""

    def __init__(self, client: Any, bucket: str, *, kms_key_id: str, lock_mode: str = DEFAULT_S3_OBJECT_LOCK_MODE,
                 retention_days: int = DEFAULT_S3_RETENTION_DAYS, prefix: str = DEFAULT_PREFIX,
                 clock: Callable[[], datetime] | None = None):
        if lock_mode not in LOCK_MODES:
            raise PublicationError(f"lock_mode {lock_mode!r} is not one of {LOCK_MODES}")
        if not isinstance(retention_days, int) or isinstance(retention_days, bool) or retention_days < 1:
            raise PublicationError(f"retention_days must be a positive integer, got {retention_days!r}")
        if not kms_key_id:
            raise PublicationError("kms_key_id is required: proofs are stored with SSE-KMS")
        self.client = client
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.lock_mode = lock_mode
        self.retention_days = retention_days
        self.prefix = prefix.strip("/")
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock_checked = False

    def _day_prefix(self, day: str) -> str:
        return f"{self.prefix}/{day_path(day)}/" if self.prefix else f"{day_path(day)}/"

    def location(self, day: str, proof_id: str) -> str:
        return f"s3://{self.bucket}/{self._day_prefix(day)}{proof_id}/"

    def read(self, location: str) -> dict[str, bytes]:
        return load_s3_package(location, self.client)

    def existing_for_day(self, day: str) -> list[str]:
        prefix = self._day_prefix(day)
        found = set()
        for key in _list_keys(self.client, self.bucket, prefix):
            parts = key[len(prefix):].split("/")
            if len(parts) == 2 and parts[1] == PROOF_FILE:
                found.add(parts[0])
        return sorted(found)

    def ensure_object_lock(self) -> None:
        """Refuse to publish into a bucket without Object Lock: the proofs would be deletable."""
        if self._lock_checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) == "ObjectLockConfigurationNotFoundError":
                config = {}
            else:
                raise PublicationError(diagnose_s3_error(exc, "GetObjectLockConfiguration",
                                                         self.bucket)) from exc
        except BotoCoreError as exc:
            raise PublicationError(diagnose_s3_error(exc, "GetObjectLockConfiguration",
                                                     self.bucket)) from exc
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise PublicationError(
                f"bucket {self.bucket} does not have Object Lock enabled, so published proofs could "
                "be deleted or overwritten: create the bucket with `--object-lock-enabled-for-bucket` "
                "(or enable versioning and `aws s3api put-object-lock-configuration` on it), or "
                "publish to a bucket that has it")
        self._lock_checked = True

    def publish(self, day: str, proof_id: str, files: dict[str, bytes]) -> PublishResult:
        check_package(proof_id, files)
        day_prefix = self._day_prefix(day)
        self.ensure_object_lock()
        others = [p for p in self.existing_for_day(day) if p != proof_id]
        if others:
            raise AlreadyPublishedError(day, others[0], proof_id, self.location(day, others[0]))
        # One retain-until for the whole package, whole seconds (S3 stores seconds).
        retain_until = (self.clock().astimezone(timezone.utc)
                        + timedelta(days=self.retention_days)).replace(microsecond=0)
        created = False
        for name in ordered_names(files):
            # Another writer of this very proof completed it first: its statement is ours.
            accept = same_statement if name == PROOF_FILE else None
            created = self._put_once(f"{day_prefix}{proof_id}/{name}", bytes(files[name]),
                                     retain_until, accept=accept)
        return PublishResult(location=self.location(day, proof_id), created=created)

    def put_params(self, key: str, body: bytes, retain_until: datetime) -> dict[str, Any]:
        """The exact PutObject parameters of one package file (tests assert on these)."""
        return {
            "Bucket": self.bucket, "Key": key, "Body": body,
            "ContentType": content_type(key),
            "ObjectLockMode": self.lock_mode,
            "ObjectLockRetainUntilDate": retain_until,
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self.kms_key_id,
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": sha256_b64(body),
            "IfNoneMatch": "*",  # create-only: never a second version of a published key
        }

    def _put_once(self, key: str, body: bytes, retain_until: datetime, accept=None) -> bool:
        """Create `key` with `body`; False if it already holds exactly that."""
        from botocore.exceptions import BotoCoreError, ClientError

        existing = _get(self.client, self.bucket, key)
        if existing is not None:
            return self._same_or_fail(key, existing, body, accept)
        try:
            response = self.client.put_object(**self.put_params(key, body, retain_until))
        except ClientError as exc:
            if _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                # Another writer created it between our read and write: compare with theirs.
                existing = _get(self.client, self.bucket, key)
                if existing is not None:
                    return self._same_or_fail(key, existing, body, accept)
            raise PublicationError(diagnose_s3_error(exc, "PutObject", self.bucket, key,
                                                     self.kms_key_id)) from exc
        except BotoCoreError as exc:
            raise PublicationError(diagnose_s3_error(exc, "PutObject", self.bucket, key,
                                                     self.kms_key_id)) from exc
        stored = response.get("ChecksumSHA256")
        if stored is not None and stored != sha256_b64(body):
            raise PublicationError(f"S3 stored s3://{self.bucket}/{key} with checksum {stored}, "
                                   f"expected {sha256_b64(body)}: the upload was corrupted; inspect "
                                   "the object before re-running")
        return True

    def _same_or_fail(self, key: str, existing: bytes, body: bytes, accept) -> bool:
        if existing == body or (accept is not None and accept(existing, body)):
            return False
        raise PublicationError(
            f"s3://{self.bucket}/{key} already exists with different content (sha256 "
            f"{hashlib.sha256(existing).hexdigest()[:16]}... vs {hashlib.sha256(body).hexdigest()[:16]}"
            "...): published objects are never overwritten. The same proof id with different bytes "
            "means the package builder is not deterministic or the object was tampered with; "
            "verify the published package before doing anything else")
