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
