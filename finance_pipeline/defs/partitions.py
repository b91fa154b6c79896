"""The daily UTC partitions every asset shares."""

from __future__ import annotations

from datetime import date

import dagster as dg


def daily_partitions(start: str) -> dg.DailyPartitionsDefinition:
    date.fromisoformat(start)  # a clear error for a malformed FP_PARTITIONS_START
    return dg.DailyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=0)


def validate_chain_start(chain_start: str, partitions_start: str) -> str:
    """FP_CHAIN_START: the first day whose proof has no predecessor; not before the partitions."""
    try:
        day = date.fromisoformat(chain_start).isoformat()
    except ValueError:
        raise ValueError(f"FP_CHAIN_START must be a day such as 2026-11-01, got {chain_start!r}") from None
    if day < date.fromisoformat(partitions_start).isoformat():
        raise ValueError(f"FP_CHAIN_START {day} is before the first partition {partitions_start} "
                         "(FP_PARTITIONS_START): the chain must start on a day that has a partition")
    return day


def partition_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
