"""The daily export: yesterday's partition (UTC), every asset, at ``FP_EXPORT_CRON`` (02:00 UTC).

02:00 leaves the one-hour reconciliation time tolerance after midnight, so the providers'
boundary counterparts of yesterday exist when it runs.

No `from __future__ import annotations`: Dagster inspects the annotation types.
"""

from datetime import datetime, timedelta, timezone

import dagster as dg

from finance_pipeline.defs.oncall.jobs import LAUNCHED_BY_TAG
from finance_pipeline.settings import DEFAULT_EXPORT_CRON


def day_before(when: datetime) -> str:
    """The UTC day before ``when`` (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when.astimezone(timezone.utc).date() - timedelta(days=1)).isoformat()


def build_daily_export_schedule(export_job, partitions_def: dg.PartitionsDefinition,
                                cron: str | None = None) -> dg.ScheduleDefinition:
    cron = cron or DEFAULT_EXPORT_CRON

    def daily_export_schedule(context: dg.ScheduleEvaluationContext):
        when = context.scheduled_execution_time or datetime.now(timezone.utc)
        day = day_before(when)
        if not partitions_def.has_partition_key(day):
            return dg.SkipReason(f"{day} is not a daily partition (before FP_PARTITIONS_START?)")
        return dg.RunRequest(partition_key=day, tags={LAUNCHED_BY_TAG: "daily_export_schedule"})

    try:
        return dg.schedule(
            name="daily_export_schedule", cron_schedule=cron, job=export_job,
            execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
            description=f"Export yesterday's partition (UTC) at `{cron}` (FP_EXPORT_CRON).",
        )(daily_export_schedule)
    except dg.DagsterInvalidDefinitionError as exc:
        raise ValueError(f"FP_EXPORT_CRON={cron!r} is not a 5-field cron expression "
                         f"(e.g. {DEFAULT_EXPORT_CRON!r} for 02:00 UTC): {exc}") from None
