"""The whole daily graph through Dagster: gates block, corrections unblock, proofs publish."""

import json

import dagster as dg
import pytest

from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.demo.corrections import corrections
from finance_pipeline.export import registry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.proof.keyring import Keyring
from finance_pipeline.proof.package import Package
from finance_pipeline.proof.verify import verify_package


def _run(world, day, instance):
    return materialize_day(world.definitions(), day, instance)


def test_unresolved_discrepancies_block_the_proof_but_the_report_materializes(sqlite_world):
    inst = dg.DagsterInstance.ephemeral()
    run = _run(sqlite_world, "2026-11-01", inst)
    assert not run.failed
    assert run.checks == {"ledger_suite": True, "provider_suites": True, "parity": False}
    assert "proof_package" in run.skipped
    report = json.loads((sqlite_world.storage / "reconciliation_report" / "2026-11-01.json").read_bytes())
    assert report["summary"]["discrepancies"]["LEDGER_MISSING"] == 1
    engine = create_ledger_engine(sqlite_world.database_url)
    assert registry.published_for_day(engine, "2026-11-01") == []

    # The operator posts the reviewed corrections; the re-run publishes.
    for fix in corrections(sqlite_world.seeded.scenario):
        if fix.injection.day == "2026-11-01":
            post_entries(engine, fix.entries, actor="ops:ana")
    run = _run(sqlite_world, "2026-11-01", inst)
    assert run.gates_passed and not run.failed, run
    meta = run.metadata["proof_package"]
    assert meta["proofId"].startswith("fp1-20261101-")
    [record] = registry.published_for_day(engine, "2026-11-01")
    pkg = Package.load_dir(record.location)
    keyring = Keyring.load(sqlite_world.storage.parent / "var" / "keys" / "keyring.json")
    assert verify_package(pkg, keyring).ok


def test_an_unbalanced_journal_fails_the_ledger_gate(sqlite_world):
    import sqlalchemy as sa

    engine = create_ledger_engine(sqlite_world.database_url)
    # Bypass the posting core, as a broken writer or a manual fix in the database would.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER IF EXISTS journal_lines_no_update"))
        conn.execute(sa.text(
            "INSERT INTO journal_entries (journal_id, ts_us, kind, memo, batch_id, provider, provider_reference,"
            " reverses, posted_by, reviewed_by, body_sha256, posted_at_us) VALUES"
            " ('je-broken', 1793577600000000 + 36000000000, 'standard', 'x', NULL, NULL, NULL, NULL, 'x', NULL,"
            " 'x', 0)"))
        conn.execute(sa.text(
            "INSERT INTO journal_lines (journal_id, line_no, account_id, direction, amount_minor, currency)"
            " VALUES ('je-broken', 0, 'bank_usd', 'debit', 500, 'USD'),"
            " ('je-broken', 1, 'revenue_usd', 'credit', 499, 'USD')"))
    run = _run(sqlite_world, "2026-11-02", dg.DagsterInstance.ephemeral())
    assert run.checks["ledger_suite"] is False
    assert "proof_package" in run.skipped


def test_days_chain_and_rerun_is_a_no_op(clean_world):
    inst = dg.DagsterInstance.ephemeral()
    first = _run(clean_world, "2026-11-01", inst)
    second = _run(clean_world, "2026-11-02", inst)
    assert first.metadata["proof_package"]["created"] and second.metadata["proof_package"]["created"]
    engine = create_ledger_engine(clean_world.database_url)
    [r1] = registry.published_for_day(engine, "2026-11-01")
    [r2] = registry.published_for_day(engine, "2026-11-02")
    st2 = Package.load_dir(r2.location).statement()
    assert st2["previous"] == {"proof_id": r1.proof_id, "statement_sha256": r1.statement_sha256}
    again = _run(clean_world, "2026-11-02", inst)
    assert again.metadata["proof_package"]["created"] is False
    assert again.metadata["proof_package"]["proofId"] == r2.proof_id


def test_a_gap_in_the_chain_is_refused(clean_world):
    inst = dg.DagsterInstance.ephemeral()
    _run(clean_world, "2026-11-01", inst)
    run = _run(clean_world, "2026-11-03", inst)
    assert run.failed == ["proof_package"]
    assert "2026-11-02 has no published proof" in run.errors["proof_package"]


def test_publishing_closes_the_day_and_a_changed_ledger_is_refused_loudly(clean_world):
    import sqlalchemy as sa

    from finance_pipeline.ledger.audit import list_events
    from finance_pipeline.ledger.errors import ClosedDayError

    inst = dg.DagsterInstance.ephemeral()
    run = _run(clean_world, "2026-11-01", inst)
    engine = create_ledger_engine(clean_world.database_url)
    late = {
        "journal_id": "late-1", "ts": "2026-11-01T12:00:00Z", "kind": "standard", "memo": "late",
        "posted_by": "ops:ana",
        "lines": [{"account_id": "bank_usd", "direction": "debit", "amount_minor": 1, "currency": "USD"},
                  {"account_id": "revenue_usd", "direction": "credit", "amount_minor": 1, "currency": "USD"}],
    }
    with pytest.raises(ClosedDayError):
        post_entries(engine, [late])
    # Someone edits the database directly: the next export of that day must refuse, loudly.
    with engine.begin() as conn:
        for trig in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type='trigger'")).scalars().all():
            conn.execute(sa.text(f"DROP TRIGGER {trig}"))
        conn.execute(sa.text("UPDATE journal_entries SET memo = 'tampered' WHERE journal_id = ("
                             "SELECT journal_id FROM journal_entries WHERE ts_us >= 1793491200000000 "
                             "AND ts_us < 1793577600000000 LIMIT 1)"))
    again = _run(clean_world, "2026-11-01", inst)
    assert again.failed == ["proof_package"]
    assert "ledger changed since proof" in again.errors["proof_package"]
    assert run.metadata["proof_package"]["proofId"] in again.errors["proof_package"]
    events = [e for e in list_events(engine) if e.action == "proof.conflict"]
    assert len(events) == 1
