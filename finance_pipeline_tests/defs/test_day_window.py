"""The time tolerance is inclusive on both sides of a boundary (reconciliation-report.md, rules
at the edges): a counterpart exactly T seconds away, before midnight or after, is within it."""

import json
from pathlib import Path

import dagster as dg

from finance_pipeline.cli.export import GATE_ASSETS
from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us, recon_window_us, seconds_window
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.posting import post_entries

DAY = "2026-11-02"
T = 3600
US = 1_000_000


def test_the_window_includes_both_ends():
    lo, hi = day_bounds_us(DAY)
    w_lo, w_hi = recon_window_us(DAY, T)
    assert (w_lo, w_hi) == (lo - T * US, hi + T * US + 1)
    assert seconds_window(w_lo, w_hi) == ((lo - T * US) // US, (hi + T * US) // US + 1)


def _charge(journal_id: str, ts_us: int, source: str) -> dict:
    return {"journal_id": journal_id, "ts": format_ts_us(ts_us), "kind": "standard", "memo": "edge charge",
            "provider": "stripe", "provider_reference": source, "posted_by": "system:import",
            "lines": [{"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": 4_700, "currency": "USD"},
                      {"account_id": "stripe_fees_usd", "direction": "debit", "amount_minor": 300, "currency": "USD"},
                      {"account_id": "revenue_usd", "direction": "credit", "amount_minor": 5_000, "currency": "USD"}]}


def _txn(txn_id: str, created_s: int, source: str) -> dict:
    return {"id": txn_id, "object": "balance_transaction", "amount": 5_000, "available_on": created_s,
            "created": created_s, "currency": "usd", "fee": 300, "net": 4_700, "reporting_category": "charge",
            "source": source, "status": "available", "type": "charge"}


def _rows(world, day: str) -> list[dict]:
    report = json.loads((world.storage / "reconciliation_report" / f"{day}.json").read_bytes())
    return [r for r in report["discrepancies"] if "edge" in (r["journal_id"] or "") + (r["provider_id"] or "")]


def test_a_counterpart_exactly_the_tolerance_away_is_timing_window_on_either_side(clean_world):
    lo, hi = day_bounds_us(DAY)
    engine = create_ledger_engine(clean_world.database_url)
    try:
        post_entries(engine, [_charge("je-edge-late", hi - 30 * 60 * US, "ch_edge_late"),
                              _charge("je-edge-early", lo + 30 * 60 * US, "ch_edge_early")])
    finally:
        engine.dispose()
    # Stripe saw them exactly one tolerance after the next midnight and before this one.
    clean_world.stripe.add_objects(balance_transactions=[
        _txn("txn_edge_late", (hi + T * US) // US, "ch_edge_late"),
        _txn("txn_edge_early", (lo - T * US) // US, "ch_edge_early"),
    ])
    inst = dg.DagsterInstance.ephemeral()
    for day in ("2026-11-01", DAY, "2026-11-03"):
        assert not materialize_day(clean_world.definitions(), day, inst, assets=GATE_ASSETS).failed
    rows = _rows(clean_world, DAY)
    assert sorted((r["class"], r["journal_id"], r["provider_id"]) for r in rows) == [
        ("TIMING_WINDOW", "je-edge-early", "txn_edge_early"),
        ("TIMING_WINDOW", "je-edge-late", "txn_edge_late"),
    ]
    # The neighbouring days neither match nor report them (one record, one row).
    assert _rows(clean_world, "2026-11-01") == [] and _rows(clean_world, "2026-11-03") == []


def test_a_charge_before_midnight_booked_after_the_tolerance_is_one_row_and_replays(clean_world):
    """Stripe's charge at 23:10 on day 1, booked 01:30 on day 2 (issue 17, boundary case 1): day 1
    follows the reference into day 2's ledger and reports nothing; day 2 reports TIMING_WINDOW;
    day 1's package carries the followed entry, so its report replays and the drill agrees."""
    from finance_pipeline.drill.restore import check_package
    from finance_pipeline.export import registry
    from finance_pipeline.export.replay import replay_dir

    day1, day2 = "2026-11-01", "2026-11-02"
    lo2, _ = day_bounds_us(day2)
    engine = create_ledger_engine(clean_world.database_url)
    try:
        post_entries(engine, [_charge("je-edge-after", lo2 + 90 * 60 * US, "ch_edge_after")])
        clean_world.stripe.add_objects(balance_transactions=[_txn("txn_edge_after", (lo2 - 50 * 60 * US) // US,
                                                                  "ch_edge_after")])
        inst = dg.DagsterInstance.ephemeral()
        run = materialize_day(clean_world.definitions(), day1, inst)
        assert run.gates_passed and not run.failed, run
        assert _rows(clean_world, day1) == []
        assert not materialize_day(clean_world.definitions(), day2, inst, assets=GATE_ASSETS).failed
        assert [(r["class"], r["journal_id"], r["provider_id"]) for r in _rows(clean_world, day2)] == [
            ("TIMING_WINDOW", "je-edge-after", "txn_edge_after")]

        [record] = registry.published_for_day(engine, day1)
        context = json.loads((Path(record.location) / "reconciliation_context.json").read_bytes())
        assert "je-edge-after" in {e["journal_id"] for e in context["boundary_entries"]}
        assert replay_dir(Path(record.location)).identical
        check = check_package(engine, record)
        assert check.error is None and not check.differences, check
        # A later entry with the same reference (posted after publication) is no difference to
        # the drill: it reads back exactly the entries the package names.
        lo3, _ = day_bounds_us("2026-11-03")
        post_entries(engine, [_charge("je-edge-later", lo3 + 3600 * US, "ch_edge_after")])
        check = check_package(engine, record)
        assert check.error is None and not check.differences, check
    finally:
        engine.dispose()
