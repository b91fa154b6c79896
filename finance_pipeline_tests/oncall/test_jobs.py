"""On-call jobs and the daily schedule, executed through Dagster on real instances and parts."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.defs.oncall import jobs, rereconcile_days
from finance_pipeline.defs.oncall.resources import OpsSettings
from finance_pipeline.defs.resources import LedgerResource, PayoutProviderResource
from finance_pipeline.ledger.audit import list_events, now_us
from finance_pipeline.ledger.batches import batch_status
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.schema import journal_batches
from finance_pipeline.oncall.imbalance import find_incidents
from finance_pipeline.oncall.repair import RepairRefusedError, repair_batch
from finance_pipeline.payouts.service import get_payout
from finance_pipeline_tests.ledger.helpers import entry
from finance_pipeline_tests.oncall.helpers import (
    HOUR_US,
    LATE_BATCH,
    LATE_DAY,
    inject_partial_batch,
    make_partial_batch,
    make_stuck_payout,
    ops_definitions,
    renew_approvals,
)


def _repair_config(batch_id: str, actor: str = "ops:ana") -> dict:
    return {"ops": {"roll_forward_batch": {"config": {"batch_id": batch_id, "actor": actor}}}}


def _retrigger_config(payout_id: str, actor: str = "ops:ana") -> dict:
    return {"ops": {"retrigger_payout_settlement": {"config": {"payout_id": payout_id, "actor": actor}}}}


def test_definitions_load_with_the_on_call_operations():
    defs = ops_definitions()
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.jobs} >= {"daily_export", "rereconcile_day", "repair_batch",
                                           "retrigger_settlement"}
    assert {s.name for s in defs.sensors} == {"ledger_imbalance_sensor", "stuck_payout_sensor",
                                              "signing_failure_sensor", "repair_followup_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in defs.sensors)
    # The launchpad's config schema: batch_id / payout_id and actor, all required strings.
    fields = defs.resolve_job_def("repair_batch").run_config_schema.config_type.fields
    op_fields = fields["ops"].config_type.fields["roll_forward_batch"].config_type.fields["config"]
    assert set(op_fields.config_type.fields) == {"batch_id", "actor"}
    assert all(f.is_required for f in op_fields.config_type.fields.values())


def test_repair_fixes_a_partial_batch_and_the_next_export_of_that_day_passes(ops_world):
    defs = ops_definitions()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_day(defs, "2026-11-01", instance).gates_passed  # the chain's first link
    inject_partial_batch(ops_world)
    engine = create_ledger_engine(ops_world.database_url)

    blocked = materialize_day(defs, LATE_DAY, instance)
    assert blocked.checks["parity"] is False and "proof_package" in blocked.skipped
    assert blocked.metadata["reconciliation_report"]["discrepancies/LEDGER_MISSING"] == 1

    # The launchpad's run: repair_batch with its typed config.
    result = defs.resolve_job_def("repair_batch").execute_in_process(
        run_config=_repair_config(LATE_BATCH), instance=instance)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[jobs.AFFECTED_DAYS_TAG] == LATE_DAY
    assert batch_status(engine, LATE_BATCH).complete
    assert find_incidents(engine) == []
    [event] = list_events(engine, action="ops.batch_repair")
    assert event.actor == "ops:ana" and event.detail["days"] == [LATE_DAY]

    # Its success makes repair_followup_sensor ask for one re-reconciliation per touched day.
    sensor = defs.resolve_sensor_def("repair_followup_sensor")
    with dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=result.get_run_success_event(),
            dagster_instance=instance, dagster_run=run) as ctx:
        requests = sensor(ctx)
    assert [(r.partition_key, r.run_key) for r in requests] == [(LATE_DAY, f"{run.run_id}:{LATE_DAY}")]
    [rerun] = rereconcile_days(defs, [requests[0].partition_key], instance)
    assert rerun["gates_passed"] and rerun["checks"] == {
        "ledger_suite": True, "provider_suites": True, "parity": True}

    # The next export of the day passes its gates and publishes.
    export = materialize_day(defs, LATE_DAY, instance)
    assert export.gates_passed and not export.failed, export
    assert export.metadata["proof_package"]["created"]
    engine.dispose()


def test_the_followup_sensor_ignores_a_repair_that_touched_no_day(sqlite_ops_world):
    defs = ops_definitions()
    instance = dg.DagsterInstance.ephemeral()
    # The demo's own batches are complete: repairing one posts nothing and touches no day.
    result = defs.resolve_job_def("repair_batch").execute_in_process(
        run_config=_repair_config("demo-2026-11-01"), instance=instance)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    sensor = defs.resolve_sensor_def("repair_followup_sensor")
    with dg.build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=result.get_run_success_event(),
            dagster_instance=instance, dagster_run=run) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)


def test_repair_refuses_an_invalid_staged_payload_and_audits_it(ledger):
    url = ledger.url.render_as_string(hide_password=False)
    make_partial_batch(ledger, "broken", [entry("X-1"), entry("X-2")], applied=1,
                       staged_at_us=now_us() - HOUR_US)
    with ledger.begin() as conn:  # the staged copy got damaged (journal_batches is not append-only)
        conn.execute(journal_batches.update().where(journal_batches.c.batch_id == "broken")
                     .values(staged_payload="[{\"journal_id\": \"X-1\"}"))
    with pytest.raises(RepairRefusedError) as refused:
        repair_batch(ledger, "broken", actor="ops:ana")
    assert "not valid JSON" in refused.value.reason

    result = jobs.repair_batch_job.execute_in_process(
        run_config=_repair_config("broken"), resources={"ledger": LedgerResource(database_url=url)},
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "repair refused" in failure.step_failure_data.error.message
    assert batch_status(ledger, "broken").applied == 1  # nothing was posted
    assert len(list_events(ledger, action="ops.batch_repair_refused")) == 2
    assert list_events(ledger, action="ops.batch_repair") == []


def test_repairing_an_unknown_batch_is_refused(ledger):
    with pytest.raises(RepairRefusedError) as refused:
        repair_batch(ledger, "nope", actor="ops:ana")
    assert "no batch 'nope' is staged" in refused.value.reason


def test_retrigger_job_is_refused_without_quorum_and_settles_with_it(ledger, payout_sandbox):
    url = ledger.url.render_as_string(hide_password=False)
    make_stuck_payout(ledger, payout_sandbox, "pay_9", at_us=now_us() - 30 * HOUR_US)  # approvals expired
    payout_sandbox.mark_stuck(["pay_9"], stuck=False)
    resources = {"ledger": LedgerResource(database_url=url),
                 "payouts": PayoutProviderResource(base_url=payout_sandbox.url, token=payout_sandbox.token),
                 "ops_settings": OpsSettings()}  # the built-in approval tiers
    instance = dg.DagsterInstance.ephemeral()

    refused = jobs.retrigger_settlement_job.execute_in_process(
        run_config=_retrigger_config("pay_9"), resources=resources, instance=instance, raise_on_error=False)
    assert not refused.success
    message = refused.get_step_failure_events()[0].step_failure_data.error.message
    assert "re-trigger refused" in message and "finance-lead" in message and "security-engineer" in message
    assert get_payout(ledger, "pay_9").payout.status == "pending"

    renew_approvals(ledger, "pay_9")
    settled = jobs.retrigger_settlement_job.execute_in_process(
        run_config=_retrigger_config("pay_9"), resources=resources, instance=instance)
    assert settled.success
    view = get_payout(ledger, "pay_9")
    assert view.payout.status == "settled" and view.events[-1].actor == "ops:ana"


# -- the daily schedule -------------------------------------------------------------------------


def _evaluate(schedule, when: datetime):
    with dg.build_schedule_context(scheduled_execution_time=when) as ctx:
        return schedule(ctx)


def test_the_daily_schedule_exports_yesterday_at_two_utc_by_default(monkeypatch):
    monkeypatch.delenv("FP_EXPORT_CRON", raising=False)
    schedule = ops_definitions().resolve_schedule_def("daily_export_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "daily_export"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    request = _evaluate(schedule, datetime(2026, 11, 3, 2, 0, tzinfo=timezone.utc))
    assert request.partition_key == "2026-11-02"
    # Just after midnight UTC it is still the day before; a non-UTC clock is converted first.
    from zoneinfo import ZoneInfo

    late = datetime(2026, 11, 3, 0, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 2026-11-02T15:30Z
    assert _evaluate(schedule, late).partition_key == "2026-11-01"
    # The day before the first partition is not one: skipped, not a failed tick.
    assert isinstance(_evaluate(schedule, datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)), dg.SkipReason)


def test_the_export_time_comes_from_fp_export_cron(monkeypatch):
    monkeypatch.setenv("FP_EXPORT_CRON", "30 3 * * *")
    assert ops_definitions().resolve_schedule_def("daily_export_schedule").cron_schedule == "30 3 * * *"
    monkeypatch.setenv("FP_EXPORT_CRON", "at two")
    with pytest.raises(ValueError, match="FP_EXPORT_CRON='at two'"):
        ops_definitions()


def test_the_scheduled_job_runs_every_asset_and_publishes_the_day(sqlite_ops_world):
    defs = ops_definitions()
    schedule = defs.resolve_schedule_def("daily_export_schedule")
    request = _evaluate(schedule, datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc))
    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        partition_key=request.partition_key, instance=dg.DagsterInstance.ephemeral(),
        tags=request.tags)
    assert result.success
    checks = {ev.check_name: ev.passed for ev in result.get_asset_check_evaluations()}
    assert checks == {"ledger_suite": True, "provider_suites": True, "parity": True}
    materialized = {ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}
    assert "proof_package" in materialized
    engine = create_ledger_engine(sqlite_ops_world.database_url)
    from finance_pipeline.export import registry

    assert [r.day for r in registry.published_for_day(engine, "2026-11-01")] == ["2026-11-01"]
    engine.dispose()
