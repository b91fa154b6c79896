"""On-call jobs, launched from the UI launchpad (or the CLI), and the asset jobs they feed.

``repair_batch`` rolls a partly applied batch forward and tags its run with the days it
touched; ``repair_followup_sensor`` (sensors.py) then launches one ``rereconcile_day`` run per
day. That works from the launchpad as is (the daemon of ``dagster dev`` / production runs the
sensor) and keeps each day's re-reconciliation a separate, partitioned run in the UI.

No `from __future__ import annotations`: Dagster inspects the annotation types.
"""

import dagster as dg
from pydantic import Field

from finance_pipeline.defs.oncall.resources import OpsSettings
from finance_pipeline.defs.resources import LedgerResource, PayoutProviderResource

# Run tag the repair writes and the follow-up sensor reads: comma-separated YYYY-MM-DD.
AFFECTED_DAYS_TAG = "finance_pipeline/affected_days"
INCIDENT_TAG = "finance_pipeline/incident"
LAUNCHED_BY_TAG = "finance_pipeline/launched_by"
RERECONCILE_ASSETS = (
    "ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements",
    "reconciliation", "reconciliation_report", "ledger_counterparts",
)


def build_daily_export_job():
    """Every asset of a day, checks included: what the schedule runs."""
    return dg.define_asset_job(
        "daily_export", selection=dg.AssetSelection.all(),
        description="Extract, pull, reconcile, gate and publish the proof of one UTC day.",
    )


def build_rereconcile_job():
    """The extracts, pulls and reconciliation of a day (with its gates), not the proof: a
    refreshed report for operators; publishing stays the daily export's decision."""
    return dg.define_asset_job(
        "rereconcile_day", selection=dg.AssetSelection.assets(*RERECONCILE_ASSETS),
        description="Re-extract and re-reconcile one day after a ledger incident or repair.",
    )


class RepairBatchConfig(dg.Config):
    batch_id: str = Field(description="The partly applied batch to roll forward.")
    actor: str = Field(description="Who repairs it (recorded in the audit trail), e.g. ops:ana.")


class RetriggerSettlementConfig(dg.Config):
    payout_id: str = Field(description="The stuck payout to re-submit to the provider.")
    actor: str = Field(description="Who re-triggers it (recorded in the audit trail).")


@dg.op(out=dg.Out(dg.Nothing), tags={"kind": "ledger"})
def roll_forward_batch(context: dg.OpExecutionContext, config: RepairBatchConfig,
                       ledger: LedgerResource):
    """apply_batch on the staged payload: posts what is missing; refuses an invalid payload."""
    from finance_pipeline.domain.journal import JournalValidationError
    from finance_pipeline.ledger.errors import LedgerError
    from finance_pipeline.oncall.repair import RepairRefusedError, repair_batch

    try:
        result = repair_batch(ledger.engine(), config.batch_id, actor=config.actor,
                              window=ledger.entry_window())
    except RepairRefusedError as exc:
        # Retrying cannot make an unreadable payload readable.
        raise dg.Failure(description=str(exc), allow_retries=False,
                         metadata={"batch_id": config.batch_id, "reason": exc.reason})
    except (LedgerError, JournalValidationError) as exc:
        # E.g. a closed day or a missing account: the posting core refused; nothing was posted.
        raise dg.Failure(description=f"batch {config.batch_id}: repair refused: {exc}",
                         allow_retries=False, metadata={"batch_id": config.batch_id})
    context.instance.add_run_tags(context.run_id, {AFFECTED_DAYS_TAG: ",".join(result.days)})
    context.log.info(f"batch {config.batch_id}: {result.created} entries posted, "
                     f"{result.already_present} already present; days {list(result.days)}")
    yield dg.Output(None, metadata={
        "batch_id": config.batch_id, "created": result.created,
        "already_present": result.already_present,
        "affected_days": dg.MetadataValue.json(list(result.days)),
        "audit_event_id": result.audit_event_id,
    })


@dg.job(name="repair_batch", tags={LAUNCHED_BY_TAG: "repair_batch"},
        description="Roll a partly applied journal batch forward; the days it touched are then "
                    "re-reconciled by repair_followup_sensor (one rereconcile_day run per day).")
def repair_batch_job():
    roll_forward_batch()


@dg.op(out=dg.Out(dg.Nothing), tags={"kind": "payouts"})
def retrigger_payout_settlement(context: dg.OpExecutionContext, config: RetriggerSettlementConfig,
                                ledger: LedgerResource, payouts: PayoutProviderResource,
                                ops_settings: OpsSettings):
    """Re-submit the payout; refused (the run fails) unless its approval quorum holds."""
    from finance_pipeline.oncall.stuck import retrigger_settlement
    from finance_pipeline.payouts.service import PayoutError
    from finance_pipeline.providers.retry import RetryPolicy

    try:
        outcome = retrigger_settlement(
            ledger.engine(), config.payout_id, base_url=payouts.base, token=payouts.token,
            actor=config.actor,
            retry=RetryPolicy(max_attempts=payouts.max_attempts, max_delay_s=payouts.max_retry_delay_s),
            policy=ops_settings.payout_policy(),
        )
    except PayoutError as exc:
        # Refused (no quorum, unknown payout, ...): nothing was sent; a retry would be refused too.
        raise dg.Failure(description=f"payout {config.payout_id}: re-trigger refused: {exc}",
                         allow_retries=False,
                         metadata={"payout_id": config.payout_id, "refusal": type(exc).__name__})
    context.log.info(f"payout {outcome.payout_id}: {outcome.status} (provider {outcome.provider_status})")
    yield dg.Output(None, metadata={
        "payout_id": outcome.payout_id, "status": outcome.status,
        "provider_status": str(outcome.provider_status),
        "audit_event_id": dg.MetadataValue.int(int(outcome.audit_event_id))
        if outcome.audit_event_id is not None else dg.MetadataValue.null(),
    })


@dg.job(name="retrigger_settlement", tags={LAUNCHED_BY_TAG: "retrigger_settlement"},
        description="Re-submit a stuck payout to the provider, if its approval quorum still holds.")
def retrigger_settlement_job():
    retrigger_payout_settlement()


def build_jobs() -> list:
    return [repair_batch_job, retrigger_settlement_job]
