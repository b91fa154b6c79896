"""Publication that no selection can bypass: the proof step checks the gate verdict for exactly
the inputs it signs, and the chain starts where the settings say, not where publishing did."""

import dagster as dg
import pandas as pd
import pytest

from finance_pipeline.cli.export import GATE_ASSETS
from finance_pipeline.ledger.extract import DTYPES
from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.export import registry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.proof.package import Package
from finance_pipeline.quality import verdicts

DAY = "2026-11-01"


def _entry(journal_id: str, ts: str, amount: int = 100) -> dict:
    return {
        "journal_id": journal_id, "ts": ts, "kind": "standard", "memo": "test", "posted_by": "ops:ana",
        "lines": [{"account_id": "bank_usd", "direction": "debit", "amount_minor": amount, "currency": "USD"},
                  {"account_id": "revenue_usd", "direction": "credit", "amount_minor": amount, "currency": "USD"}],
    }


def test_proof_package_alone_after_a_blocked_run_publishes_nothing_and_the_day_stays_open(sqlite_world):
    inst = dg.DagsterInstance.ephemeral()
    defs = sqlite_world.definitions()
    blocked = materialize_day(defs, DAY, inst)
    assert blocked.checks["parity"] is False and "proof_package" in blocked.skipped

    alone = materialize_day(defs, DAY, inst, assets=["proof_package"])
    assert alone.failed == ["proof_package"]
    message = alone.errors["proof_package"]
    assert f"{DAY} is blocked: the gates parity failed" in message
    assert "LEDGER_MISSING" in message  # the failed expectations are listed
    assert f"finance-pipeline check {DAY} {DAY}" in message
    assert "proof_package" not in alone.metadata
    engine = create_ledger_engine(sqlite_world.database_url)
    try:
        assert registry.published_for_day(engine, DAY) == []
        # The day is still open: the runbook's corrections are accepted.
        post_entries(engine, [_entry("still-open-1", f"{DAY}T12:00:00Z")])
    finally:
        engine.dispose()
    published = sqlite_world.storage.parent / "published"
    assert not published.exists() or not any(p.is_file() for p in published.rglob("*"))


def test_gates_that_passed_in_an_earlier_run_let_proof_package_alone_publish(clean_world):
    inst = dg.DagsterInstance.ephemeral()
    defs = clean_world.definitions()
    gates = materialize_day(defs, DAY, inst, assets=GATE_ASSETS)
    assert gates.gates_passed and not gates.failed and "proof_package" not in gates.metadata
    alone = materialize_day(defs, DAY, inst, assets=["proof_package"])
    assert not alone.failed, alone.errors
    meta = alone.metadata["proof_package"]
    assert meta["publication"] == "published" and meta["created"] is True
    assert meta["previous"] == "none (chain start)"
    assert meta["location"].startswith("/")  # absolute, whatever the reader's working directory
    engine = create_ledger_engine(clean_world.database_url)
    try:
        assert meta["gate_verdict"] == verdicts.latest(engine, DAY).verdict_id
        [record] = registry.published_for_day(engine, DAY)
        assert record.proof_id == meta["proofId"]
    finally:
        engine.dispose()

    # A re-run of the published day is marked as such and signs nothing.
    again = materialize_day(defs, DAY, inst)
    assert again.metadata["proof_package"]["publication"] == "unchanged"
    assert again.metadata["proof_package"]["proofId"] == meta["proofId"]


def test_a_verdict_covers_only_the_inputs_it_was_given(clean_world, monkeypatch):
    inst = dg.DagsterInstance.ephemeral()
    defs = clean_world.definitions()
    assert materialize_day(defs, DAY, inst, assets=GATE_ASSETS).gates_passed
    engine = create_ledger_engine(clean_world.database_url)
    try:
        # The ledger moves on and only the extract is materialized again: the gates never saw it.
        post_entries(engine, [_entry("late-1", f"{DAY}T13:00:00Z")])
        assert not materialize_day(defs, DAY, inst, assets=["ledger_extract"]).failed
        alone = materialize_day(defs, DAY, inst, assets=["proof_package"])
        assert alone.failed == ["proof_package"]
        assert "the gates last ran on other inputs (ledger_extract changed" in alone.errors["proof_package"]
        assert registry.published_for_day(engine, DAY) == []

        # A changed gate suite is another gate: the old verdict vouches for nothing.
        assert materialize_day(defs, DAY, inst, assets=GATE_ASSETS).gates_passed
        from finance_pipeline.quality import suites

        original = suites.SUITE_VERSIONS["reconciliation_parity"]
        monkeypatch.setitem(suites.SUITE_VERSIONS, "reconciliation_parity", "999")
        newer = materialize_day(defs, DAY, inst, assets=["proof_package"])
        assert newer.failed == ["proof_package"]
        assert "reconciliation settings changed" in newer.errors["proof_package"]
        monkeypatch.setitem(suites.SUITE_VERSIONS, "reconciliation_parity", original)

        # Looser settings than the gates ran with are other inputs too.
        assert materialize_day(defs, DAY, inst, assets=GATE_ASSETS).gates_passed
        monkeypatch.setenv("RECON_TIME_TOLERANCE_S", "7200")
        looser = materialize_day(clean_world.definitions(), DAY, inst, assets=["proof_package"])
        assert looser.failed == ["proof_package"]
        assert "reconciliation settings changed" in looser.errors["proof_package"]
        assert registry.published_for_day(engine, DAY) == []
    finally:
        engine.dispose()


def test_no_verdict_at_all_names_the_command_that_runs_the_gates(clean_world):
    inst = dg.DagsterInstance.ephemeral()
    defs = clean_world.definitions()
    # Inputs materialized without the reconciliation step: there is no verdict for the day.
    for asset in ("ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements"):
        assert not materialize_day(defs, DAY, inst, assets=[asset]).failed
    # A report from elsewhere: written straight into storage, never gated.
    (clean_world.storage / "reconciliation_report").mkdir(parents=True, exist_ok=True)
    (clean_world.storage / "reconciliation_report" / f"{DAY}.json").write_text("{}")
    (clean_world.storage / "ledger_counterparts").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({c: pd.Series([], dtype=t) for c, t in DTYPES.items()}).to_parquet(
        clean_world.storage / "ledger_counterparts" / f"{DAY}.parquet")
    alone = materialize_day(defs, DAY, inst, assets=["proof_package"])
    assert alone.failed == ["proof_package"]
    assert f"no gate results for these inputs" in alone.errors["proof_package"]
    assert f"finance-pipeline check {DAY} {DAY}" in alone.errors["proof_package"]


def test_the_chain_starts_at_the_configured_day_not_where_publishing_happened(clean_world, monkeypatch):
    inst = dg.DagsterInstance.ephemeral()
    # Default chain start is the first partition: publishing day 2 first is a gap, not a new chain.
    gap = materialize_day(clean_world.definitions(), "2026-11-02", inst)
    assert gap.failed == ["proof_package"]
    assert "2026-11-01 has no published proof" in gap.errors["proof_package"]

    monkeypatch.setenv("FP_CHAIN_START", "2026-11-02")
    defs = clean_world.definitions()
    first = materialize_day(defs, "2026-11-02", inst)
    assert not first.failed, first.errors
    engine = create_ledger_engine(clean_world.database_url)
    try:
        [record] = registry.published_for_day(engine, "2026-11-02")
        assert Package.load_dir(record.location).statement()["previous"] is None
    finally:
        engine.dispose()
    before = materialize_day(defs, DAY, inst)
    assert before.failed == ["proof_package"]
    assert "before the proof chain's first day 2026-11-02" in before.errors["proof_package"]


def test_the_chain_is_in_the_asset_graph(clean_world, monkeypatch):
    defs = clean_world.definitions()
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("proof_package")
    assert key in graph.get(key).parent_keys
    mapping = graph.get_partition_mapping(key, key)
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-1, -1)

    monkeypatch.setenv("FP_CHAIN_START", "2026-10-31")
    with pytest.raises(ValueError, match="FP_CHAIN_START 2026-10-31 is before the first partition"):
        clean_world.definitions()
    monkeypatch.setenv("FP_CHAIN_START", "1/11/2026")
    with pytest.raises(ValueError, match="FP_CHAIN_START must be a day"):
        clean_world.definitions()


def test_the_days_extract_shows_entries_waiting_for_review(clean_world):
    from finance_pipeline.ledger import reviews
    from finance_pipeline.ledger.audit import now_us

    engine = create_ledger_engine(clean_world.database_url)
    try:
        body = {k: v for k, v in _entry("wait-1", f"{DAY}T15:00:00Z").items() if k != "posted_by"}
        body["kind"] = "adjustment"
        reviews.submit(engine, body, submitter="ops:ana", now_us=now_us())
    finally:
        engine.dispose()
    run = materialize_day(clean_world.definitions(), DAY, dg.DagsterInstance.ephemeral(), assets=["ledger_extract"])
    meta = run.metadata["ledger_extract"]
    assert meta["pending_reviews"] == 1
    assert "`wait-1` (adjustment) by ops:ana" in meta["pending_review_entries"]
