"""Closing days: the lock that orders posting against publication, and the seal of a day whose
proof is being published.

A day is open, sealed (its proof is being published: a row in `day_seals`) or closed (a row in
`proofs`). Posting into a sealed or closed day is refused. The order is enforced by a lock per
day, taken by every posting transaction (shared) and by the sealing transaction (exclusive):
PostgreSQL advisory transaction locks; on SQLite every write transaction is `BEGIN IMMEDIATE`,
which already serialises all writers. So an entry is either committed before the seal (and
the seal's count of the day's entries sees it) or refused after it: never accepted and left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import sqlalchemy as sa

from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.ledger.audit import now_us, record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.schema import day_seals, journal_entries, proofs

# Namespace of the advisory lock keys (hashtext of "<namespace>:<day>").
_LOCK_NAMESPACE = "finance_pipeline.day"
DEFAULT_LEASE_S = 1800


class LedgerMovedError(RuntimeError):
    """Entries were posted into the day after its extract was read: the package would miss them."""


class PublicationInProgressError(RuntimeError):
    """Another holder is publishing this day's proof right now."""


@dataclass(frozen=True)
class Seal:
    day: str
    proof_id: str
    holder: str
    entries: int
    sealed_at_us: int
    lease_until_us: int


def lock_days(conn: sa.Connection, days: Iterable[str], *, exclusive: bool) -> None:
    """Take the days' locks for the rest of ``conn``'s transaction (sorted: no deadlocks)."""
    if conn.dialect.name != "postgresql":
        return  # SQLite: the write transaction (BEGIN IMMEDIATE) already excludes every writer
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    for day in sorted(set(days)):
        conn.execute(sa.text(f"SELECT {fn}(hashtext(:key))"), {"key": f"{_LOCK_NAMESPACE}:{day}"})


def closing_proofs(conn: sa.Connection, days: Iterable[str]) -> dict[str, tuple[str, str]]:
    """For each of ``days`` that is closed or sealed: (proof id, "closed" | "sealed")."""
    wanted = sorted(set(days))
    out: dict[str, tuple[str, str]] = {}
    if not wanted:
        return out
    for day, proof_id in conn.execute(sa.select(day_seals.c.day, day_seals.c.proof_id)
                                      .where(day_seals.c.day.in_(wanted))):
        out[day] = (proof_id, "sealed")
    for day, proof_id in conn.execute(sa.select(proofs.c.day, sa.func.min(proofs.c.proof_id))
                                      .where(proofs.c.day.in_(wanted)).group_by(proofs.c.day)):
        out[day] = (proof_id, "closed")
    return out


def entries_in_day(conn: sa.Connection, day: str) -> int:
    lo, hi = day_bounds_us(day)
    return int(conn.execute(sa.select(sa.func.count()).select_from(journal_entries)
                            .where(journal_entries.c.ts_us >= lo, journal_entries.c.ts_us < hi)).scalar())


def get_seal(conn: sa.Connection, day: str) -> Seal | None:
    row = conn.execute(sa.select(day_seals).where(day_seals.c.day == day)).first()
    return Seal(**row._mapping) if row is not None else None


def get_seal_of(engine: sa.Engine, day: str) -> Seal | None:
    with engine.connect() as conn:
        return get_seal(conn, day)


def seal_day(engine: sa.Engine, day: str, proof_id: str, entries: int, *, holder: str,
             lease_s: int = DEFAULT_LEASE_S, now: int | None = None,
             holder_alive: Callable[[str], bool] | None = None) -> Seal:
    """Seal ``day`` for publishing ``proof_id``, built from an extract holding ``entries`` of it.

    Under the day's exclusive lock: refuses when the day now holds other entries than the
    extract did (LedgerMovedError: nothing sealed, the day stays open) or when another holder
    holds the seal within its lease and is not known to be dead (``holder_alive``), whatever
    proof it publishes (PublicationInProgressError). A dead holder's or an expired seal is
    taken over (its proof is then resumed or replaced). Idempotent for the same holder.
    """
    now = now_us() if now is None else now
    with begin_write(engine) as conn:
        lock_days(conn, [day], exclusive=True)
        if conn.execute(sa.select(proofs.c.proof_id).where(proofs.c.day == day)).first() is not None:
            # Registered meanwhile (another export won): the caller's registry check reports it.
            raise PublicationInProgressError(f"{day} was published meanwhile; re-run the export to see it")
        current = entries_in_day(conn, day)
        if current != entries:
            raise LedgerMovedError(
                f"{day} holds {current} journal entries now but the package was built from {entries}: "
                "entries were posted while the day was being exported, so nothing was published and the "
                f"day stays open; export it again (finance-pipeline export {day} {day}) to include them")
        seal = get_seal(conn, day)
        if (seal is not None and seal.holder != holder and seal.lease_until_us > now
                and (holder_alive is None or holder_alive(seal.holder))):
            raise PublicationInProgressError(
                f"{day} is already being published (proof {seal.proof_id}, by {seal.holder}, since "
                f"{seal.sealed_at_us}); this export stops here. Wait for it; if it died, its lease ends "
                f"in {(seal.lease_until_us - now) // 1_000_000} s, or run `finance-pipeline recover-publication {day}`")
        values = dict(proof_id=proof_id, holder=holder, entries=entries, sealed_at_us=now,
                      lease_until_us=now + lease_s * 1_000_000)
        if seal is None:
            conn.execute(day_seals.insert().values(day=day, **values))
        else:
            conn.execute(day_seals.update().where(day_seals.c.day == day).values(**values))
        record_event(conn, holder, "day.seal", "day", day,
                     {"proof_id": proof_id, "entries": entries,
                      "took_over": None if seal is None else seal.proof_id}, ts_us=now)
    return Seal(day=day, **values)


def release(conn: sa.Connection, day: str, actor: str, reason: str) -> Seal | None:
    """Drop the day's seal inside the caller's transaction (registered, or found incomplete)."""
    seal = get_seal(conn, day)
    if seal is not None:
        conn.execute(day_seals.delete().where(day_seals.c.day == day))
        record_event(conn, actor, "day.unseal", "day", day, {"proof_id": seal.proof_id, "reason": reason})
    return seal
