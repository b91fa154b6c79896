"""The daily UTC partitions every asset shares."""

from __future__ import annotations

from datetime import date

import dagster as dg


def daily_partitions(start: str) -> dg.DailyPartitionsDefinition:
    date.fromisoformat(start)  # a clear error for a malformed FP_PARTITIONS_START
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=0)


def partition_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
