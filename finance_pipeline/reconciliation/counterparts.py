"""Following a day's open references into the rest of the ledger (the reconciliation's edges).

A day reads the ledger and the providers within the time tolerance of itself. A pair whose
two sides are further apart (a payout booked 22:50 and settled 00:30, a payout reversed the
next morning after the provider failed it) would look half-missing from one of the days. So
after a first pass, every reference still open in a discrepancy row is looked up in the
whole ledger, whatever the date, and the day is reconciled again with what was found, until
nothing new turns up. The entries found are published in the package's context
(``boundary_entries``), so a replay reads exactly what this read and gives the same report.

The provider side is not followed: a record further than the tolerance from the day it is
booked on is reported on the ledger's day (docs/decisions.md, "Day boundaries").
"""

from __future__ import annotations

from typing import Callable, Iterable

import pandas as pd

from finance_pipeline.reconciliation.engine import Reconciliation, Tolerances, reconcile

# ((provider, reference) pairs, later_only) -> the lines of the entries outside the read window
# naming them (with later_only, only those dated after it).
Fetch = Callable[[list[tuple[str, str]], bool], pd.DataFrame]
MAX_ROUNDS = 8


def open_references(rec: Reconciliation, lines: pd.DataFrame, stripe: pd.DataFrame,
                    payouts: pd.DataFrame) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (provider, reference) pairs the discrepancy rows of ``rec`` stand on, as (any date,
    later only): both keys (own id, source) of each provider record a row names, whose booking
    may be on any day; the reference of each entry a row names, followed only forward (its
    later corrections), except for a reversal, whose target may be earlier. An entry is never
    folded into a claim of an earlier day that was reconciled without it."""
    disc = rec.discrepancies
    anywhere: set[tuple[str, str]] = set()
    later: set[tuple[str, str]] = set()
    if disc.empty:
        return anywhere, later
    journals = set(disc["journal_id"].dropna().astype(str))
    if journals and len(lines):
        named = lines[lines["journal_id"].isin(journals) & lines["provider_reference"].notna()]
        for provider, ref, kind in zip(named["provider"].astype(str), named["provider_reference"].astype(str),
                                       named["kind"].astype(str)):
            (anywhere if kind == "reversal" else later).add((provider, ref))
    records = disc[disc["provider_id"].notna()]
    for provider, frame, key in (("stripe", stripe, "source"), ("payout_sandbox", payouts, "payout_id")):
        ids = set(records.loc[records["provider"] == provider, "provider_id"].astype(str))
        if not ids or not len(frame):
            continue
        hit = frame[frame["id"].isin(ids)]
        anywhere |= {(provider, str(v)) for v in hit["id"].tolist()}
        anywhere |= {(provider, str(v)) for v in hit[key].dropna().tolist()}
    return anywhere, later - anywhere


def _union(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort").reset_index(drop=True)


def reconcile_following_references(
    lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame, lo_us: int, hi_us: int,
    tol: Tolerances, fetch: Fetch | None, stripe_payouts: pd.DataFrame | None = None,
) -> tuple[Reconciliation, pd.DataFrame]:
    """``reconcile`` of the day, with the entries outside ``lines`` that its open references
    name. Returns the reconciliation and those entries' lines (``lines``' columns; empty when
    none was needed), which the package's context must carry."""
    found = lines.iloc[0:0]
    asked: set[tuple[str, str]] = set()
    rec = reconcile(lines, stripe, payouts, lo_us, hi_us, tol, stripe_payouts)
    if fetch is None:
        return rec, found
    for _ in range(MAX_ROUNDS):
        both = lines if found.empty else _union([lines, found])
        anywhere, later = open_references(rec, both, stripe, payouts)
        anywhere = {("any", *r) for r in anywhere}
        later = {("later", *r) for r in later}
        todo = (anywhere | later) - asked
        if not todo:
            break
        asked |= todo
        parts = [fetch(sorted((p, r) for how, p, r in todo if how == h), h == "later") for h in ("any", "later")
                 if any(how == h for how, _, _ in todo)]
        new = _union(parts) if any(len(p) for p in parts) else both.iloc[0:0]
        new = new.drop_duplicates(["journal_id", "line_no"])
        new = new[~new["journal_id"].isin(both["journal_id"])] if len(new) else new
        if not len(new):
            break
        found = _union([found, new.astype(lines.dtypes.to_dict())])
        rec = reconcile(_union([lines, found]), stripe, payouts, lo_us, hi_us, tol, stripe_payouts)
    return rec, found.reset_index(drop=True)
