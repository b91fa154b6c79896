"""The posting core, batches and accounts against real SQLite files and the real PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from finance_pipeline.domain.canonical import MAX_SAFE_INT
from finance_pipeline.domain.journal import JournalValidationError, parse_entry
from finance_pipeline.ledger import (
    AccountExistsError,
    AccountValidationError,
    BatchConflictError,
    BatchError,
    ClosedDayError,
    JournalConflictError,
    UnknownAccountError,
)
from finance_pipeline.ledger import posting
from finance_pipeline.ledger.accounts import create_account, get_account, list_accounts
from finance_pipeline.ledger.audit import list_events, record_event
from finance_pipeline.ledger.batches import apply_batch, batch_status, incomplete_batches, stage_batch
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.ledger.schema import journal_batches, journal_entries, journal_lines, proofs
from finance_pipeline_tests.ledger.helpers import entry, line, row_counts


def fields(exc: pytest.ExceptionInfo) -> list[str]:
    return [e.field for e in exc.value.errors]


# --- happy path ------------------------------------------------------------------------------


def test_post_writes_entry_lines_and_one_audit_event(ledger):
    body = entry("J-1", memo="order 42", provider="stripe", provider_reference="txn_1",
                 lines=[line("cash", "debit", 1000), line("fees", "debit", 30),
                        line("revenue", "credit", 1030)])
    result = post_entries(ledger, [body], now_us=123)

    assert (result.created, result.already_present, result.created_ids) == (1, 0, ("J-1",))
    with ledger.connect() as conn:
        row = conn.execute(sa.select(journal_entries)).one()
        lines = conn.execute(sa.select(journal_lines).order_by(journal_lines.c.line_no)).all()
    assert row.ts_us == 1793614500000000
    assert row.body_sha256 == parse_entry(body).body_sha256()
    assert row.posted_at_us == 123
    assert [(l.line_no, l.account_id, l.direction, l.amount_minor, l.currency.strip()) for l in lines] == [
        (0, "cash", "debit", 1000, "USD"), (1, "fees", "debit", 30, "USD"),
        (2, "revenue", "credit", 1030, "USD")]
    events = list_events(ledger, action="journal.post")
    assert len(events) == 1
    assert (events[0].actor, events[0].subject_type, events[0].subject_id) == ("alice", "journal_entry", "J-1")
    assert events[0].detail["created"] == 1


def test_multi_currency_entry_balanced_per_currency(ledger):
    body = entry("FX-1", lines=[line("cash", "debit", 1100), line("revenue", "credit", 1100),
                                line("eur_cash", "debit", 1000, "EUR"),
                                line("eur_revenue", "credit", 1000, "EUR")])
    assert post_entries(ledger, [body]).created == 1


def test_jpy_and_fraction_timestamps_round_trip(ledger):
    create_account(ledger, "jpy_cash", "Bank (JPY)", "asset", "JPY")
    create_account(ledger, "jpy_rev", "Sales (JPY)", "revenue", "JPY")
    body = entry("JPY-1", ts="2026-11-02T12:15:00.000001+02:00",
                 lines=[line("jpy_cash", "debit", 1200, "JPY"), line("jpy_rev", "credit", 1200, "JPY")])
    post_entries(ledger, [body])
    with ledger.connect() as conn:
        assert conn.execute(sa.select(journal_entries.c.ts_us)).scalar_one() == 1793614500000001


# --- every rejection -------------------------------------------------------------------------

REJECTIONS = [
    # (id, overrides, field, message fragment)
    ("unbalanced", {"lines": [line("cash", "debit", 1000), line("revenue", "credit", 999)]},
     "lines", "unbalanced in USD"),
    ("unbalanced_per_currency", {"lines": [line("cash", "debit", 1000),
                                           line("eur_revenue", "credit", 1000, "EUR")]},
     "lines", "unbalanced in EUR"),
    ("float_amount", {"lines": [line("cash", "debit", 12.5), line("revenue", "credit", 1250)]},
     "lines[0].amount_minor", "minor units"),
    ("float_integral_amount", {"lines": [line("cash", "debit", 1250.0), line("revenue", "credit", 1250)]},
     "lines[0].amount_minor", "must be an integer"),
    ("bool_amount", {"lines": [line("cash", "debit", True), line("revenue", "credit", True)]},
     "lines[0].amount_minor", "must be an integer"),
    ("negative_amount", {"lines": [line("cash", "debit", -5), line("revenue", "credit", -5)]},
     "lines[1].amount_minor", "must be > 0"),
    ("zero_amount", {"lines": [line("cash", "debit", 0), line("revenue", "credit", 0)]},
     "lines[0].amount_minor", "must be > 0"),
    ("bad_currency", {"lines": [line("cash", "debit", 5, "XYZ"), line("revenue", "credit", 5, "XYZ")]},
     "lines[0].currency", "ISO 4217"),
    ("lower_case_currency", {"lines": [line("cash", "debit", 5, "usd"), line("revenue", "credit", 5)]},
     "lines[0].currency", "in capitals"),
    ("naive_timestamp", {"ts": "2026-11-02T10:15:00"}, "ts", "YYYY-MM-DDTHH:MM:SSZ"),
    ("bad_kind", {"kind": "correction"}, "kind", "must be one of"),
    ("reversal_without_reverses", {"kind": "reversal"}, "reverses", "required for kind=reversal"),
    ("adjustment_without_reviewer", {"kind": "adjustment"}, "reviewed_by", "two-person review"),
    ("adjustment_self_reviewed", {"kind": "adjustment", "reviewed_by": "alice"}, "reviewed_by",
     "different person"),
    ("one_line", {"lines": [line("cash", "debit", 5)]}, "lines", "at least two lines"),
    ("journal_id_too_long", {"journal_id": "J" * 65}, "journal_id", "at most 64"),
    ("unknown_member", {"amount": 5}, "amount", "not a member"),
    ("amount_beyond_safe_int", {"lines": [line("cash", "debit", MAX_SAFE_INT + 1),
                                           line("revenue", "credit", MAX_SAFE_INT + 1)]},
     "lines[0].amount_minor", f"at most {MAX_SAFE_INT}"),
    ("posted_by_too_long", {"posted_by": "x" * 201}, "posted_by", "at most 200"),
]


@pytest.mark.parametrize("overrides,field,fragment",
                         [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejected_entry_names_the_field_and_writes_nothing(sqlite_ledger, overrides, field, fragment):
    # These rules need no database; test_all_rejections_at_once runs them on both backends.
    ledger = sqlite_ledger
    post_entries(ledger, [entry("J-ok")])
    before = row_counts(ledger)
    good, bad = entry("J-ok-2"), entry("J-bad")
    bad.update(overrides)

    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [good, bad])

    assert f"entries[1].{field}" in fields(exc), exc.value.errors
    assert fragment in str(exc.value)
    # The valid entry of the same submission was not written either.
    assert row_counts(ledger) == before


def test_all_rejections_at_once_write_nothing(ledger):
    post_entries(ledger, [entry("J-ok")])
    before = row_counts(ledger)
    submission = [entry("J-ok-2")]
    for i, (_, overrides, _, _) in enumerate(REJECTIONS):
        bad = entry(f"J-bad-{i}")
        bad.update(overrides)
        submission.append(bad)
    submission.append(entry("J-unknown", lines=[line("cash", "debit", 5), line("ghost", "credit", 5)]))

    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, submission)

    found = fields(exc)
    for i, (_, _, field, _) in enumerate(REJECTIONS, start=1):
        assert f"entries[{i}].{field}" in found
    assert f"entries[{len(REJECTIONS) + 1}].lines[1].account_id" in found
    assert row_counts(ledger) == before


def test_unknown_account_says_how_to_create_it(ledger):
    before = row_counts(ledger)
    with pytest.raises(UnknownAccountError) as exc:
        post_entries(ledger, [entry(lines=[line("cash", "debit", 5), line("acct_missing", "credit", 5)])])
    assert fields(exc) == ["entries[0].lines[1].account_id"]
    assert "'acct_missing' does not exist" in str(exc.value)
    assert "finance-pipeline accounts create acct_missing" in str(exc.value)
    assert row_counts(ledger) == before


def test_account_currency_must_match_line_currency(ledger):
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [entry(lines=[line("cash", "debit", 5, "EUR"),
                                           line("eur_revenue", "credit", 5, "EUR")])])
    assert fields(exc) == ["entries[0].lines[0].currency"]
    assert "kept in USD, not EUR" in str(exc.value)


def test_errors_of_every_entry_are_reported_together_in_order(ledger):
    before = row_counts(ledger)
    submission = [
        entry("A"),
        entry("B", lines=[line("cash", "debit", 5, "usd"), line("revenue", "credit", 5)]),
        entry("C", lines=[line("cash", "debit", 5), line("nope", "credit", 5)]),
        entry("D", kind="reversal", reverses="never-posted"),
    ]
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, submission)
    assert fields(exc) == ["entries[1].lines[0].currency", "entries[2].lines[1].account_id",
                           "entries[3].reverses"]
    assert row_counts(ledger) == before


def test_unknown_batch_id_in_the_body_is_rejected(ledger):
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [entry(batch_id="B-missing")])
    assert fields(exc) == ["entries[0].batch_id"]
    assert "journal import FILE --batch-id B-missing" in str(exc.value)


def test_not_a_list_is_a_type_error(sqlite_ledger):
    with pytest.raises(TypeError):
        post_entries(sqlite_ledger, entry())


# --- idempotency -----------------------------------------------------------------------------


def test_same_body_again_is_a_counted_no_op(ledger):
    post_entries(ledger, [entry("J-1")])
    before = row_counts(ledger)
    # The same instant written with another offset is the same body.
    result = post_entries(ledger, [entry("J-1", ts="2026-11-02T11:15:00+01:00")])
    assert (result.created, result.already_present, result.present_ids) == (0, 1, ("J-1",))
    after = row_counts(ledger)
    assert after["journal_entries"] == before["journal_entries"]
    assert after["journal_lines"] == before["journal_lines"]
    # Still one audit event per submission.
    assert after["audit_events"] == before["audit_events"] + 1


def test_different_body_under_a_posted_journal_id_conflicts_and_writes_nothing(ledger):
    post_entries(ledger, [entry("J-1", amount=1250)])
    before = row_counts(ledger)
    with pytest.raises(JournalConflictError) as exc:
        post_entries(ledger, [entry("J-2"), entry("J-1", amount=1251)])
    assert fields(exc) == ["entries[1].journal_id"]
    assert "'J-1' is already posted with a different body" in str(exc.value)
    assert row_counts(ledger) == before


def test_repeated_journal_id_inside_one_submission(ledger):
    with pytest.raises(JournalConflictError) as exc:
        post_entries(ledger, [entry("J-1"), entry("J-1", memo="other")])
    assert fields(exc) == ["entries[1].journal_id"]
    assert row_counts(ledger)["journal_entries"] == 0

    result = post_entries(ledger, [entry("J-1"), entry("J-1")])
    assert (result.created, result.already_present) == (1, 1)


@pytest.mark.postgres
def test_concurrent_writer_of_the_same_entry_is_seen_on_retry(pg_url, monkeypatch):
    # Another writer commits the same journal_id between our checks and our insert.
    engine = _pg_ledger(pg_url)
    other = create_ledger_engine(pg_url)
    real_plan = posting.plan_entries
    calls = []

    def plan_then_race(conn, entries, **kw):
        plan = real_plan(conn, entries, **kw)
        if not calls:
            calls.append(1)
            post_entries(other, [entry("J-race")])
        return plan

    monkeypatch.setattr(posting, "plan_entries", plan_then_race)
    result = post_entries(engine, [entry("J-race")])
    assert (result.created, result.already_present) == (0, 1)
    assert row_counts(engine)["journal_entries"] == 1
    other.dispose()
    engine.dispose()


def _pg_ledger(url):
    from finance_pipeline_tests.ledger.helpers import make_ledger

    return make_ledger(url)


# --- reversals -------------------------------------------------------------------------------


def test_reversal_of_a_posted_entry(ledger):
    post_entries(ledger, [entry("J-1")])
    rev = entry("J-1-rev", kind="reversal", reverses="J-1",
                lines=[line("revenue", "debit", 1250), line("cash", "credit", 1250)])
    assert post_entries(ledger, [rev]).created == 1


def test_reversal_before_its_target_in_one_submission_is_inserted_after_it(ledger):
    rev = entry("J-1-rev", kind="reversal", reverses="J-1")
    assert post_entries(ledger, [rev, entry("J-1")]).created == 2


def test_reversal_chain_in_reverse_order_and_cycles(ledger):
    chain = [entry("R-3", kind="reversal", reverses="R-2"), entry("R-2", kind="reversal", reverses="R-1"),
             entry("R-1")]
    assert post_entries(ledger, chain).created_ids == ("R-1", "R-2", "R-3")
    before = row_counts(ledger)
    cycle = [entry("C-1", kind="reversal", reverses="C-2"), entry("C-2", kind="reversal", reverses="C-1")]
    with pytest.raises(JournalValidationError, match="reversal cycle"):
        post_entries(ledger, cycle)
    assert row_counts(ledger) == before


def test_self_reversal_is_rejected_and_reviewed_adjustment_accepted(sqlite_ledger):
    with pytest.raises(JournalValidationError) as exc:
        post_entries(sqlite_ledger, [entry("J-1", kind="reversal", reverses="J-1")])
    assert "cannot reverse itself" in str(exc.value)
    adjustment = entry("ADJ-1", kind="adjustment", reviewed_by="bob")
    assert post_entries(sqlite_ledger, [adjustment]).created == 1


# --- immutability ----------------------------------------------------------------------------

TAMPERING = [
    "UPDATE journal_entries SET memo = 'changed'",
    "DELETE FROM journal_entries",
    "UPDATE journal_lines SET amount_minor = 1",
    "DELETE FROM journal_lines",
    "UPDATE audit_events SET actor = 'mallory'",
    "DELETE FROM audit_events",
]


def test_posted_rows_cannot_be_changed_with_raw_sql(ledger):
    post_entries(ledger, [entry("J-1")])
    before = _snapshot(ledger)
    for sql in TAMPERING:
        with pytest.raises(sa.exc.DatabaseError) as exc:
            with ledger.begin() as conn:
                conn.execute(sa.text(sql))
        assert "append-only" in str(exc.value), sql
    assert _snapshot(ledger) == before
    # Other tables stay writable (the triggers are targeted, not a read-only database).
    with ledger.begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET name = 'Bank' WHERE account_id = 'cash'"))


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(pg_url):
    engine = _pg_ledger(pg_url)
    post_entries(engine, [entry("J-1")])
    for table in ("journal_lines", "journal_entries", "audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(sa.text(f"TRUNCATE {table} CASCADE"))
    assert row_counts(engine)["journal_lines"] == 2
    engine.dispose()


def _snapshot(engine):
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))))
                for t in ("journal_entries", "journal_lines", "audit_events")}


# --- closed days -----------------------------------------------------------------------------


def _publish(engine, day: str, proof_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(proofs.insert().values(
            proof_id=proof_id, day=day, merkle_root="0" * 64, statement_sha256="1" * 64,
            location=f"proofs/{day}/{proof_id}/", published_at_us=0, format="finance-proof/1"))


def test_closed_day_refuses_new_entries_and_says_what_to_do(ledger):
    post_entries(ledger, [entry("J-1")])
    _publish(ledger, "2026-11-02", "proof-1102")
    before = row_counts(ledger)

    with pytest.raises(ClosedDayError) as exc:
        post_entries(ledger, [entry("J-late", ts="2026-11-02T23:59:59.999999Z")])
    assert fields(exc) == ["entries[0].ts"]
    assert "day 2026-11-02 is closed by proof 'proof-1102'" in str(exc.value)
    assert "open day" in str(exc.value)
    assert row_counts(ledger) == before

    # An identical re-post of an entry already in the closed day stays a harmless no-op ...
    assert post_entries(ledger, [entry("J-1")]).already_present == 1
    # ... and the correction dated in an open day goes through.
    fix = entry("J-fix", ts="2026-11-03T00:00:00Z", kind="adjustment", reviewed_by="bob")
    assert post_entries(ledger, [fix]).created == 1


# --- batches ---------------------------------------------------------------------------------


def test_batch_partially_applied_rolls_forward(ledger):
    entries = [entry(f"B-{i}", amount=100 + i) for i in range(4)]
    assert stage_batch(ledger, "batch-1", entries, "day.jsonl", apply=False) is None
    status = batch_status(ledger, "batch-1")
    assert (status.status, status.expected, status.applied, status.complete) == ("staged", 4, 0, False)

    # Simulate an apply interrupted after two entries.
    post_entries(ledger, entries[:2], batch_id="batch-1")
    assert batch_status(ledger, "batch-1").applied == 2
    assert [s.batch_id for s in incomplete_batches(ledger)] == ["batch-1"]

    result = apply_batch(ledger, "batch-1")
    assert (result.created, result.already_present) == (2, 2)
    status = batch_status(ledger, "batch-1")
    assert (status.status, status.applied, status.complete) == ("applied", 4, True)
    assert incomplete_batches(ledger) == []
    # The batch id became part of every entry's body.
    with ledger.connect() as conn:
        assert set(conn.execute(sa.select(journal_entries.c.batch_id)).scalars()) == {"batch-1"}

    again = apply_batch(ledger, "batch-1")
    assert (again.created, again.already_present) == (0, 4)


def test_stage_batch_applies_and_restaging_the_same_payload_is_a_no_op(ledger):
    entries = [entry("B-1"), entry("B-2")]
    assert stage_batch(ledger, "batch-1", entries, "a.jsonl").created == 2
    before = row_counts(ledger)
    result = stage_batch(ledger, "batch-1", entries, "a.jsonl")
    assert (result.created, result.already_present) == (0, 2)
    assert row_counts(ledger)["journal_batches"] == before["journal_batches"]


def test_invalid_batch_writes_nothing_not_even_the_batch(ledger):
    before = row_counts(ledger)
    bad = [entry("B-1"), entry("B-2", lines=[line("cash", "debit", 1), line("revenue", "credit", 2)])]
    with pytest.raises(JournalValidationError) as exc:
        stage_batch(ledger, "batch-1", bad, "bad.jsonl")
    assert fields(exc) == ["entries[1].lines"]
    assert row_counts(ledger) == before


def test_batch_rejects_repeated_ids_and_foreign_batch_ids(ledger):
    with pytest.raises(BatchError) as exc:
        stage_batch(ledger, "batch-1", [entry("B-1"), entry("B-1")])
    assert fields(exc) == ["entries[1].journal_id"]
    with pytest.raises(JournalValidationError) as exc:
        stage_batch(ledger, "batch-1", [entry("B-1", batch_id="batch-2")])
    assert "posted in batch 'batch-1'" in str(exc.value)
    assert row_counts(ledger)["journal_batches"] == 0


def test_restaging_a_batch_id_with_another_payload_conflicts(ledger):
    stage_batch(ledger, "batch-1", [entry("B-1")])
    before = row_counts(ledger)
    with pytest.raises(BatchConflictError, match="different payload"):
        stage_batch(ledger, "batch-1", [entry("B-1"), entry("B-2")])
    assert row_counts(ledger) == before


def test_apply_refuses_unknown_batches_and_unreadable_payloads(ledger):
    with pytest.raises(BatchError, match="no batch 'nope' is staged"):
        apply_batch(ledger, "nope")
    with ledger.begin() as conn:
        conn.execute(journal_batches.insert().values(
            batch_id="broken", expected_entries=1, staged_payload="[{not json", status="staged",
            created_at_us=0, source="x"))
        conn.execute(journal_batches.insert().values(
            batch_id="short", expected_entries=3, staged_payload=json.dumps([entry("S-1")]),
            status="staged", created_at_us=0, source="x"))
    before = row_counts(ledger)
    with pytest.raises(BatchError, match="not valid JSON") as exc:
        apply_batch(ledger, "broken")
    assert "re-import" in str(exc.value)
    with pytest.raises(BatchError, match="holds 1 entries but 3 are expected"):
        apply_batch(ledger, "short")
    assert row_counts(ledger) == before
    assert batch_status(ledger, "broken").status == "staged"


# --- accounts and audit ----------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,field", [
    ({"type": "assets"}, "type"),
    ({"currency": "usd"}, "currency"),
    ({"currency": "XXY"}, "currency"),
    ({"role": "clearing"}, "role"),
    ({"account_id": "has space"}, "account_id"),
    ({"account_id": "a" * 65}, "account_id"),
    ({"name": " "}, "name"),
])
def test_create_account_rejects_bad_attributes(sqlite_ledger, kwargs, field):
    ledger = sqlite_ledger
    args = {"account_id": "new", "name": "New", "type": "asset", "currency": "USD", "role": None}
    args.update(kwargs)
    before = row_counts(ledger)
    with pytest.raises(AccountValidationError) as exc:
        create_account(ledger, **args)
    assert fields(exc) == [field]
    assert row_counts(ledger) == before


def test_create_account_is_idempotent_but_never_changes_one(ledger):
    again = create_account(ledger, "cash", "Bank (USD)", "asset", "USD", "bank")
    assert again == get_account(ledger, "cash")
    with pytest.raises(AccountExistsError, match="already exists as asset USD"):
        create_account(ledger, "cash", "Bank (USD)", "asset", "EUR", "bank")
    assert [a.account_id for a in list_accounts(ledger)] == ["cash", "eur_cash", "eur_revenue", "fees", "jpy_cash",
                                                             "jpy_revenue", "revenue"]
    assert [a.account_id for a in list_accounts(ledger, role="bank")] == ["cash"]
    assert get_account(ledger, "nope") is None


def test_record_event_rolls_back_with_its_transaction(ledger):
    before = row_counts(ledger)["audit_events"]
    with pytest.raises(RuntimeError):
        with ledger.begin() as conn:
            record_event(conn, "bob", "test.event", "thing", "t-1", {"n": 1})
            raise RuntimeError("abort")
    assert row_counts(ledger)["audit_events"] == before
    with ledger.begin() as conn:
        record_event(conn, "bob", "test.event", "thing", "t-1", {"n": 1, "b": None})
    [event] = list_events(ledger, subject_type="thing", subject_id="t-1")
    assert (event.actor, event.action, event.detail) == ("bob", "test.event", {"b": None, "n": 1})


def test_an_entry_that_would_overflow_its_days_signed_total_is_refused(ledger):
    """Each line may carry up to 2^53-1, but the day's per-currency totals are signed too: an
    entry pushing one past 2^53-1 would make the day unpublishable for ever."""
    half = MAX_SAFE_INT // 2
    post_entries(ledger, [entry("J-big-1", amount=half)])
    before = row_counts(ledger)
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [entry("J-big-2", amount=half + 2)])
    assert fields(exc) == ["entries[0].lines"]
    assert "past 9007199254740991 (2^53-1)" in str(exc.value) and "2026-11-02" in str(exc.value)
    assert row_counts(ledger) == before
    # Up to the limit exactly is fine, and the same amount in another day has room.
    assert post_entries(ledger, [entry("J-big-3", amount=MAX_SAFE_INT - half)]).created == 1
    assert post_entries(ledger, [entry("J-big-4", amount=half + 2, ts="2026-11-03T10:00:00Z")]).created == 1
    # Within one submission too: the second entry is the one refused, nothing is written.
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [entry("J-big-5", amount=half, ts="2026-11-04T10:00:00Z"),
                              entry("J-big-6", amount=half + 2, ts="2026-11-04T11:00:00Z")])
    assert fields(exc) == ["entries[1].lines"]


@pytest.mark.parametrize("ts, fragment", [
    ("2020-01-01T00:00:00Z", "is before the ledger's first day 2026-11-01 (FP_PARTITIONS_START)"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z is before the ledger's first day"),
    ("2026-10-31T23:59:59.999999Z", "is before the ledger's first day"),
    ("2099-01-01T00:00:00Z", "is more than 3600 s in the future (FP_ENTRY_FUTURE_SKEW_S)"),
])
def test_entries_no_proof_could_cover_are_refused(ledger, ts, fragment):
    # The embedded default window: FP_PARTITIONS_START 2026-11-01, FP_ENTRY_FUTURE_SKEW_S 3600.
    before = row_counts(ledger)
    with pytest.raises(JournalValidationError) as exc:
        post_entries(ledger, [entry("J-when", ts=ts)])
    assert fields(exc) == ["entries[0].ts"]
    assert fragment in str(exc.value)
    assert row_counts(ledger) == before
    # The first instant of the first day is fine; so is "now".
    assert post_entries(ledger, [entry("J-first", ts="2026-11-01T00:00:00Z")]).created == 1
    from finance_pipeline.domain.timeutil import format_ts_us
    from finance_pipeline.ledger.audit import now_us

    assert post_entries(ledger, [entry("J-now", ts=format_ts_us(now_us()))]).created == 1


def test_the_future_skew_is_a_setting(sqlite_ledger):
    from datetime import datetime, timedelta, timezone

    from finance_pipeline.ledger.posting import EntryWindow
    from finance_pipeline.settings import Settings

    soon = (datetime.now(timezone.utc) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(JournalValidationError, match="in the future"):
        post_entries(sqlite_ledger, [entry("J-soon", ts=soon)])
    window = EntryWindow.from_settings(Settings.from_environ({"FP_ENTRY_FUTURE_SKEW_S": str(3 * 3600)}))
    assert post_entries(sqlite_ledger, [entry("J-soon", ts=soon)], window=window).created == 1


def test_the_first_day_is_a_setting(sqlite_ledger):
    from finance_pipeline.ledger.posting import EntryWindow
    from finance_pipeline.settings import Settings

    window = EntryWindow.from_settings(Settings.from_environ({"FP_PARTITIONS_START": "2026-11-03"}))
    with pytest.raises(JournalValidationError, match="before the ledger's first day 2026-11-03"):
        post_entries(sqlite_ledger, [entry("J-early", ts="2026-11-02T10:00:00Z")], window=window)
    assert post_entries(sqlite_ledger, [entry("J-early", ts="2026-11-02T10:00:00Z")]).created == 1
