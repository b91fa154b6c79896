"""Sign, verify and publish one day's bundle, and record it in the proof registry.

Order matters: everything that can fail (signing, the self-verification against the public
keyring, the registry's chain and change checks) happens before the first byte is published,
and the registry row is written only after the publisher has the whole package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from finance_pipeline.export import registry
from finance_pipeline.export.bundle import PACKAGE_FILE, DayBundle


class ExportError(RuntimeError):
    """A day could not be sealed or published; nothing was published."""


@dataclass
class PublishedProof:
    day: str
    proof_id: str
    location: str
    merkle_root: str
    statement_sha256: str
    created: bool  # False: the same package was already published (a no-op)


def seal(bundle: DayBundle, signers: Sequence[Any], quorum: Any) -> dict[str, bytes]:
    """Sign the statement and verify the whole package as an auditor would; return its files."""
    from finance_pipeline.proof import package as pkg
    from finance_pipeline.proof.verify import verify_package
    from finance_pipeline.signing.config import keyring_from_signers
    from finance_pipeline.signing.signers import self_check, sign_statement

    s_bytes = pkg.statement_bytes(bundle.statement)
    signatures = sign_statement(s_bytes, signers)
    self_check(signatures, s_bytes, signers)
    files = dict(bundle.files)
    files[PACKAGE_FILE] = pkg.package_json(bundle.statement, signatures)
    result = verify_package(pkg.Package.from_files(files), keyring_from_signers(signers, quorum),
                            computed=bundle.computed)
    if not result.ok:
        raise ExportError(f"{bundle.day}: the package does not verify, so it is not published: {result.text()}")
    return files


def already_published(engine: sa.Engine, bundle: DayBundle, publisher: Any,
                      *, actor: str = "system:export") -> PublishedProof | None:
    """The existing publication when this exact statement is already out, else None.

    Checked before signing: ECDSA signatures differ on every run, so re-running a published
    day must not sign again. Another proof for the day is refused (the ledger changed).
    A package the store has but the registry lacks (a crash between the two) is registered.
    """
    from finance_pipeline.proof import package as pkg

    day, proof_id = bundle.day, bundle.statement["proof_id"]
    record = registry.check_unchanged(engine, day, proof_id, bundle.merkle_root, actor)
    on_store = publisher.existing_for_day(day)
    others = [p for p in on_store if p != proof_id]
    if record is None and others:
        registry.record_conflict(engine, day, others[0], None, proof_id, bundle.merkle_root, actor)
        raise registry.LedgerChangedError(
            f"ledger changed since proof {others[0]} was published for {day} (found in the store, "
            "not in the registry): investigate before anything else")
    if record is None and proof_id not in on_store:
        return None
    location = record.location if record else publisher.location(day, proof_id)
    try:
        stored = pkg.Package.from_files(publisher.read(location)).statement()
    except Exception as exc:  # noqa: BLE001 - any unreadable store is the same diagnosis
        raise ExportError(f"{day}: proof {proof_id} is registered at {location} but cannot be read "
                          f"there ({exc}); restore it from the Object Lock copy before re-running") from None
    if pkg.statement_bytes(stored) != pkg.statement_bytes(bundle.statement):
        raise ExportError(f"{day}: the package stored at {location} does not carry the statement of "
                          f"proof {proof_id}; the store was tampered with")
    s_sha = pkg.statement_sha256(bundle.statement)
    if record is None:
        record = registry.register(engine, proof_id=proof_id, day=day, merkle_root=bundle.merkle_root,
                                   statement_sha256=s_sha, location=location,
                                   fmt=bundle.statement["format"], actor=actor)
    return PublishedProof(day, proof_id, record.location, bundle.merkle_root, s_sha, created=False)


def publish(engine: sa.Engine, bundle: DayBundle, files: dict[str, bytes], publisher: Any,
            *, actor: str = "system:export") -> PublishedProof:
    """Publish once: the same package again is a no-op; another package for the day is refused."""
    from finance_pipeline.proof import package as pkg
    from finance_pipeline.publication import AlreadyPublishedError

    proof_id = bundle.statement["proof_id"]
    s_sha = pkg.statement_sha256(bundle.statement)
    existing = registry.check_unchanged(engine, bundle.day, proof_id, bundle.merkle_root, actor)
    try:
        result = publisher.publish(bundle.day, proof_id, files)
    except AlreadyPublishedError as exc:
        # The store holds another package for the day that the registry does not know of.
        registry.record_conflict(engine, bundle.day, exc.existing_proof_id, None, proof_id,
                                 bundle.merkle_root, actor)
        raise registry.LedgerChangedError(str(exc)) from None
    record = registry.register(
        engine, proof_id=proof_id, day=bundle.day, merkle_root=bundle.merkle_root,
        statement_sha256=s_sha, location=result.location, fmt=bundle.statement["format"], actor=actor,
    )
    return PublishedProof(bundle.day, proof_id, record.location, bundle.merkle_root, s_sha,
                          created=existing is None and result.created)


def build_publisher(*, bucket: str = "", kms_key_id: str = "", lock_mode: str = "COMPLIANCE",
                    retention_days: int = 2555, local_dir: str = "", endpoint_url: str | None = None,
                    region: str | None = None) -> Any:
    """S3 under Object Lock when a bucket is configured, else the local read-only folder."""
    if bucket:
        import boto3

        from finance_pipeline.publication import S3Publisher

        if not kms_key_id:
            raise ExportError("S3_AUDIT_BUCKET is set but no KMS key for SSE-KMS: set S3_SSE_KMS_KEY_ID "
                              "(or KMS_KEY_ID)")
        client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        return S3Publisher(client, bucket, kms_key_id=kms_key_id, lock_mode=lock_mode,
                           retention_days=retention_days)
    from finance_pipeline import settings
    from finance_pipeline.publication import LocalPublisher

    return LocalPublisher(local_dir or str(settings.var_dir() / "published"))
