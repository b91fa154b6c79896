"""On-call operations in Dagster: sensors, jobs, the daily schedule and their resources.

``build_defs(partitions)`` is merged into the code location by ``finance_pipeline.definitions``.
The logic lives in ``finance_pipeline.oncall`` (plain Python); these are thin wrappers.
"""

from __future__ import annotations

import dagster as dg

OPS_JOBS = ("daily_export", "rereconcile_day", "repair_batch", "retrigger_settlement")


def build_defs(partitions_def: dg.PartitionsDefinition, export_job=None, *, config) -> dg.Definitions:
    """Jobs, schedule, sensors and resources of the on-call operations.

    ``export_job``: the partitioned asset job the daily schedule runs; by default this builds
    ``daily_export`` (every asset, checks included). Pass your own to have the schedule run it
    instead (it is then not added here, so the caller keeps it in its own Definitions).
    Needs the ``ledger``, ``payouts`` and ``signing`` resources of the main definitions.
    ``config``: the Settings (the export schedule's cron, the on-call resources), given by the
    code location: never defaulted here, so a configured SLA or webhook cannot be dropped.
    """
    from finance_pipeline.defs.oncall import jobs, schedules, sensors
    from finance_pipeline.defs.oncall.resources import build_ops_resources

    own_export = export_job is None
    export_job = export_job or jobs.build_daily_export_job()
    rereconcile = jobs.build_rereconcile_job()
    return dg.Definitions(
        jobs=[*([export_job] if own_export else []), rereconcile, *jobs.build_jobs()],
        schedules=[schedules.build_daily_export_schedule(export_job, partitions_def, config.export_cron)],
        sensors=[
            sensors.build_ledger_imbalance_sensor(rereconcile, partitions_def),
            sensors.build_stuck_payout_sensor(),
            sensors.build_signing_failure_sensor(),
            sensors.build_repair_followup_sensor(jobs.repair_batch_job, rereconcile, partitions_def),
        ],
        resources=build_ops_resources(config),
    )


def rereconcile_days(defs: dg.Definitions, days: list[str], instance: dg.DagsterInstance,
                     tags: dict[str, str] | None = None) -> list[dict]:
    """Run ``rereconcile_day`` in process for each day on ``instance`` (the CLI's way; the UI's
    is repair_followup_sensor). One dict per day: run_id, success, and each gate's verdict."""
    job = defs.resolve_job_def("rereconcile_day")
    out = []
    for day in days:
        result = job.execute_in_process(
            partition_key=day, instance=instance, raise_on_error=False, tags=tags or {},
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
        checks = {ev.check_name: ev.passed for ev in result.get_asset_check_evaluations()}
        out.append({"day": day, "run_id": result.run_id, "success": result.success,
                    "checks": checks, "gates_passed": bool(checks) and all(checks.values())})
    return out
