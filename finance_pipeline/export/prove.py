"""A day's proof, in the order every path runs it: the Dagster assets (and `export`, which
materializes them), the bench in one process, and the restore drill on a restored database.

1. ``extract_day``: the ledger lines of the day's window (ledger/extract.extract_window_lines);
2. ``reconcile_day``: the reconciliation, following open references into the whole ledger;
3. ``prove_day``: the package's files and statement (its files written by export/bundle.py);
4. ``exporter.seal``: signed and verified as an auditor would;
5. ``exporter.publish_day``: the day sealed, the package published once, the registry written.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Protocol, Sequence

import pandas as pd
import sqlalchemy as sa

from finance_pipeline.columnar.files import context_bytes, provider_records_file
from finance_pipeline.columnar.totals import totals_by_currency
from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.timeutil import day_bounds_us, recon_window_us
from finance_pipeline.export.bundle import DayBundle, payout_record_frames
from finance_pipeline.memory import release_unused
from finance_pipeline.proof.package import CONTEXT_FILE, LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE
from finance_pipeline.proof.verify import Computed
from finance_pipeline.reconciliation.engine import Tolerances


def extract_day(engine: sa.Engine, day: str, tol: Tolerances) -> pd.DataFrame:
    """The lines the day's proof reads: its window (the day widened by the time tolerance)
    and the rest of each claim in it."""
    from finance_pipeline.ledger.extract import extract_window_lines

    return extract_window_lines(engine, *recon_window_us(day, tol.time_s))


def follow_references(engine: sa.Engine, day: str, tol: Tolerances) -> Callable[[Any, bool], pd.DataFrame]:
    """How the reconciliation reads the entries of references it follows beyond the window."""
    from finance_pipeline.ledger.extract import extract_linked_lines

    w_lo, w_hi = recon_window_us(day, tol.time_s)
    return lambda refs, later: extract_linked_lines(engine, refs, w_lo, w_hi, later_only=later)


def reconcile_day(engine: sa.Engine, day: str, lines: pd.DataFrame, stripe: pd.DataFrame,
                  payouts: pd.DataFrame, tol: Tolerances, *, stripe_payouts: pd.DataFrame | None = None):
    """(the reconciliation of the day, the ledger lines it followed beyond ``lines``)."""
    from finance_pipeline.reconciliation.counterparts import reconcile_following_references

    lo, hi = day_bounds_us(day)
    return reconcile_following_references(lines, stripe, payouts, lo, hi, tol,
                                          follow_references(engine, day, tol), stripe_payouts=stripe_payouts)


class FrameSource(Protocol):
    """A stored frame read when the bundle gets to it (``read``: these of its columns that it
    has, or all of them for None), so a step need not hold all three frames at once."""

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...


# What the provider file needs of a pull frame (``raw``: frames stored before ``record``).
PULL_COLUMNS = ("provider", "id", "record", "raw")


def _frame(frame: pd.DataFrame | FrameSource, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return frame if isinstance(frame, pd.DataFrame) else frame.read(columns)


def prove_day(day: str, lines: pd.DataFrame | FrameSource, stripe: pd.DataFrame | FrameSource,
              payouts: pd.DataFrame | FrameSource, report: dict, tol: Tolerances,
              previous: dict | None, counterparts: pd.DataFrame | None = None,
              stripe_payouts: pd.DataFrame | None = None) -> DayBundle:
    """The day's package before its signatures: every file and the statement. ``lines`` is
    the widened extract (``extract_day``); ``report`` the reconciliation's report and
    ``counterparts`` the entries outside the extract it followed (``reconcile_day``), into the
    context; ``stripe_payouts`` the payout objects read (into the context; the balance
    transactions fetched for them into the provider file).

    The ledger leaves, the provider records and the context's boundary entries are written
    column-wise (``entry_leaves``, ``provider_records_file``, ``context_bytes``): byte for
    byte what encoding each entry and record on its own gives (finance_pipeline_tests/columnar,
    finance_pipeline_tests/perf).
    Frames given as sources are read one after the other and let go once their file is
    written: at a million entries the ledger frame and the pulls are 1.3 GB together.
    """
    from concurrent.futures import ThreadPoolExecutor

    from finance_pipeline.columnar.leaves import entry_leaves_jsonl
    from finance_pipeline.ledger.extract import union_lines
    from finance_pipeline.proof import package as pkg
    from finance_pipeline.proof.merkle import tree_head_and_size_of_lines

    lo, hi = day_bounds_us(day)
    lines = _frame(lines)
    ts = lines["ts_us"].to_numpy()
    day_mask = (ts >= lo) & (ts < hi)
    # hashlib and Arrow's kernels release the GIL: the context is written while the ledger file
    # is, and the Merkle tree is built while the provider file is.
    with ThreadPoolExecutor(max_workers=2) as pool:
        # No name for the union: without counterparts it is ``lines`` itself, which must go below.
        context_future = pool.submit(context_bytes, day,
                                     lines if counterparts is None else union_lines(lines, counterparts),
                                     tol, stripe_payouts)
        ledger_bytes = entry_leaves_jsonl(lines, day_mask)
        root = pool.submit(tree_head_and_size_of_lines, ledger_bytes)
        totals = totals_by_currency(lines.loc[day_mask, ["amount_minor", "direction", "currency"]])
        ledger_lines = int(day_mask.sum())
        context = context_future.result()
        del lines, ts, day_mask
        release_unused()  # the ledger frame, before the pulls are read
        stripe_frame = _frame(stripe, PULL_COLUMNS)
        provider_bytes, provider_count = provider_records_file(
            stripe_frame, _frame(payouts, PULL_COLUMNS), *payout_record_frames(stripe_payouts, stripe_frame["id"]))
        merkle_root, ledger_entries = root.result()
    report_bytes = canonical_bytes(report)
    summary = report["summary"]
    statement = pkg.build_statement(
        day=day, ledger_file=ledger_bytes, ledger_lines=ledger_lines, totals=totals,
        provider_records_bytes=provider_bytes, provider_records=provider_count, report_bytes=report_bytes,
        matched=int(summary["matched"]), discrepancies=int(sum(summary["discrepancies"].values())),
        previous=previous,
        extra={"reconciliation": {"context_sha256": hashlib.sha256(context).hexdigest()}},
        merkle_root=merkle_root, ledger_entries=ledger_entries,
    )
    files = {LEDGER_FILE: ledger_bytes, PROVIDERS_FILE: provider_bytes, REPORT_FILE: report_bytes,
             CONTEXT_FILE: context}
    computed = {LEDGER_FILE: Computed(ledger_bytes, merkle_root)}
    return DayBundle(day=day, statement_bytes=pkg.statement_bytes(statement), files=files, computed=computed)
