"""Materializing partitions through the Dagster API against real parts."""

import json

import dagster as dg
import pandas as pd
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us, parse_ts_us

DAY = "2026-11-02"
EXTRACTS = ["ledger_extract", "stripe_balance_transactions", "payout_settlements"]


def _materialize(world, selection, day=DAY, instance=None):
    d = world.definitions()
    return dg.materialize(
        d.assets, resources=d.resources, partition_key=day, selection=selection,
        instance=instance or dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )


def test_extract_assets_for_a_partition(world):
    result = _materialize(world, EXTRACTS)
    assert result.success
    sc = world.seeded.scenario
    lo, hi = day_bounds_us(DAY)
    margin = 3600 * 10**6

    lines = pd.read_parquet(world.storage / "ledger_extract" / f"{DAY}.parquet")
    expected = {e["journal_id"] for e in sc.entries if lo - margin <= parse_ts_us(e["ts"]) < hi + margin}
    assert set(lines["journal_id"]) == expected
    assert lines["amount_minor"].dtype == "int64" and lines["ts_us"].dtype == "int64"
    in_day = {e["journal_id"] for e in sc.entries if lo <= parse_ts_us(e["ts"]) < hi}
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["ledger_extract"].materialization.metadata
    assert meta["entries"].value == len(in_day)
    day_lines = sum(len(e["lines"]) for e in sc.entries if lo <= parse_ts_us(e["ts"]) < hi)
    assert (meta["lines"].value, meta["boundary_lines"].value) == (day_lines, len(lines) - day_lines)
    assert "| USD" in meta["totals"].value  # the day's debits and credits per currency

    stripe = pd.read_parquet(world.storage / "stripe_balance_transactions" / f"{DAY}.parquet")
    want = {t["id"] for t in sc.stripe_balance_transactions
            if lo // 10**6 - 3600 <= t["created"] < hi // 10**6 + 3600}
    assert set(stripe["id"]) == want
    assert set(stripe["currency"]) <= {"USD", "EUR", "JPY"}
    for c in ("amount", "fee", "net", "created"):
        assert stripe[c].dtype == "int64"

    payouts = pd.read_parquet(world.storage / "payout_settlements" / f"{DAY}.parquet")
    assert payouts["amount_minor"].dtype == "int64"
    assert "pending" in set(payouts["status"])  # the stuck payout injected on the 2nd
    assert (world.stripe.requests() and world.payout.requests())


def test_provider_faults_are_retried_inside_the_run(sqlite_world):
    sqlite_world.stripe.set_faults(rate_limit=2, retry_after=0.2, server_error=1)
    result = _materialize(sqlite_world, ["stripe_balance_transactions"])
    assert result.success
    statuses = [r["status"] for r in sqlite_world.stripe.requests()]
    assert statuses[:3] == [429, 429, 500] and statuses[3] == 200


def test_gx_is_warmed_up_from_a_runs_first_step_only_when_the_run_holds_the_gates(clean_world, monkeypatch):
    """The in-process run starts GX's import at its first step, so it overlaps the extract and
    the pulls; a run without the gates' step never imports GX for nothing."""
    import time

    from finance_pipeline.quality import gates

    calls: list[float] = []
    real = gates.warm_up
    monkeypatch.setattr(gates, "warm_up", lambda: (calls.append(time.time()), real())[1])

    assert _materialize(clean_world, EXTRACTS).success
    assert calls == []

    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(clean_world, [*EXTRACTS, "stripe_payouts", "reconciliation", "reconciliation_report",
                                        "ledger_counterparts"], instance=instance)
    assert result.success
    starts = {r.step_key: r.timestamp for r in instance.all_logs(result.run_id)
              if r.dagster_event and r.dagster_event.event_type_value == "STEP_START"}
    first_step = min(starts.values())
    assert len(calls) == 5  # the four upstream steps and the gates' own
    assert first_step <= calls[0] < sorted(starts.values())[1] < starts["reconcile_day"]


def test_an_asset_invoked_directly_warms_nothing_up(monkeypatch):
    from finance_pipeline.defs.reconciliation.assets import warm_up_gates
    from finance_pipeline.quality import gates

    monkeypatch.setattr(gates, "warm_up", lambda: pytest.fail("no run, no gates to warm up for"))
    warm_up_gates(dg.build_asset_context(partition_key=DAY))


def test_the_extract_is_written_in_slices_and_read_again_when_the_ledger_moved(clean_world, monkeypatch):
    """The asset stores the file it wrote slice by slice: the window extract, with the metadata
    of the whole day; a window that moved while it was read is read again."""
    from finance_pipeline.export import prove
    from finance_pipeline.ledger import extract
    from finance_pipeline.ledger.engine import create_ledger_engine

    monkeypatch.setattr(extract, "SLICE_ENTRIES", 3)
    write_day, calls = prove.write_day, []

    def moved_once(engine, day, tol, path, on_piece=None):
        calls.append(day)
        if len(calls) == 1:
            on_piece(extract.extract_day_lines(engine, *day_bounds_us(day)))  # counted, then dropped
            raise extract.WindowMovedError("entries were posted into the window; read it again")
        return write_day(engine, day, tol, path, on_piece)

    monkeypatch.setattr(prove, "write_day", moved_once)
    monkeypatch.setattr(extract, "extract_day_lines", _spy(extract.extract_day_lines, slices := []))
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(clean_world, ["ledger_extract"], instance=instance)
    assert result.success and len(calls) == 2
    assert len(slices) > 2  # the first attempt's one read, then the window in slices of 3 entries

    stored = pd.read_parquet(clean_world.storage / "ledger_extract" / f"{DAY}.parquet")
    engine = create_ledger_engine(clean_world.database_url)
    try:
        pd.testing.assert_frame_equal(stored, prove.extract_day(engine, DAY, clean_world.definitions()
                                                                 .resources["recon"].tolerances()))
    finally:
        engine.dispose()
    lo, hi = day_bounds_us(DAY)
    in_day = stored[(stored["ts_us"] >= lo) & (stored["ts_us"] < hi)]
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert (meta["entries"].value, meta["lines"].value) == (in_day["journal_id"].nunique(), len(in_day))
    assert meta["rows"].value == len(stored)
    assert not list(clean_world.storage.glob("ledger_extract/*.tmp"))
    assert any("read it again (attempt 1)" in e.user_message for e in instance.all_logs(result.run_id))


def _spy(fn, seen):
    def spy(*args, **kwargs):
        seen.append(kwargs)
        return fn(*args, **kwargs)
    return spy


RECONCILIATION_STEP = [*EXTRACTS, "stripe_payouts", "reconciliation", "reconciliation_report", "ledger_counterparts"]


def _reconciliation_outputs(world, result) -> dict:
    """What the reconciliation step stored, and every check's result and metadata."""
    stored = {name: pd.read_parquet(world.storage / name / f"{DAY}.parquet").to_dict("records")
              for name in ("reconciliation", "ledger_counterparts")}
    stored["report"] = (world.storage / "reconciliation_report" / f"{DAY}.json").read_bytes()
    stored["checks"] = {e.check_name: (e.passed, {k: v.value for k, v in e.metadata.items()})
                        for e in result.get_asset_check_evaluations()}
    return stored


def test_the_reconciliation_step_reads_the_stored_extract_in_pieces(world, monkeypatch):
    """The step reads the extract a few lines at a time (as a day too large to hold whole is
    read), the reconciliation keeping its claims' lines and the ledger gate judging each piece:
    the report, the rows, the counterparts and every check's result are those of one piece."""
    from finance_pipeline.defs.io_managers import StoredFrame
    from finance_pipeline.export import prove

    whole = _reconciliation_outputs(world, _materialize(world, RECONCILIATION_STEP))
    # The world's day has blocking discrepancies: its parity check fails, the step with it.
    assert {c: passed for c, (passed, _) in whole["checks"].items()} == {
        "ledger_suite": True, "provider_suites": True, "parity": False}
    read = []
    batches = StoredFrame.batches
    monkeypatch.setattr(StoredFrame, "batches",
                        lambda self, rows, columns=None: (read.append((self.name, rows)), batches(self, rows, columns))[1])
    monkeypatch.setattr(prove, "GATE_PIECE_LINES", 5)
    assert _reconciliation_outputs(world, _materialize(world, RECONCILIATION_STEP)) == whole
    # One read, in pieces, for the claims and the gate (the proof is not in this selection).
    assert read == [(f"ledger_extract {DAY}", 5)]


def test_the_reconciliation_step_reconciles_a_large_day_in_buckets(world, monkeypatch):
    """A day above ``buckets.WHOLE_UP_TO`` is reconciled a bucket at a time: the step's report,
    rows, counterparts and checks are those of the day reconciled whole."""
    from finance_pipeline.reconciliation import buckets, engine

    whole = _reconciliation_outputs(world, _materialize(world, RECONCILIATION_STEP))
    sizes = []
    reconcile = engine.reconcile
    monkeypatch.setattr(engine, "reconcile",
                        lambda lines, *a, **k: (sizes.append(len(lines)), reconcile(lines, *a, **k))[1])
    monkeypatch.setattr(buckets, "WHOLE_UP_TO", 0)
    monkeypatch.setattr(buckets, "BUCKET_LINES", 9)
    assert _reconciliation_outputs(world, _materialize(world, RECONCILIATION_STEP)) == whole
    assert len(sizes) > 3 and max(sizes) < sum(sizes)  # in buckets indeed
