"""What the providers say happened, pulled over HTTP for a day widened by the time tolerance."""


import dagster as dg

from finance_pipeline.defs.reconciliation.assets import warm_up_gates
from finance_pipeline.defs.resources import (
    PayoutProviderResource,
    ReconciliationSettings,
    StripeResource,
)
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us, recon_window_us, seconds_window


def pull_window_us(partition_key: str, tolerance_s: int) -> tuple[int, int]:
    """The day widened by the tolerance on both sides (both ends included), so boundary
    counterparts are seen."""
    return recon_window_us(partition_key, tolerance_s)


def build_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="stripe_balance_transactions",
        group_name="providers",
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        kinds={"stripe", "pandas"},
        description="Stripe balance transactions created in the day +- the time tolerance.",
    )
    def stripe_balance_transactions(
        context: dg.AssetExecutionContext, stripe: StripeResource, recon: ReconciliationSettings
    ) -> dg.Output:
        warm_up_gates(context)
        lo, hi = pull_window_us(context.partition_key, recon.time_tolerance_s)
        frame = stripe.balance_transactions_frame(*seconds_window(lo, hi))
        return dg.Output(
            frame,
            metadata={
                "records": len(frame),
                "window": f"[{format_ts_us(lo)}, {format_ts_us(hi - 1)}]",
                "by_category": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in frame["reporting_category"].value_counts().sort_index().items()}
                ),
            },
        )

    @dg.asset(
        name="stripe_payouts",
        group_name="providers",
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        kinds={"stripe", "pandas"},
        description=(
            "Stripe payouts (/v1/payouts) created in the day +- the time tolerance or arriving on the "
            "day: status and arrival_date, with the balance transaction of a payout created earlier."),
    )
    def stripe_payouts(
        context: dg.AssetExecutionContext, stripe: StripeResource, recon: ReconciliationSettings
    ) -> dg.Output:
        warm_up_gates(context)
        lo, hi = pull_window_us(context.partition_key, recon.time_tolerance_s)
        d_lo, d_hi = day_bounds_us(context.partition_key)
        frame = stripe.payouts_frame(seconds_window(lo, hi), seconds_window(d_lo, d_hi))
        return dg.Output(frame, metadata={
            "payouts": len(frame),
            "fetched_balance_transactions": int(frame["balance_transaction_record"].notna().sum()),
            "by_status": dg.MetadataValue.json(
                {str(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()}),
        })

    @dg.asset(
        name="payout_settlements",
        group_name="providers",
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        kinds={"pandas"},
        description="Payout-provider settlements in the day +- the time tolerance, and payouts still pending.",
    )
    def payout_settlements(
        context: dg.AssetExecutionContext, payouts: PayoutProviderResource, recon: ReconciliationSettings
    ) -> dg.Output:
        warm_up_gates(context)
        from finance_pipeline.providers.payout_pull import settlements_frame

        lo, hi = pull_window_us(context.partition_key, recon.time_tolerance_s)
        records = payouts.pull_settlements(format_ts_us(lo), format_ts_us(hi))
        settled_ids = {r["payout_id"] for r in records}
        pending = [p for p in payouts.pull_pending_payouts(format_ts_us(hi)) if p["payout_id"] not in settled_ids]
        frame = settlements_frame(records + pending)
        return dg.Output(
            frame,
            metadata={
                "records": len(frame),
                "window": f"[{format_ts_us(lo)}, {format_ts_us(hi - 1)}]",
                "by_status": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in frame["status"].value_counts().sort_index().items()}
                ),
            },
        )

    return [stripe_balance_transactions, stripe_payouts, payout_settlements]
