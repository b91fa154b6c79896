"""On-call sensors: thin wrappers over ``finance_pipeline.oncall``.

Each alerting sensor keeps the keys of the incidents it has alerted in its cursor
(``AlertCursor``), so an incident alerts once, however many ticks it stays open.
They start RUNNING: alerting that someone has to remember to switch on is no alerting.

No `from __future__ import annotations`: Dagster inspects the annotation types.
"""

import dagster as dg

from finance_pipeline.defs.oncall.jobs import AFFECTED_DAYS_TAG, INCIDENT_TAG, LAUNCHED_BY_TAG
from finance_pipeline.defs.oncall.resources import NotifierResource, OpsSettings
from finance_pipeline.defs.resources import LedgerResource, SigningResource

# Every 5 minutes: the queries are single aggregates, and an imbalance is not a seconds matter.
SENSOR_INTERVAL_S = 300


def _partition_days(days, partitions_def: dg.PartitionsDefinition, log) -> list[str]:
    """Days that are partitions now; today (not yet a partition) is left to the daily export."""
    ok = [d for d in days if partitions_def.has_partition_key(d)]
    skipped = sorted(set(days) - set(ok))
    if skipped:
        log.info(f"not re-reconciling {skipped}: not (yet) daily partitions")
    return ok


def build_ledger_imbalance_sensor(rereconcile_job, partitions_def: dg.PartitionsDefinition):
    @dg.sensor(
        name="ledger_imbalance_sensor", job=rereconcile_job,
        minimum_interval_seconds=SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts once per ledger imbalance (unbalanced entries, trial balance, partly "
                    "applied batches) and re-reconciles the days it affects.",
    )
    def ledger_imbalance_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource,
                                notifier: NotifierResource, ops_settings: OpsSettings):
        from finance_pipeline.ledger.audit import now_us
        from finance_pipeline.oncall.imbalance import find_incidents
        from finance_pipeline.oncall.notify import AlertCursor

        engine = ledger.engine()
        now = now_us()
        incidents = find_incidents(engine, grace_s=ops_settings.batch_grace_s, now_us=now)
        cursor = AlertCursor.load(context.cursor)
        for key in cursor.retain(i.key for i in incidents):
            context.log.info(f"incident {key} is resolved")
        send = notifier.notifier(engine, log=context.log.warning)
        requests = []
        for incident in incidents:
            if not cursor.is_new(incident.key):
                continue
            delivery = send.notify(incident.to_alert())
            if not delivery.recorded:
                continue  # nothing durable took it: try again next tick
            cursor.mark(incident.key, now)
            for day in _partition_days(incident.days, partitions_def, context.log):
                requests.append(dg.RunRequest(
                    run_key=f"{incident.key}:{day}", partition_key=day,
                    tags={INCIDENT_TAG: incident.key, LAUNCHED_BY_TAG: "ledger_imbalance_sensor"},
                ))
        if requests:
            return dg.SensorResult(run_requests=requests, cursor=cursor.dump())
        return dg.SensorResult(skip_reason=f"no new incident ({len(incidents)} open)",
                               cursor=cursor.dump())

    return ledger_imbalance_sensor


def build_stuck_payout_sensor():
    @dg.sensor(
        name="stuck_payout_sensor", minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts once per payout pending longer than the SLA (FP_STUCK_PAYOUT_SLA_S), "
                    "with its approvals and audit trail. Re-triggering is a human decision: "
                    "the retrigger_settlement job.",
    )
    def stuck_payout_sensor(context: dg.SensorEvaluationContext, ledger: LedgerResource,
                            notifier: NotifierResource, ops_settings: OpsSettings):
        from finance_pipeline.ledger.audit import now_us
        from finance_pipeline.oncall.notify import AlertCursor
        from finance_pipeline.oncall.stuck import find_stuck_payouts

        engine = ledger.engine()
        now = now_us()
        stuck = find_stuck_payouts(engine, sla_s=ops_settings.stuck_payout_sla_s, now_us=now)
        cursor = AlertCursor.load(context.cursor)
        cursor.retain(p.key for p in stuck)
        send = notifier.notifier(engine, log=context.log.warning)
        alerted = 0
        for payout in stuck:
            if cursor.is_new(payout.key) and send.notify(payout.to_alert()).recorded:
                cursor.mark(payout.key, now)
                alerted += 1
        return dg.SensorResult(skip_reason=f"{alerted} new alert(s), {len(stuck)} stuck payout(s)",
                               cursor=cursor.dump())

    return stuck_payout_sensor


def build_signing_failure_sensor():
    @dg.run_failure_sensor(
        name="signing_failure_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
        description="When proof_package fails with a signing error, alerts with the signing "
                    "health diagnosis of every configured key.",
    )
    def signing_failure_sensor(context: dg.RunFailureSensorContext, ledger: LedgerResource,
                               signing: SigningResource, notifier: NotifierResource):
        from finance_pipeline.oncall.signing import (
            PROOF_STEP,
            signing_error_message,
            signing_failure_alert,
            signing_health,
        )

        errors = [
            message for ev in context.get_step_failure_events()
            if ev.step_key == PROOF_STEP
            and (message := signing_error_message(ev.step_failure_data.error)) is not None
        ]
        run = context.dagster_run
        if not errors:
            return dg.SkipReason(f"run {run.run_id} did not fail on signing")
        alert = signing_failure_alert(
            run_id=run.run_id, job_name=run.job_name, partition=run.tags.get("dagster/partition"),
            error=errors[0], health=signing_health(signing.config),
        )
        notifier.notifier(ledger.engine(), log=context.log.error).notify(alert)
        return None

    return signing_failure_sensor


def build_repair_followup_sensor(repair_job, rereconcile_job, partitions_def: dg.PartitionsDefinition):
    @dg.run_status_sensor(
        name="repair_followup_sensor", run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[repair_job], request_job=rereconcile_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After a successful repair_batch run, one rereconcile_day run per day it touched.",
    )
    def repair_followup_sensor(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        days = [d for d in run.tags.get(AFFECTED_DAYS_TAG, "").split(",") if d]
        days = _partition_days(days, partitions_def, context.log)
        if not days:
            return dg.SkipReason(f"repair run {run.run_id} touched no day to re-reconcile")
        return [
            dg.RunRequest(run_key=f"{run.run_id}:{day}", partition_key=day,
                          tags={LAUNCHED_BY_TAG: "repair_followup_sensor",
                                "finance_pipeline/repair_run": run.run_id})
            for day in days
        ]

    return repair_followup_sensor
