"""The `restore_drill` job: regenerate every published day from a restored ledger database.

No `from __future__ import annotations`: Dagster inspects the config annotation.
The logic lives in finance_pipeline.drill.restore; this is only its Dagster wrapper.
Launch it from the UI's Launchpad (or GraphQL) with::

    ops:
      check_restored_ledger:
        config:
          restored_database_url: postgresql://drill@restored-host:5432/ledger   # or aws-sm://...
          days: []            # empty: every day in the restored proof registry
"""

import dagster as dg
from pydantic import Field


class RestoreDrillConfig(dg.Config):
    restored_database_url: str = Field(
        description="The restored ledger database (postgresql://... or an aws-sm://<secret-id>[#key] "
                    "reference). Read only; never the production DATABASE_URL.",
    )
    days: list[str] = Field(
        default=[],
        description="Days (YYYY-MM-DD) to check; empty means every day the restored registry published.",
    )


@dg.op(
    name="check_restored_ledger",
    description="Regenerate each published day's statement from the restored ledger and compare it "
                "byte for byte with the published proof package.",
    # The publication store's AWS endpoint and region: where published packages (and an
    # aws-sm:// reference of the restored database) are read.
    required_resource_keys={"publication"},
)
def check_restored_ledger(context: dg.OpExecutionContext, config: RestoreDrillConfig) -> dict:
    from finance_pipeline.drill.restore import run_restore_drill

    store = context.resources.publication
    report = run_restore_drill(config.restored_database_url, config.days or None,
                               aws_endpoint_url=store.aws_endpoint_url or None,
                               aws_region=store.aws_region or None)
    summary = {
        "database": report.database,
        "days_checked": dg.MetadataValue.int(len(report.days)),
        "matched": dg.MetadataValue.json(report.matched),
        "mismatched": dg.MetadataValue.json(report.mismatched),
        "errors": dg.MetadataValue.json(report.errors),
        "report": dg.MetadataValue.md(report.markdown()),
    }
    context.log.info(report.to_json())
    if not report.ok:
        bad = report.mismatched + report.errors
        raise dg.Failure(
            description=(f"restore drill failed: {len(bad)} of {len(report.days)} day(s) do not regenerate "
                         f"to their published statements ({', '.join(bad) or 'no published day found'})"),
            metadata=summary,
        )
    context.add_output_metadata(summary)
    return report.to_dict()


@dg.job(
    name="restore_drill",
    description="Restore drill of the ledger database (docs/restore-drill.md).",
    tags={"dagster/max_retries": 0},
)
def restore_drill():
    check_restored_ledger()


def build_jobs() -> list[dg.JobDefinition]:
    return [restore_drill]
