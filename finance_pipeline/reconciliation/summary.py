"""Operator-facing summaries of a reconciliation: amounts at stake per class and currency."""

from __future__ import annotations

import pandas as pd

from finance_pipeline.domain.money import Money
from finance_pipeline.reconciliation.engine import CLASSES


def at_stake(discrepancies: pd.DataFrame) -> pd.DataFrame:
    """Per (class, currency): how many discrepancies and the minor units at stake.

    At stake is |provider - ledger| where both sides have an amount, else the one side's.
    """
    if discrepancies.empty:
        return pd.DataFrame({"class": [], "currency": [], "count": [], "at_stake_minor": []})
    p = discrepancies["provider_amount_minor"].astype("Int64")
    l = discrepancies["ledger_amount_minor"].astype("Int64")
    stake = (p - l).abs().fillna(p.abs()).fillna(l.abs()).fillna(0).astype("int64")
    frame = discrepancies.assign(at_stake_minor=stake, currency=discrepancies["currency"].fillna("—"))
    out = frame.groupby(["class", "currency"], sort=True).agg(
        count=("class", "size"), at_stake_minor=("at_stake_minor", "sum")
    )
    return out.reset_index()


def markdown_table(discrepancies: pd.DataFrame) -> str:
    """Discrepancies by class with counts and amounts, every class listed."""
    rows = ["| class | count | at stake |", "| --- | ---: | --- |"]
    table = at_stake(discrepancies)
    for cls in CLASSES:
        part = table[table["class"] == cls]
        count = int(part["count"].sum()) if len(part) else 0
        amounts = ", ".join(
            Money(int(r.at_stake_minor), r.currency).format() if r.currency != "—" else str(int(r.at_stake_minor))
            for r in part.itertuples()
        )
        rows.append(f"| {cls} | {count} | {amounts or '—'} |")
    return "\n".join(rows)
