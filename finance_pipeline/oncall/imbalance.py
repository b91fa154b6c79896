"""Ledger imbalance incidents: unbalanced entries, a non-zero trial balance, partly applied batches.

Each query is one SQL aggregate; Python only looks at the rows that are already wrong. The
posting core refuses unbalanced entries, so an unbalanced one means something wrote past it
(a manual fix in the database, a broken writer); a partly applied batch means an import
stopped half-way. Both leave the day's reconciliation wrong until repaired.

Every incident has a stable ``key``: the same problem gives the same key tick after tick, so
a sensor alerts on it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.timeutil import day_of_us, format_ts_us, parse_ts_us
from finance_pipeline.ledger.schema import journal_batches, journal_entries, journal_lines
from finance_pipeline.oncall.notify import Alert
from finance_pipeline.settings import DEFAULT_BATCH_GRACE_S

PARTIAL_BATCH = "partial_batch"
LEDGER_IMBALANCE = "ledger_imbalance"
# Bounds what one alert carries; the totals are always complete.
_DETAIL_LIMIT = 50
_US = 1_000_000


@dataclass(frozen=True)
class Incident:
    kind: str  # partial_batch | ledger_imbalance
    key: str
    last_batch_id: str | None
    days: tuple[str, ...]  # UTC days whose reconciliation it affects
    amounts: dict[str, int]  # currency -> minor units (missing, or debits minus credits)
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "last_batch_id": self.last_batch_id,
                "days": list(self.days), "amounts": dict(self.amounts), "summary": self.summary,
                "detail": self.detail}

    def to_alert(self) -> Alert:
        detail = self.to_dict()
        detail.pop("summary")
        return Alert(kind=self.kind, key=self.key, summary=self.summary, severity="critical",
                     detail=detail)


def _signed():
    l = journal_lines.c
    return sa.case((l.direction == "debit", l.amount_minor), else_=-l.amount_minor)


def unbalanced_entries(conn: sa.Connection) -> list[dict[str, Any]]:
    """Entries whose debits and credits differ in some currency, one row per (entry, currency)."""
    l, e = journal_lines.c, journal_entries.c
    diff = sa.func.sum(_signed())
    per_entry = (
        sa.select(l.journal_id, l.currency, diff.label("diff"))
        .group_by(l.journal_id, l.currency)
        .having(diff != 0)
        .subquery()
    )
    stmt = (
        sa.select(per_entry.c.journal_id, per_entry.c.currency, per_entry.c.diff,
                  e.ts_us, e.batch_id, e.posted_at_us)
        .join_from(per_entry, journal_entries, per_entry.c.journal_id == e.journal_id)
        .order_by(e.posted_at_us, per_entry.c.journal_id, per_entry.c.currency)
    )
    return [
        {"journal_id": r.journal_id, "currency": r.currency.strip(), "diff_minor": int(r.diff),
         "ts_us": int(r.ts_us), "batch_id": r.batch_id, "posted_at_us": int(r.posted_at_us)}
        for r in conn.execute(stmt)
    ]


def trial_balance(conn: sa.Connection) -> dict[str, int]:
    """Debits minus credits over the whole ledger, per currency, where it is not zero."""
    l = journal_lines.c
    total = sa.func.sum(_signed())
    stmt = sa.select(l.currency, total).group_by(l.currency).having(total != 0).order_by(l.currency)
    return {cur.strip(): int(v) for cur, v in conn.execute(stmt)}


def partial_batches(conn: sa.Connection, cutoff_us: int) -> list[dict[str, Any]]:
    """Batches created before ``cutoff_us`` with fewer entries posted than expected, or not
    marked applied."""
    b, e = journal_batches.c, journal_entries.c
    applied = sa.func.count(e.journal_id)
    stmt = (
        sa.select(b.batch_id, b.expected_entries, b.status, b.created_at_us, b.source,
                  applied.label("applied"))
        .select_from(journal_batches.outerjoin(journal_entries, e.batch_id == b.batch_id))
        .where(b.created_at_us <= cutoff_us)
        .group_by(b.batch_id, b.expected_entries, b.status, b.created_at_us, b.source)
        .having(sa.or_(applied < b.expected_entries, b.status != "applied"))
        .order_by(b.created_at_us, b.batch_id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _last_batch_id(conn: sa.Connection) -> str | None:
    b = journal_batches.c
    return conn.execute(
        sa.select(b.batch_id).order_by(b.created_at_us.desc(), b.batch_id.desc()).limit(1)
    ).scalar()


def _fmt_amounts(amounts: dict[str, int]) -> str:
    from finance_pipeline.domain.money import Money, is_currency

    parts = [Money(v, c).format() if is_currency(c) else f"{c} {v} (minor units)"
             for c, v in sorted(amounts.items())]
    return ", ".join(parts) or "none"


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_str(value).encode()).hexdigest()[:16]


def _partial_batch_incident(conn: sa.Connection, row: dict[str, Any]) -> Incident:
    batch_id = row["batch_id"]
    payload_text = conn.execute(
        sa.select(journal_batches.c.staged_payload).where(journal_batches.c.batch_id == batch_id)
    ).scalar_one()
    posted = set(conn.execute(
        sa.select(journal_entries.c.journal_id).where(journal_entries.c.batch_id == batch_id)
    ).scalars())
    days: set[str] = set()
    amounts: dict[str, int] = {}
    missing: list[str] = []
    problem = None
    try:
        payload = json.loads(payload_text)
        if not isinstance(payload, list):
            raise ValueError("not a JSON array")
    except ValueError as exc:
        payload, problem = [], f"staged payload is unreadable ({exc}); repair will refuse it"
    # Only this batch's entries, not the ledger: at most the batch's size.
    for obj in payload:
        if not isinstance(obj, dict) or obj.get("journal_id") in posted:
            continue
        missing.append(str(obj.get("journal_id")))
        try:
            days.add(day_of_us(parse_ts_us(obj.get("ts"))).isoformat())
        except (ValueError, TypeError):
            problem = problem or f"entry {obj.get('journal_id')!r} has an unreadable ts"
        for line in obj.get("lines") or []:
            if isinstance(line, dict) and line.get("direction") == "debit" and isinstance(
                    line.get("amount_minor"), int) and isinstance(line.get("currency"), str):
                amounts[line["currency"]] = amounts.get(line["currency"], 0) + line["amount_minor"]
    expected, applied = int(row["expected_entries"]), int(row["applied"])
    day_list = tuple(sorted(days))
    summary = (f"batch {batch_id} is partly applied: {applied} of {expected} entries posted "
               f"(status {row['status']}, staged {format_ts_us(int(row['created_at_us']))}); "
               f"missing {len(missing)} entries on {', '.join(day_list) or 'no readable day'} "
               f"worth {_fmt_amounts(amounts)} in debits; repair with "
               f"`finance-pipeline repair-batch {batch_id}`")
    if problem:
        summary += f"; {problem}"
    detail = {
        "batch_id": batch_id, "status": row["status"], "expected_entries": expected,
        "applied_entries": applied, "source": row["source"],
        "created_at": format_ts_us(int(row["created_at_us"])),
        "missing_journal_ids": missing[:_DETAIL_LIMIT], "missing_total": len(missing),
    }
    if problem:
        detail["problem"] = problem
    # Stable while the batch stays incomplete, whatever else is posted meanwhile.
    return Incident(PARTIAL_BATCH, f"{PARTIAL_BATCH}:{batch_id}", batch_id, day_list,
                    amounts, summary, detail)


def _imbalance_incident(conn: sa.Connection, rows: list[dict[str, Any]],
                        totals: dict[str, int]) -> Incident:
    amounts: dict[str, int] = {}
    for r in rows:
        amounts[r["currency"]] = amounts.get(r["currency"], 0) + r["diff_minor"]
    days = tuple(sorted({day_of_us(r["ts_us"]).isoformat() for r in rows}))
    batched = [r["batch_id"] for r in rows if r["batch_id"]]
    # The batch the newest bad entry came in, else the last import before we noticed.
    last_batch = batched[-1] if batched else _last_batch_id(conn)
    ids = sorted({r["journal_id"] for r in rows})
    key = f"{LEDGER_IMBALANCE}:" + _digest(
        {"entries": [[r["journal_id"], r["currency"], r["diff_minor"]] for r in rows],
         "trial_balance": totals})
    if rows:
        summary = (f"{len(ids)} journal entr{'y' if len(ids) == 1 else 'ies'} do not balance "
                   f"(debits minus credits {_fmt_amounts(amounts)}) on {', '.join(days)}; "
                   f"trial balance off by {_fmt_amounts(totals)}; last batch {last_batch or 'none'}. "
                   "Post a reviewed adjusting entry (POST /finance/journal) and re-run the days")
    else:
        summary = (f"trial balance is off by {_fmt_amounts(totals)} but no single entry is "
                   "unbalanced: journal lines exist without their entry; investigate the database")
    detail = {
        "entries": [{"journal_id": r["journal_id"], "currency": r["currency"],
                     "diff_minor": r["diff_minor"], "ts": format_ts_us(r["ts_us"]),
                     "batch_id": r["batch_id"]} for r in rows[:_DETAIL_LIMIT]],
        "entries_total": len(ids), "trial_balance": totals,
    }
    return Incident(LEDGER_IMBALANCE, key, last_batch, days, amounts or dict(totals), summary, detail)


def find_incidents(engine: sa.Engine, *, grace_s: int = DEFAULT_BATCH_GRACE_S,
                   now_us: int | None = None) -> list[Incident]:
    """Every open imbalance incident: partly applied batches (older than ``grace_s``, so an
    import still running is not one), then at most one ledger-imbalance incident."""
    from finance_pipeline.ledger.audit import now_us as _now_us

    now = _now_us() if now_us is None else now_us
    with engine.connect() as conn:
        incidents = [_partial_batch_incident(conn, row)
                     for row in partial_batches(conn, now - grace_s * _US)]
        rows = unbalanced_entries(conn)
        totals = trial_balance(conn)
        if rows or totals:
            incidents.append(_imbalance_incident(conn, rows, totals))
    return incidents
