"""The proof registry in the ledger database: what was published, where, and the chain.

A row here also closes its day: the posting core refuses entries dated in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa

from finance_pipeline.ledger import periods
from finance_pipeline.ledger.audit import now_us, record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.schema import proofs


@dataclass(frozen=True)
class ProofRecord:
    proof_id: str
    day: str
    merkle_root: str
    statement_sha256: str
    location: str
    published_at_us: int
    format: str


class ChainError(RuntimeError):
    """The day before has no published proof, so this day cannot link to it."""


class LedgerChangedError(RuntimeError):
    """A day already has a published proof and the ledger now gives a different one."""


def published_for_day(engine: sa.Engine, day: str) -> list[ProofRecord]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(proofs).where(proofs.c.day == day).order_by(proofs.c.published_at_us))
        return [ProofRecord(**r._mapping) for r in rows]


def get(engine: sa.Engine, proof_id: str) -> ProofRecord | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(proofs).where(proofs.c.proof_id == proof_id)).first()
    return ProofRecord(**row._mapping) if row else None


def previous_link(engine: sa.Engine, day: str, chain_start: str) -> dict | None:
    """The `previous` member for ``day``: null on the chain's first day, else the proof of the
    day before, which must be published.

    The chain start is a setting (FP_CHAIN_START), never inferred from what happens to be
    published: a day published out of order must not silently start a second chain.
    """
    if day < chain_start:
        raise ChainError(f"{day} is before the proof chain's first day {chain_start} (FP_CHAIN_START): "
                         "no proof is published for it")
    if day == chain_start:
        return None
    before = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    records = published_for_day(engine, before)
    if not records:
        raise ChainError(
            f"{before} has no published proof, so {day} cannot link to it; publish {before} first "
            f"(finance-pipeline export {before} {day}, or one backfill from {before})"
        )
    return {"proof_id": records[0].proof_id, "statement_sha256": records[0].statement_sha256}


def check_unchanged(engine: sa.Engine, day: str, proof_id: str, merkle_root: str, actor: str) -> ProofRecord | None:
    """The existing record when ``proof_id`` is already published for ``day`` (a no-op);
    raises LedgerChangedError, after recording an audit event, when another proof is."""
    records = published_for_day(engine, day)
    same = [r for r in records if r.proof_id == proof_id]
    if same:
        return same[0]
    if records:
        first = records[0]
        record_conflict(engine, day, first.proof_id, first.merkle_root, proof_id, merkle_root, actor)
        raise LedgerChangedError(
            f"ledger changed since proof {first.proof_id} was published for {day} "
            f"(published root {first.merkle_root}, now {merkle_root}); published days are closed, "
            "so the ledger was altered outside the posting core: investigate before anything else"
        )
    return None


def record_conflict(engine: sa.Engine, day: str, published_id: str, published_root: str | None,
                    new_id: str, new_root: str, actor: str) -> None:
    with begin_write(engine) as conn:
        record_event(conn, actor, "proof.conflict", "proof", published_id, {
            "day": day, "published_root": published_root, "new_root": new_root, "new_proof_id": new_id,
        })


def register(engine: sa.Engine, *, proof_id: str, day: str, merkle_root: str, statement_sha256: str,
             location: str, fmt: str, actor: str) -> ProofRecord:
    """Record a publication (idempotent) and the audit event that goes with it; the day's seal
    (ledger/periods.py) goes in the same transaction, so the day is never open in between."""
    now = now_us()
    with begin_write(engine) as conn:
        periods.lock_days(conn, [day], exclusive=True)
        existing = conn.execute(sa.select(proofs).where(proofs.c.proof_id == proof_id)).first()
        if existing:
            periods.release(conn, day, actor, "published")
            return ProofRecord(**existing._mapping)
        other = conn.execute(sa.select(proofs.c.proof_id).where(proofs.c.day == day)).first()
        if other is not None:
            raise LedgerChangedError(f"{day} is already published as {other[0]}; {proof_id} is not registered")
        seal = periods.get_seal(conn, day)
        if seal is not None and seal.proof_id != proof_id:
            # Another publication took the day over meanwhile: this one must not close it.
            raise periods.PublicationInProgressError(
                f"{day} is sealed for proof {seal.proof_id} (by {seal.holder}), not {proof_id}: this "
                "publication lost the day to another and registers nothing")
        periods.release(conn, day, actor, "published")
        conn.execute(proofs.insert().values(
            proof_id=proof_id, day=day, merkle_root=merkle_root, statement_sha256=statement_sha256,
            location=location, published_at_us=now, format=fmt,
        ))
        record_event(conn, actor, "proof.publish", "proof", proof_id,
                     {"day": day, "merkle_root": merkle_root, "location": location}, ts_us=now)
    return ProofRecord(proof_id, day, merkle_root, statement_sha256, location, now, fmt)
