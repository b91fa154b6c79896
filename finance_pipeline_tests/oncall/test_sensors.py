"""The on-call sensors, evaluated by Dagster's own test contexts on real instances, ledgers,
sandboxes and a real webhook receiver."""

from __future__ import annotations

import json

import dagster as dg

from finance_pipeline.defs.oncall.resources import NotifierResource, OpsSettings
from finance_pipeline.defs.resources import LedgerResource
from finance_pipeline.ledger.audit import list_events, now_us
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.oncall.notify import ALERT_ACTION
from finance_pipeline_tests.oncall.helpers import (
    HOUR_US,
    LATE_BATCH,
    LATE_DAY,
    WebhookReceiver,
    inject_partial_batch,
    make_stuck_payout,
    ops_definitions,
    refused_url,
)


def _resources(database_url: str, webhook_url: str | None, **settings) -> dict:
    return {
        "ledger": LedgerResource(database_url=database_url),
        "notifier": NotifierResource(webhook_url=webhook_url or "", backoff_s=0.01, timeout_s=2.0),
        "ops_settings": OpsSettings(**settings),
    }


def _tick(sensor, instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        return sensor(ctx)


def _alerts(database_url: str) -> list:
    engine = create_ledger_engine(database_url)
    try:
        return list_events(engine, action=ALERT_ACTION)
    finally:
        engine.dispose()


def test_a_partial_batch_alerts_once_and_requests_one_rereconciliation(ops_world, webhook):
    inject_partial_batch(ops_world)
    defs = ops_definitions()
    sensor = defs.resolve_sensor_def("ledger_imbalance_sensor")
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(ops_world.database_url, webhook.url)

    first = _tick(sensor, instance, resources)
    [request] = first.run_requests
    assert request.partition_key == LATE_DAY
    assert request.tags["finance_pipeline/incident"] == f"partial_batch:{LATE_BATCH}"
    # The request is for the re-reconciliation job: the extracts, pulls and reconciliation.
    job = defs.resolve_job_def("rereconcile_day")
    assert sensor.job_name == "rereconcile_day"
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements",
        "reconciliation", "reconciliation_report", "ledger_counterparts"}
    [body] = webhook.json_bodies()
    assert body["kind"] == "partial_batch" and body["severity"] == "critical"
    assert body["detail"]["last_batch_id"] == LATE_BATCH
    assert body["detail"]["days"] == [LATE_DAY]
    assert body["detail"]["amounts"] == {"USD": 12_000}  # the missing entry's debits
    [event] = _alerts(ops_world.database_url)
    assert event.subject_id == f"partial_batch:{LATE_BATCH}"

    # Same state, next tick: nothing new anywhere.
    second = _tick(sensor, instance, resources, cursor=first.cursor)
    assert not second.run_requests
    assert "no new incident (1 open)" in second.skip_reason.skip_message
    assert len(webhook.requests) == 1 and len(_alerts(ops_world.database_url)) == 1
    assert second.cursor == first.cursor


def test_a_failing_webhook_does_not_break_the_sensor(sqlite_ops_world):
    inject_partial_batch(sqlite_ops_world)
    sensor = ops_definitions().resolve_sensor_def("ledger_imbalance_sensor")
    instance = dg.DagsterInstance.ephemeral()
    for url in (refused_url(), None):
        receiver = WebhookReceiver(statuses=[500] * 20) if url is None else None
        resources = _resources(sqlite_ops_world.database_url, url or receiver.url)
        try:
            result = _tick(sensor, instance, resources)
        finally:
            if receiver:
                receiver.stop()
        # The alert is in the audit trail and the re-reconciliation is requested all the same.
        assert [r.partition_key for r in result.run_requests] == [LATE_DAY]
        assert json.loads(result.cursor)["open"].keys() == {f"partial_batch:{LATE_BATCH}"}
        if receiver:
            assert len(receiver.requests) == 3  # retried, then given up
    assert len(_alerts(sqlite_ops_world.database_url)) == 2


def test_an_unbalanced_entry_alerts_and_a_resolved_incident_leaves_the_cursor(ledger, webhook):
    from finance_pipeline.ledger.schema import journal_entries, journal_lines
    from finance_pipeline.domain.timeutil import parse_ts_us

    url = ledger.url.render_as_string(hide_password=False)
    sensor = ops_definitions().resolve_sensor_def("ledger_imbalance_sensor")
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(url, webhook.url)
    empty = _tick(sensor, instance, resources)
    assert not empty.run_requests and json.loads(empty.cursor)["open"] == {}

    with ledger.begin() as conn:  # past the posting core, as a manual database fix would
        conn.execute(journal_entries.insert().values(
            journal_id="bad", ts_us=parse_ts_us("2026-11-02T12:00:00Z"), kind="standard", memo="x",
            posted_by="dba", body_sha256="0" * 64, posted_at_us=now_us()))
        conn.execute(journal_lines.insert(), [
            {"journal_id": "bad", "line_no": 0, "account_id": "cash", "direction": "debit",
             "amount_minor": 500, "currency": "USD"},
            {"journal_id": "bad", "line_no": 1, "account_id": "revenue", "direction": "credit",
             "amount_minor": 499, "currency": "USD"}])
    alerted = _tick(sensor, instance, resources, cursor=empty.cursor)
    assert [r.partition_key for r in alerted.run_requests] == ["2026-11-02"]
    [body] = webhook.json_bodies()
    assert body["kind"] == "ledger_imbalance" and body["detail"]["amounts"] == {"USD": 1}

    # Balanced by a correcting line written the same way: the incident is gone from the cursor.
    with ledger.begin() as conn:
        conn.execute(journal_lines.insert().values(journal_id="bad", line_no=2, account_id="revenue",
                                                   direction="credit", amount_minor=1, currency="USD"))
    resolved = _tick(sensor, instance, resources, cursor=alerted.cursor)
    assert json.loads(resolved.cursor)["open"] == {} and not resolved.run_requests
    assert len(webhook.requests) == 1


def test_a_stuck_payout_alerts_once_with_its_approvals(ledger, payout_sandbox, webhook, monkeypatch):
    url = ledger.url.render_as_string(hide_password=False)
    make_stuck_payout(ledger, payout_sandbox, "pay_stuck", at_us=now_us() - 5 * HOUR_US)
    sensor = ops_definitions().resolve_sensor_def("stuck_payout_sensor")
    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(url, webhook.url, stuck_payout_sla_s=4 * 3600)

    first = _tick(sensor, instance, resources)
    [body] = webhook.json_bodies()
    assert body["kind"] == "stuck_payout" and body["detail"]["payout_id"] == "pay_stuck"
    assert [a["role"] for a in body["detail"]["approvals"]] == ["finance-lead", "security-engineer"]
    assert "payout.settle" in [e["action"] for e in body["detail"]["audit_events"]]
    second = _tick(sensor, instance, resources, cursor=first.cursor)
    assert len(webhook.requests) == 1
    assert "0 new alert(s), 1 stuck payout(s)" in second.skip_reason.skip_message

    # A longer SLA from the environment: 5 hours pending is not stuck at 6.
    monkeypatch.setenv("FP_STUCK_PAYOUT_SLA_S", str(6 * 3600))
    settings = ops_definitions().resources["ops_settings"]
    longer = _tick(sensor, instance, {**resources, "ops_settings": settings})
    assert longer.skip_reason.skip_message == "0 new alert(s), 0 stuck payout(s)"
    assert len(webhook.requests) == 1


def _failure_context(sensor, instance, run_id, resources):
    run = instance.get_run_by_id(run_id)
    [entry] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name=sensor.name, dagster_event=entry.dagster_event, dagster_instance=instance,
        dagster_run=run, resources=resources,
    ).for_run_failure()


def test_a_signing_failure_alerts_with_the_signing_health_diagnosis(sqlite_ops_world, webhook, tmp_path):
    from finance_pipeline.defs.launch import materialize_day

    key = tmp_path / "var" / "keys" / "security-engineer.pem"
    key.chmod(0o644)  # a key readable by others: the signer refuses it
    defs = ops_definitions()
    instance = dg.DagsterInstance.ephemeral()
    run = materialize_day(defs, "2026-11-01", instance)
    assert run.failed == ["proof_package"]

    sensor = defs.resolve_sensor_def("signing_failure_sensor")
    resources = {**_resources(sqlite_ops_world.database_url, webhook.url), "signing": defs.resources["signing"]}
    with _failure_context(sensor, instance, run.run_id, resources) as ctx:
        sensor(ctx)
    [body] = webhook.json_bodies()
    assert body["kind"] == "signing_failure" and body["key"] == f"signing_failure:{run.run_id}"
    assert body["detail"]["partition"] == "2026-11-01"
    health = body["detail"]["signing_health"]
    assert health["healthy"] is False and health["quorum_reachable"] is False
    [broken] = [k for k in health["keys"] if not k["ok"]]
    assert broken["role"] == "security-engineer" and "chmod 600" in broken["diagnosis"]
    assert "chmod 600" in body["summary"] and "finance-pipeline export 2026-11-01 2026-11-01" in body["summary"]
    assert [e.subject_id for e in _alerts(sqlite_ops_world.database_url)] == [body["key"]]


def test_a_proof_failure_that_is_not_about_signing_does_not_alert(sqlite_ops_world, webhook):
    from finance_pipeline.defs.launch import materialize_day

    defs = ops_definitions()
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_day(defs, "2026-11-01", instance).gates_passed
    run = materialize_day(defs, "2026-11-03", instance)  # 2026-11-02 unpublished: a chain gap
    assert run.failed == ["proof_package"] and "has no published proof" in run.errors["proof_package"]
    sensor = defs.resolve_sensor_def("signing_failure_sensor")
    resources = {**_resources(sqlite_ops_world.database_url, webhook.url), "signing": defs.resources["signing"]}
    with _failure_context(sensor, instance, run.run_id, resources) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SkipReason)
    assert webhook.requests == [] and _alerts(sqlite_ops_world.database_url) == []
