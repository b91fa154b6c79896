"""Following a day's open references into the rest of the ledger (the reconciliation's edges).

A day reads the ledger and the providers within the time tolerance of itself. A pair whose
two sides are further apart (a payout booked 22:50 and settled 00:30, a payout reversed the
next morning after the provider failed it) would look half-missing from one of the days. So
after a first pass, every reference still open in a discrepancy row is looked up in the
whole ledger, whatever the date, and the day is reconciled again with what was found, until
nothing new turns up. The entries found are published in the package's context
(``boundary_entries``), so a replay reads exactly what this read and gives the same report.

The provider side is not followed: which day reports a pair whose sides lie in different days
is ``engine.pair_anchors``'s rule (docs/decisions.md, "Day boundaries").
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from finance_pipeline.columnar.membership import isin
from finance_pipeline.ledger.extract import DTYPES, union_lines
from finance_pipeline.reconciliation.buckets import reconcile
from finance_pipeline.reconciliation.engine import Reconciliation, Tolerances

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


def _lines_template(lines: pd.DataFrame) -> pd.DataFrame:
    """No rows, every extract column: ``lines.iloc[0:0]``, or where ``lines`` holds only some
    of them (``CLAIM_COLUMNS``), the extract's columns in its order, in ``lines``' dtypes where
    it has them (the counterparts go whole into the package's context)."""
    if all(c in lines.columns for c in DTYPES):
        return lines.iloc[0:0]
    dtypes = {c: lines[c].dtype if c in lines.columns else t for c, t in DTYPES.items()}
    dtypes.update({c: lines[c].dtype for c in lines.columns if c not in dtypes})
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in dtypes.items()})


def reconcile_following_references(
    lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame, lo_us: int, hi_us: int,
    tol: Tolerances, fetch: Fetch | None, stripe_payouts: pd.DataFrame | None = None,
    entries_in_day: int | None = None,
) -> tuple[Reconciliation, pd.DataFrame]:
    """``reconcile`` of the day (a large day in buckets: ``buckets.reconcile``), with the
    entries outside ``lines`` that its open references name. Returns the reconciliation and
    those entries' lines (every extract column; empty when none was needed), which the
    package's context must carry. ``lines`` may be the claims' lines only
    (``engine.claim_mask``, ``CLAIM_COLUMNS``) with ``entries_in_day``."""
    found = _lines_template(lines)
    rec = reconcile(lines, stripe, payouts, lo_us, hi_us, tol, stripe_payouts, entries_in_day)
    if fetch is None:
        return rec, found
    # What was asked already, per direction (a reference asked forward may later be asked anywhere).
    asked: dict[bool, set[tuple[str, str]]] = {False: set(), True: set()}
    for _ in range(MAX_ROUNDS):
        # Only ``lines``' columns: the others of the day's lines would be missing values.
        both = union_lines(lines, found[list(lines.columns)])
        anywhere, later = open_references(rec, both, stripe, payouts)
        todo = {False: anywhere - asked[False], True: later - asked[True]}
        if not any(todo.values()):
            break
        parts = []
        for later_only, refs in todo.items():
            if refs:
                asked[later_only] |= refs
                parts.append(fetch(sorted(refs), later_only))
        new = union_lines(lines.iloc[0:0], *parts).drop_duplicates(["journal_id", "line_no"])
        new = new[~isin(new["journal_id"], both["journal_id"])]
        if not len(new):
            break
        found = union_lines(found, new)
        rec = reconcile(union_lines(lines, found[list(lines.columns)]), stripe, payouts, lo_us, hi_us, tol,
                        stripe_payouts, entries_in_day)
    return rec, found.reset_index(drop=True)
