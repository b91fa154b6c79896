"""The posting core: every writer (CLI, HTTP API, batch repair) posts journal entries through here.

A submission is all or nothing. Every entry is validated first (shape and rules without the
database, then accounts, reversal targets, batches, closed days and journal_id idempotency
against it), all problems are reported together, and only a clean submission is written, in
one transaction, with one audit event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from finance_pipeline.domain.canonical import MAX_SAFE_INT
from finance_pipeline.domain.journal import (
    FieldError,
    JournalEntry,
    JournalValidationError,
    parse_entry,
)
from finance_pipeline.domain.timeutil import day_of_us
from finance_pipeline.ledger import periods
from finance_pipeline.ledger.audit import now_us as _now_us
from finance_pipeline.ledger.audit import record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.errors import ClosedDayError, JournalConflictError, UnknownAccountError
from finance_pipeline.ledger.schema import (
    ACTOR_LEN,
    accounts,
    journal_batches,
    journal_entries,
    journal_lines,
)
from finance_pipeline.settings import DEFAULT_ENTRY_FUTURE_SKEW_S, DEFAULT_PARTITIONS_START, Settings

# Keeps IN (...) lists well under SQLite's bound-parameter limit.
_IN_CHUNK = 500
# Column widths the database enforces (PostgreSQL) or would silently ignore (SQLite).
_MAX_LEN = {"posted_by": ACTOR_LEN, "reviewed_by": ACTOR_LEN, "provider_reference": 255}

_INVALID, _UNKNOWN_ACCOUNT, _CLOSED_DAY, _CONFLICT = "invalid", "unknown_account", "closed_day", "conflict"
_ERROR_CLASS = {
    _UNKNOWN_ACCOUNT: UnknownAccountError,
    _CLOSED_DAY: ClosedDayError,
    _CONFLICT: JournalConflictError,
}


@dataclass(frozen=True, slots=True)
class EntryWindow:
    """Which timestamps an entry may carry: from ``first_day`` 00:00Z (FP_PARTITIONS_START: no
    proof could cover an earlier entry) to ``future_skew_s`` past now (FP_ENTRY_FUTURE_SKEW_S).

    The defaults are the embedded ones; every writer is handed the configured window."""

    first_day: str = DEFAULT_PARTITIONS_START
    future_skew_s: int = DEFAULT_ENTRY_FUTURE_SKEW_S

    @classmethod
    def from_settings(cls, settings: Settings) -> EntryWindow:
        return cls(settings.partitions_start, settings.entry_future_skew_s)


@dataclass(frozen=True, slots=True)
class PostResult:
    """What a submission did: entries written now, and entries that were already posted as-is."""

    created: int
    already_present: int
    created_ids: tuple[str, ...] = ()
    present_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class _Problems:
    items: list[tuple[int, str, FieldError]]

    def add(self, index: int, category: str, field: str, message: str) -> None:
        self.items.append((index, category, FieldError(field, message)))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        # Report in submission order so "entries[3]" maps to the fourth line of a file.
        ordered = sorted(self.items, key=lambda item: item[0])
        categories = {category for _, category, _ in ordered}
        errors = [error for _, _, error in ordered]
        # One kind of problem gets its specific class; a mix is a plain validation error.
        cls = _ERROR_CLASS.get(categories.pop()) if len(categories) == 1 else None
        raise (cls or JournalValidationError)(errors)


@dataclass(slots=True)
class _Plan:
    new: list[tuple[int, JournalEntry, str]]  # (index, entry, body_sha256), insert order
    present_ids: list[str]


def _prefix(index: int) -> str:
    return f"entries[{index}]."


def _leaf(obj: Any) -> Any:
    return obj.to_leaf() if isinstance(obj, JournalEntry) else obj


def _ts_window(window: EntryWindow) -> tuple[int, int, str, int]:
    """[first partition 00:00Z, now + skew]: where a proof can cover an entry."""
    from finance_pipeline.domain.timeutil import day_bounds_us

    start, skew = window.first_day, window.future_skew_s
    return day_bounds_us(start)[0], _now_us() + skew * 1_000_000, start, skew


def _parse_all(
    entries: Sequence[JournalEntry | dict], batch_id: str | None, problems: _Problems,
    window: EntryWindow,
) -> list[tuple[int, JournalEntry, str]]:
    from finance_pipeline.domain.timeutil import format_ts_us

    lo, hi, start, skew = _ts_window(window)
    parsed: list[tuple[int, JournalEntry, str]] = []
    for i, obj in enumerate(entries):
        prefix = _prefix(i)
        before = len(problems.items)
        try:
            # JournalEntry objects are re-validated too: they can be built without parse_entry.
            entry = parse_entry(_leaf(obj), index=prefix)
        except JournalValidationError as exc:
            for error in exc.errors:
                problems.items.append((i, _INVALID, error))
            continue
        if entry.ts_us < lo:
            problems.add(i, _INVALID, prefix + "ts",
                         f"{format_ts_us(entry.ts_us)} is before the ledger's first day {start} "
                         "(FP_PARTITIONS_START), so no proof could ever cover it; date it on or after "
                         f"{start}")
        elif entry.ts_us > hi:
            problems.add(i, _INVALID, prefix + "ts",
                         f"{format_ts_us(entry.ts_us)} is more than {skew} s in the future "
                         "(FP_ENTRY_FUTURE_SKEW_S); post an entry once it has happened")
        for name, limit in _MAX_LEN.items():
            value = getattr(entry, name)
            if value is not None and len(value) > limit:
                problems.add(i, _INVALID, prefix + name,
                             f"must be at most {limit} characters, got {len(value)}")
        for j, line in enumerate(entry.lines):
            if line.amount_minor > MAX_SAFE_INT:
                problems.add(i, _INVALID, f"{prefix}lines[{j}].amount_minor",
                             f"must be at most {MAX_SAFE_INT} so the canonical JSON of the proof "
                             "can carry it exactly; split the amount over several entries")
        if batch_id is not None:
            # The batch an entry is posted in is part of its body (and so of its leaf).
            if entry.batch_id is None:
                entry = replace(entry, batch_id=batch_id)
            elif entry.batch_id != batch_id:
                problems.add(i, _INVALID, prefix + "batch_id",
                             f"is {entry.batch_id!r} but the entry is posted in batch {batch_id!r}; "
                             f"set it to null or to {batch_id!r}")
        if len(problems.items) == before:
            parsed.append((i, entry, entry.body_sha256()))
    return parsed


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    values = sorted(set(values))
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


def _select_in(conn: sa.Connection, key: sa.Column, columns: Sequence[Any],
               chunk: list[str]) -> sa.Select:
    """SELECT key, columns ... WHERE key is one of ``chunk``."""
    stmt = sa.select(key, *columns)
    if conn.dialect.name != "postgresql":
        return stmt.where(key.in_(chunk))
    # Join an unnested array instead of IN (...): psycopg prepares repeated statements, and
    # PostgreSQL's generic plan for a parameter list scans the array once per row (seconds
    # per chunk on a large table); a join keeps to the index or a hash.
    ids = (
        sa.func.unnest(sa.bindparam(None, chunk, type_=postgresql.ARRAY(sa.String)))
        .table_valued("id")
        .render_derived()
    )
    return stmt.join_from(key.table, ids, key == ids.c.id)


def _lookup(conn: sa.Connection, key: sa.Column, columns: Sequence[sa.Column],
            values: Iterable[str]) -> dict[str, tuple]:
    found: dict[str, tuple] = {}
    for chunk in _chunks(values):
        for row in conn.execute(_select_in(conn, key, columns, chunk)):
            found.setdefault(row[0], tuple(row[1:]))
    return found


def plan_entries(
    conn: sa.Connection,
    entries: Sequence[JournalEntry | dict],
    *,
    batch_id: str | None = None,
    pending_batch: str | None = None,
    window: EntryWindow = EntryWindow(),
) -> _Plan:
    """Validate a submission against the database on ``conn``; raise on any problem.

    ``batch_id`` fills null ``batch_id`` members (the batch being applied); ``pending_batch``
    is a batch about to be staged in the same transaction, so it counts as existing.
    ``window``: the timestamps an entry may have.
    """
    problems = _Problems([])
    parsed = _parse_all(entries, batch_id, problems, window)

    # Repeats inside the submission: the same body is harmless, a different one is a conflict.
    first: dict[str, tuple[int, str]] = {}
    unique: list[tuple[int, JournalEntry, str]] = []
    repeats: list[str] = []
    for i, entry, sha in parsed:
        seen = first.get(entry.journal_id)
        if seen is None:
            first[entry.journal_id] = (i, sha)
            unique.append((i, entry, sha))
        elif seen[1] == sha:
            repeats.append(entry.journal_id)
        else:
            problems.add(i, _CONFLICT, _prefix(i) + "journal_id",
                         f"{entry.journal_id!r} repeats entries[{seen[0]}] with a different body; "
                         "give one of them a new journal_id")

    posted = _lookup(conn, journal_entries.c.journal_id,
                     [journal_entries.c.body_sha256, journal_entries.c.batch_id],
                     (e.journal_id for _, e, _ in unique))
    new: list[tuple[int, JournalEntry, str]] = []
    present: list[str] = []
    for i, entry, sha in unique:
        if entry.journal_id not in posted:
            new.append((i, entry, sha))
        elif posted[entry.journal_id][0] == sha:
            present.append(entry.journal_id)
        else:
            posted_sha, posted_batch = posted[entry.journal_id]
            # The batch is part of the body; say so, since it is the easiest difference to miss.
            hint = (f" (it was posted in batch {posted_batch!r}, this one is in batch "
                    f"{entry.batch_id!r})" if posted_batch != entry.batch_id else "")
            problems.add(i, _CONFLICT, _prefix(i) + "journal_id",
                         f"{entry.journal_id!r} is already posted with a different body{hint} "
                         f"(sha256 {posted_sha[:12]}..., this one {sha[:12]}...); "
                         "posted entries never change: post the correction as an adjustment or "
                         "reversal under a new journal_id")
    present.extend(repeats)

    # Entries already posted were checked when they were posted; only new ones are checked here.
    account_rows = _lookup(conn, accounts.c.account_id, [accounts.c.currency],
                           (line.account_id for _, e, _ in new for line in e.lines))
    for i, entry, _ in new:
        for j, line in enumerate(entry.lines):
            at = f"{_prefix(i)}lines[{j}]"
            row = account_rows.get(line.account_id)
            if row is None:
                problems.add(i, _UNKNOWN_ACCOUNT, at + ".account_id",
                             f"account {line.account_id!r} does not exist; create it with "
                             f"`finance-pipeline accounts create {line.account_id} --name ... "
                             f"--type ... --currency {line.currency}`")
            elif row[0].strip() != line.currency:
                problems.add(i, _INVALID, at + ".currency",
                             f"account {line.account_id!r} is kept in {row[0].strip()}, not "
                             f"{line.currency}; post this line to a {line.currency} account")

    in_submission = set(first)
    targets = _lookup(conn, journal_entries.c.journal_id, [journal_entries.c.kind],
                      (e.reverses for _, e, _ in new if e.reverses and e.reverses not in in_submission))
    for i, entry, _ in new:
        if entry.reverses and entry.reverses not in in_submission and entry.reverses not in targets:
            problems.add(i, _INVALID, _prefix(i) + "reverses",
                         f"no entry {entry.reverses!r} is posted; name the journal_id of a posted "
                         "entry (or include that entry in the same submission)")

    known_batches = _lookup(conn, journal_batches.c.batch_id, [journal_batches.c.status],
                            (e.batch_id for _, e, _ in new if e.batch_id and e.batch_id != pending_batch))
    for i, entry, _ in new:
        if entry.batch_id and entry.batch_id != pending_batch and entry.batch_id not in known_batches:
            problems.add(i, _INVALID, _prefix(i) + "batch_id",
                         f"batch {entry.batch_id!r} does not exist; import the entries with "
                         f"`finance-pipeline journal import FILE --batch-id {entry.batch_id}` "
                         "or set batch_id to null")

    days = {i: day_of_us(entry.ts_us).isoformat() for i, entry, _ in new}
    # The days' shared locks order this posting against a publication sealing one of them
    # (ledger/periods.py): either this commits before the seal counts the day, or it sees it.
    periods.lock_days(conn, days.values(), exclusive=False)
    closed = periods.closing_proofs(conn, days.values())
    for i, day in days.items():
        if day not in closed:
            continue
        proof_id, state = closed[day]
        if state == "closed":
            message = (f"day {day} is closed by proof {proof_id!r}; post the correction dated in an "
                       "open day (as an adjustment or reversal)")
        else:
            message = (f"day {day} is sealed: its proof {proof_id!r} is being published (or its "
                       f"publication was interrupted: `finance-pipeline recover-publication {day}`); post "
                       "the correction dated in an open day")
        problems.add(i, _CLOSED_DAY, _prefix(i) + "ts", message)

    _check_day_totals(conn, new, days, problems)
    ordered = _reversal_targets_first(new, problems)
    problems.raise_if_any()
    return _Plan(new=ordered, present_ids=present)


def _check_day_totals(conn: sa.Connection, new: list[tuple[int, JournalEntry, str]], days: dict[int, str],
                      problems: _Problems) -> None:
    """Refuse the entry that would push its day's debit or credit total in a currency past
    MAX_SAFE_INT: the signed statement carries those totals as exact JSON integers, and a day
    whose total cannot be written could never be published (entries are never removed)."""
    from finance_pipeline.domain.timeutil import day_bounds_us

    totals: dict[tuple[str, str, str], int] = {}
    for day in sorted(set(days.values())):
        lo, hi = day_bounds_us(day)
        rows = conn.execute(
            sa.select(journal_lines.c.currency, journal_lines.c.direction, sa.func.sum(journal_lines.c.amount_minor))
            .join(journal_entries, journal_entries.c.journal_id == journal_lines.c.journal_id)
            .where(journal_entries.c.ts_us >= lo, journal_entries.c.ts_us < hi)
            .group_by(journal_lines.c.currency, journal_lines.c.direction))
        for currency, direction, total in rows:
            totals[(day, currency.strip(), direction)] = int(total or 0)
    for i, entry, _ in new:
        day = days[i]
        adds: dict[tuple[str, str, str], int] = {}
        for line in entry.lines:
            key = (day, line.currency, line.direction)
            adds[key] = adds.get(key, 0) + line.amount_minor
        over = [key for key, add in adds.items() if totals.get(key, 0) + add > MAX_SAFE_INT]
        if over:
            _, currency, direction = over[0]
            problems.add(i, _INVALID, _prefix(i) + "lines",
                         f"would bring the {direction} total of {day} in {currency} to "
                         f"{totals.get(over[0], 0) + adds[over[0]]}, past {MAX_SAFE_INT} (2^53-1), the "
                         "largest total a signed proof can carry exactly; post the amount in a day "
                         "with room, or in several days")
            continue
        for key, add in adds.items():
            totals[key] = totals.get(key, 0) + add


def _reversal_targets_first(
    new: list[tuple[int, JournalEntry, str]], problems: _Problems
) -> list[tuple[int, JournalEntry, str]]:
    """``new`` reordered so a reversal comes after its target when both are in it.

    journal_entries.reverses is a foreign key checked row by row; a cycle (A reverses B,
    B reverses A) can never be inserted and is reported.
    """
    by_id = {item[1].journal_id: item for item in new}
    out: list[tuple[int, JournalEntry, str]] = []
    done: set[str] = set()
    for item in new:
        chain: list[tuple[int, JournalEntry, str]] = []
        on_chain: set[str] = set()
        cursor: tuple[int, JournalEntry, str] | None = item
        while cursor is not None and cursor[1].journal_id not in done:
            jid = cursor[1].journal_id
            if jid in on_chain:
                problems.add(cursor[0], _INVALID, _prefix(cursor[0]) + "reverses",
                             f"{jid!r} is part of a reversal cycle; a reversal must name an "
                             "entry that does not (directly or indirectly) reverse it")
                return out
            on_chain.add(jid)
            chain.append(cursor)
            cursor = by_id.get(cursor[1].reverses) if cursor[1].reverses else None
        for link in reversed(chain):
            done.add(link[1].journal_id)
            out.append(link)
    return out


def write_plan(
    conn: sa.Connection,
    plan: _Plan,
    *,
    now_us: int,
    actor: str | None = None,
    batch_id: str | None = None,
) -> PostResult:
    """Insert the plan's new entries and their lines, and record one audit event."""
    entry_rows = []
    line_rows = []
    for _, entry, sha in plan.new:
        entry_rows.append({
            "journal_id": entry.journal_id, "ts_us": entry.ts_us, "kind": entry.kind,
            "memo": entry.memo, "batch_id": entry.batch_id, "provider": entry.provider,
            "provider_reference": entry.provider_reference, "reverses": entry.reverses,
            "posted_by": entry.posted_by, "reviewed_by": entry.reviewed_by,
            "body_sha256": sha, "posted_at_us": now_us,
        })
        for line_no, line in enumerate(entry.lines):
            line_rows.append({
                "journal_id": entry.journal_id, "line_no": line_no, "account_id": line.account_id,
                "direction": line.direction, "amount_minor": line.amount_minor,
                "currency": line.currency,
            })
    if entry_rows:
        conn.execute(journal_entries.insert(), entry_rows)
        conn.execute(journal_lines.insert(), line_rows)

    created_ids = tuple(entry.journal_id for _, entry, _ in plan.new)
    result = PostResult(len(created_ids), len(plan.present_ids), created_ids, tuple(plan.present_ids))
    posters = sorted({entry.posted_by for _, entry, _ in plan.new})
    all_ids = sorted(set(created_ids) | set(plan.present_ids))
    if batch_id is not None:
        subject_type, subject_id = "journal_batch", batch_id
    elif len(all_ids) == 1:
        subject_type, subject_id = "journal_entry", all_ids[0]
    else:
        subject_type = "journal_submission"
        subject_id = hashlib.sha256("\n".join(all_ids).encode()).hexdigest()[:32]
    record_event(
        conn,
        actor or (posters[0] if len(posters) == 1 else "system"),
        "journal.post",
        subject_type,
        subject_id,
        {
            "batch_id": batch_id,
            "created": result.created,
            "already_present": result.already_present,
            # Bounded: a batch can hold millions of entries.
            "created_ids": list(created_ids[:100]),
            "created_ids_truncated": len(created_ids) > 100,
        },
        ts_us=now_us,
    )
    return result


def post_entries_in(
    conn: sa.Connection,
    entries: Sequence[JournalEntry | dict],
    *,
    batch_id: str | None = None,
    now_us: int | None = None,
    actor: str | None = None,
    window: EntryWindow = EntryWindow(),
) -> PostResult:
    """``post_entries`` inside the caller's transaction (the caller commits or rolls back)."""
    plan = plan_entries(conn, entries, batch_id=batch_id, window=window)
    return write_plan(conn, plan, now_us=_now_us() if now_us is None else now_us,
                      actor=actor, batch_id=batch_id)


def post_entries(
    engine: sa.Engine,
    entries: Sequence[JournalEntry | dict],
    *,
    batch_id: str | None = None,
    now_us: int | None = None,
    actor: str | None = None,
    window: EntryWindow = EntryWindow(),
) -> PostResult:
    """Post a submission all or nothing; re-posting an identical entry is a counted no-op.

    Raises JournalValidationError, UnknownAccountError, ClosedDayError or JournalConflictError
    (each with ``.errors`` addressed like ``entries[3].lines[0].currency``); nothing is written
    then. ``batch_id`` names a staged batch the entries belong to (see ``batches``).
    """
    if isinstance(entries, (dict, JournalEntry)):
        raise TypeError("post_entries takes a sequence of entries; wrap a single entry in a list")
    for attempt in range(2):
        try:
            with begin_write(engine) as conn:
                return post_entries_in(conn, entries, batch_id=batch_id, now_us=now_us, actor=actor,
                                       window=window)
        except sa.exc.IntegrityError:
            # A concurrent writer posted one of these journal_ids between our check and insert;
            # the second pass sees it and reports "already present" or a conflict.
            if attempt:
                raise
    raise AssertionError("unreachable")
