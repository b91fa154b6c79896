"""Imbalance incidents on real SQLite and PostgreSQL ledgers."""

from __future__ import annotations

import sqlalchemy as sa

from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.ledger.batches import apply_batch, stage_batch
from finance_pipeline.ledger.schema import journal_entries, journal_lines
from finance_pipeline.oncall.imbalance import LEDGER_IMBALANCE, PARTIAL_BATCH, find_incidents
from finance_pipeline_tests.ledger.helpers import entry, line
from finance_pipeline_tests.oncall.helpers import make_partial_batch

STAGED = parse_ts_us("2026-11-03T08:00:00Z")
LATER = STAGED + 3600 * 10**6  # an hour after staging: well past the 15-minute grace


def _batch_entries() -> list[dict]:
    return [
        entry("B-1", 1000, ts="2026-11-02T09:00:00Z"),
        entry("B-2", 2500, ts="2026-11-02T23:59:00Z"),
        entry("B-3", 700, ts="2026-11-03T01:00:00Z",
              lines=[line("eur_cash", "debit", 700, "EUR"), line("eur_revenue", "credit", 700, "EUR")]),
    ]


def _insert_unbalanced(engine, journal_id: str, ts: str, debit: int, credit: int, batch_id=None) -> None:
    """Write past the posting core, as a manual fix in the database would."""
    with engine.begin() as conn:
        conn.execute(journal_entries.insert().values(
            journal_id=journal_id, ts_us=parse_ts_us(ts), kind="standard", memo="manual fix",
            batch_id=batch_id, provider=None, provider_reference=None, reverses=None,
            posted_by="dba", reviewed_by=None, body_sha256="0" * 64, posted_at_us=LATER))
        conn.execute(journal_lines.insert(), [
            {"journal_id": journal_id, "line_no": 0, "account_id": "cash", "direction": "debit",
             "amount_minor": debit, "currency": "USD"},
            {"journal_id": journal_id, "line_no": 1, "account_id": "revenue", "direction": "credit",
             "amount_minor": credit, "currency": "USD"},
        ])


def test_a_healthy_ledger_has_no_incident(ledger):
    stage_batch(ledger, "full", _batch_entries(), now_us=STAGED)
    assert find_incidents(ledger, now_us=LATER) == []


def test_a_partly_applied_batch_is_one_incident_with_its_days_and_missing_amounts(ledger):
    make_partial_batch(ledger, "imp-7", _batch_entries(), applied=1, staged_at_us=STAGED)
    [incident] = find_incidents(ledger, now_us=LATER)
    assert incident.kind == PARTIAL_BATCH
    assert incident.key == "partial_batch:imp-7"
    assert incident.last_batch_id == "imp-7"
    # B-1 is posted; B-2 (the 2nd) and B-3 (the 3rd) are missing.
    assert incident.days == ("2026-11-02", "2026-11-03")
    assert incident.amounts == {"USD": 2500, "EUR": 700}
    assert incident.detail["applied_entries"] == 1 and incident.detail["expected_entries"] == 3
    assert incident.detail["missing_journal_ids"] == ["B-2", "B-3"]
    assert "finance-pipeline repair-batch imp-7" in incident.summary
    # The same state gives the same key on the next look.
    assert [i.key for i in find_incidents(ledger, now_us=LATER + 10**6)] == [incident.key]

    apply_batch(ledger, "imp-7", actor="ops:ana")
    assert find_incidents(ledger, now_us=LATER) == []


def test_a_batch_still_inside_its_grace_period_is_not_an_incident(ledger):
    make_partial_batch(ledger, "running", _batch_entries(), applied=2, staged_at_us=STAGED)
    assert find_incidents(ledger, grace_s=900, now_us=STAGED + 899 * 10**6) == []
    [incident] = find_incidents(ledger, grace_s=900, now_us=STAGED + 900 * 10**6)
    assert incident.key == "partial_batch:running" and incident.days == ("2026-11-03",)


def test_a_staged_batch_never_applied_is_an_incident(ledger):
    make_partial_batch(ledger, "never", _batch_entries(), applied=0, staged_at_us=STAGED)
    [incident] = find_incidents(ledger, now_us=LATER)
    assert incident.detail["applied_entries"] == 0
    assert incident.amounts == {"USD": 3500, "EUR": 700}


def test_an_unbalanced_entry_and_the_trial_balance_are_one_incident(ledger):
    stage_batch(ledger, "good", _batch_entries(), now_us=STAGED)
    _insert_unbalanced(ledger, "bad-1", "2026-11-02T12:00:00Z", 500, 499)
    [incident] = find_incidents(ledger, now_us=LATER)
    assert incident.kind == LEDGER_IMBALANCE
    assert incident.days == ("2026-11-02",)
    assert incident.amounts == {"USD": 1}
    assert incident.detail["trial_balance"] == {"USD": 1}
    assert [e["journal_id"] for e in incident.detail["entries"]] == ["bad-1"]
    # Posted outside any batch: the last batch imported is named, for correlation.
    assert incident.last_batch_id == "good"
    key = incident.key
    assert find_incidents(ledger, now_us=LATER)[0].key == key

    # Another bad entry is a new state: a new key, so it alerts again, listing both.
    _insert_unbalanced(ledger, "bad-2", "2026-11-04T12:00:00Z", 100, 90, batch_id="good")
    [grown] = find_incidents(ledger, now_us=LATER)
    assert grown.key != key
    assert grown.days == ("2026-11-02", "2026-11-04")
    assert grown.amounts == {"USD": 11}
    assert grown.last_batch_id == "good"


def test_offsetting_unbalanced_entries_are_found_though_the_trial_balance_is_zero(ledger):
    _insert_unbalanced(ledger, "over", "2026-11-02T12:00:00Z", 510, 500)
    _insert_unbalanced(ledger, "under", "2026-11-03T12:00:00Z", 500, 510)
    [incident] = find_incidents(ledger, now_us=LATER)
    assert incident.detail["trial_balance"] == {}
    assert {e["journal_id"]: e["diff_minor"] for e in incident.detail["entries"]} == {"over": 10, "under": -10}
    assert incident.days == ("2026-11-02", "2026-11-03")


def test_the_queries_are_a_fixed_number_of_aggregates_whatever_the_ledger_size(ledger):
    many = [entry(f"E-{i}", 100 + i, ts="2026-11-02T10:00:00Z") for i in range(300)]
    stage_batch(ledger, "big", many, now_us=STAGED)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(ledger, "before_cursor_execute", count)
    try:
        assert find_incidents(ledger, now_us=LATER) == []
    finally:
        sa.event.remove(ledger, "before_cursor_execute", count)
    work = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # Partial batches, unbalanced entries, trial balance: three queries for 300 entries.
    assert len(work) == 3, work
    assert all("GROUP BY" in s.upper() for s in work)
