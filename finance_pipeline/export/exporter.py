"""Sign, verify and publish one day's bundle, and record it in the proof registry.

Order matters (``publish_day``):
1. the registry and the store are asked whether this day is already published;
2. the package is signed and verified as an auditor would (nothing is sealed if this fails);
3. the day is sealed (ledger/periods.py): under the day's lock, its entries are counted against
   the package's, and posting into it is refused from then on;
4. the publisher writes the files, `proof_package.json` last;
5. the registry row is written and the seal dropped, in one transaction: the day is closed.
A crash anywhere leaves either nothing, or a seal that the next export of the day (or
`finance-pipeline recover-publication DAY`) completes under the proof id in the store, or reopens
when the store has no complete package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from finance_pipeline.export import registry
from finance_pipeline.export.bundle import DayBundle
from finance_pipeline.ledger import periods
from finance_pipeline.proof.package import PROOF_FILE
from finance_pipeline.settings import DEFAULT_S3_OBJECT_LOCK_MODE, DEFAULT_S3_RETENTION_DAYS


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
    recovered: bool = False  # an interrupted publication of this proof was completed


def seal(bundle: DayBundle, signers: Sequence[Any], quorum: Any) -> dict[str, bytes]:
    """Sign the statement and verify the whole package as an auditor would; return its files."""
    from finance_pipeline.proof import package as pkg
    from finance_pipeline.proof.verify import verify_package
    from finance_pipeline.signing.config import keyring_from_signers
    from finance_pipeline.signing.signers import self_check, sign_statement

    s_bytes = bundle.statement_bytes
    signatures = sign_statement(s_bytes, signers)
    self_check(signatures, s_bytes, signers)
    files = dict(bundle.files)
    files[PROOF_FILE] = pkg.package_json(s_bytes, signatures)
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

    day, proof_id = bundle.day, bundle.proof_id
    record = registry.check_unchanged(engine, day, proof_id, bundle.merkle_root, actor)
    on_store = publisher.existing_for_day(day)
    if record is None:
        with engine.connect() as conn:
            seal = periods.get_seal(conn, day)
        if seal is not None and seal.proof_id in on_store:
            # Our own publication was interrupted after the store had it all: finish it.
            return _register_stored(engine, day, seal.proof_id, publisher, actor, recovered=True)
    others = [p for p in on_store if p != proof_id]
    if record is None and others:
        registry.record_conflict(engine, day, others[0], None, proof_id, bundle.merkle_root, actor)
        raise registry.LedgerChangedError(
            f"ledger changed since proof {others[0]} was published for {day} (found in the store, "
            "not in the registry): investigate before anything else")
    if record is None and proof_id not in on_store:
        return None
    location = record.location if record else publisher.location(day, proof_id)
    stored = _stored_statement(day, proof_id, location, publisher)
    if pkg.statement_bytes(stored) != bundle.statement_bytes:
        raise ExportError(f"{day}: the package stored at {location} does not carry the statement of "
                          f"proof {proof_id}; the store was tampered with")
    if record is None:
        return _register_stored(engine, day, proof_id, publisher, actor, recovered=False)
    return PublishedProof(day, proof_id, record.location, bundle.merkle_root, bundle.statement_sha256, created=False)


def _stored_statement(day: str, proof_id: str, location: str, publisher: Any) -> dict:
    from finance_pipeline.proof import package as pkg

    try:
        return pkg.Package.from_files(publisher.read(location)).statement()
    except Exception as exc:  # noqa: BLE001 - any unreadable store is the same diagnosis
        raise ExportError(f"{day}: proof {proof_id} is registered at {location} but cannot be read "
                          f"there ({exc}); restore it from the Object Lock copy before re-running") from None


def _register_stored(engine: sa.Engine, day: str, proof_id: str, publisher: Any, actor: str,
                     *, recovered: bool) -> PublishedProof:
    """Register the complete package the store holds for ``proof_id`` (and drop the day's seal)."""
    from finance_pipeline.proof import package as pkg

    location = publisher.location(day, proof_id)
    stored = _stored_statement(day, proof_id, location, publisher)
    stored_day = str((stored.get("interval") or {}).get("from", ""))[:10]
    if stored.get("proof_id") != proof_id or stored_day != day:
        raise ExportError(f"{day}: the package at {location} is not proof {proof_id} of {day}; "
                          "investigate the store before anything else")
    merkle_root = stored["ledger"]["merkle_root"]
    s_sha = pkg.statement_sha256(stored)
    registry.register(engine, proof_id=proof_id, day=day, merkle_root=merkle_root, statement_sha256=s_sha,
                      location=location, fmt=stored["format"], actor=actor)
    return PublishedProof(day, proof_id, location, merkle_root, s_sha, created=False, recovered=recovered)


def publish(engine: sa.Engine, bundle: DayBundle, files: dict[str, bytes], publisher: Any,
            *, actor: str = "system:export") -> PublishedProof:
    """Publish once: the same package again is a no-op; another package for the day is refused."""
    from finance_pipeline.publication import AlreadyPublishedError

    proof_id = bundle.proof_id
    s_sha = bundle.statement_sha256
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


def publish_day(engine: sa.Engine, bundle: DayBundle, publisher: Any, sign: Any, *, holder: str,
                actor: str = "system:export", lease_s: int = periods.DEFAULT_LEASE_S,
                holder_alive: Any = None) -> PublishedProof:
    """Publish the day once, in the order of the module docstring; ``sign()`` returns the files.

    Raises LedgerMovedError when entries were posted into the day after its extract (nothing
    published, the day stays open), PublicationInProgressError when another holder is
    publishing it, LedgerChangedError/ExportError as ``already_published`` and ``publish`` do.
    """
    done = already_published(engine, bundle, publisher, actor=actor)
    if done is not None:
        return done
    files = sign()
    try:
        periods.seal_day(engine, bundle.day, bundle.proof_id, bundle.entries,
                         holder=holder, lease_s=lease_s, holder_alive=holder_alive)
    except periods.PublicationInProgressError:
        # Another export registered the day while this one signed: the same package is
        # "unchanged" (a race of identical exports is no failure), another one is refused there.
        done = already_published(engine, bundle, publisher, actor=actor)
        if done is not None:
            return done
        raise
    return publish(engine, bundle, files, publisher, actor=actor)


def recover_day(engine: sa.Engine, day: str, publisher: Any, *, actor: str, force: bool = False,
                now: int | None = None) -> str:
    """Finish or undo an interrupted publication of ``day``; returns what was done, in words.

    A seal within its lease may belong to a publication still writing: it is left alone unless
    ``force`` (the operator knows its run is dead).
    """
    from finance_pipeline.ledger.audit import now_us
    from finance_pipeline.ledger.engine import begin_write

    now = now_us() if now is None else now
    with engine.connect() as conn:
        seal = periods.get_seal(conn, day)
    if seal is None:
        records = registry.published_for_day(engine, day)
        return (f"{day}: published as {records[0].proof_id}; nothing to recover" if records
                else f"{day}: open (no publication in progress); nothing to recover")
    if seal.lease_until_us > now and not force:
        raise periods.PublicationInProgressError(
            f"{day} is being published (proof {seal.proof_id}, by {seal.holder}) and its lease runs "
            f"{(seal.lease_until_us - now) // 1_000_000} s more; wait, or pass --force if that run is dead")
    if seal.proof_id in publisher.existing_for_day(day):
        done = _register_stored(engine, day, seal.proof_id, publisher, actor, recovered=True)
        return f"{day}: the store holds the whole package of {done.proof_id}; registered it (the day is closed)"
    with begin_write(engine) as conn:
        periods.lock_days(conn, [day], exclusive=True)
        again = periods.get_seal(conn, day)
        if again is None or (again.proof_id, again.holder) != (seal.proof_id, seal.holder):
            raise periods.PublicationInProgressError(
                f"{day}: its seal changed while recovering (another publication took it); run it again")
        periods.release(conn, day, actor, "recovered: no complete package in the store")
    return (f"{day}: the interrupted publication of {seal.proof_id} left no complete package; the day is "
            "open again (an incomplete prefix in the store is ignored by every reader)")


def build_publisher(*, bucket: str = "", kms_key_id: str = "", lock_mode: str = DEFAULT_S3_OBJECT_LOCK_MODE,
                    retention_days: int = DEFAULT_S3_RETENTION_DAYS, local_dir: str = "", endpoint_url: str | None = None,
                    region: str | None = None) -> Any:
    """S3 under Object Lock when a bucket is configured, else the local read-only folder
    ``local_dir`` (empty: the embedded default ``var/published``)."""
    if bucket:
        from finance_pipeline.publication import S3Publisher
        from finance_pipeline.publication.s3 import s3_client

        if not kms_key_id:
            raise ExportError("S3_AUDIT_BUCKET is set but no KMS key for SSE-KMS: set S3_SSE_KMS_KEY_ID "
                              "(or KMS_KEY_ID)")
        return S3Publisher(s3_client(endpoint_url, region), bucket, kms_key_id=kms_key_id, lock_mode=lock_mode,
                           retention_days=retention_days)
    from finance_pipeline.publication import LocalPublisher
    from finance_pipeline.settings import Settings

    return LocalPublisher(local_dir or str(Settings().publish_dir))
