"""A day's proof, in the order every path runs it: the Dagster assets (and `export`, which
materializes them), the bench in one process, and the restore drill on a restored database.

1. ``extract_day``: the ledger lines of the day's window (ledger/extract.extract_window_lines;
   ``write_day`` writes them to a file in slices, as the Dagster asset does);
2. ``reconcile_day``: the reconciliation, following open references into the whole ledger;
3. ``prove_day``: the package's files and statement (its files written by export/bundle.py);
4. ``exporter.seal``: signed and verified as an auditor would;
5. ``exporter.publish_day``: the day sealed, the package published once, the registry written.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from finance_pipeline.columnar.files import context_bytes, provider_records_file
from finance_pipeline.columnar.totals import DayTally, totals_by_currency
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


def write_day(engine: sa.Engine, day: str, tol: Tolerances, path: Any,
              on_piece: Callable[[pd.DataFrame], Any] | None = None) -> int:
    """``extract_day`` written to the Parquet file ``path`` in time slices, never held whole
    (ledger/extract.write_window_lines); the number of lines."""
    from finance_pipeline.ledger.extract import write_window_lines

    return write_window_lines(engine, *recon_window_us(day, tol.time_s), path, on_piece)


def follow_references(engine: sa.Engine, day: str, tol: Tolerances) -> Callable[[Any, bool], pd.DataFrame]:
    """How the reconciliation reads the entries of references it follows beyond the window."""
    from finance_pipeline.ledger.extract import extract_linked_lines

    w_lo, w_hi = recon_window_us(day, tol.time_s)
    return lambda refs, later: extract_linked_lines(engine, refs, w_lo, w_hi, later_only=later)


def reconcile_day(engine: sa.Engine, day: str, lines: pd.DataFrame, stripe: pd.DataFrame,
                  payouts: pd.DataFrame, tol: Tolerances, *, stripe_payouts: pd.DataFrame | None = None,
                  entries_in_day: int | None = None):
    """(the reconciliation of the day, the ledger lines it followed beyond ``lines``). ``lines``:
    the extract, or its claims' lines with ``entries_in_day`` (``read_for_reconciliation``)."""
    from finance_pipeline.reconciliation.counterparts import reconcile_following_references

    lo, hi = day_bounds_us(day)
    return reconcile_following_references(lines, stripe, payouts, lo, hi, tol, follow_references(engine, day, tol),
                                          stripe_payouts=stripe_payouts, entries_in_day=entries_in_day)


class FrameSource(Protocol):
    """A stored frame read when the bundle gets to it (``read``: these of its columns that it
    has, or all of them for None; ``batches``: the same in consecutive pieces of at most
    ``rows`` rows), so a step need not hold all three frames at once, nor all of the ledger."""

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame: ...

    def batches(self, rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]: ...


# What the provider file needs of a pull frame (``raw``: frames stored before ``record``).
PULL_COLUMNS = ("provider", "id", "record", "raw")


def _frame(frame: pd.DataFrame | FrameSource, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return frame if isinstance(frame, pd.DataFrame) else frame.read(columns)


# A stored extract is read this many lines at a time (about 150 MB of frame).
LEDGER_PIECE_LINES = 1 << 19
# The reconciliation step's pieces are larger: the ledger gate's fixed cost is paid per piece.
GATE_PIECE_LINES = 1 << 20


class _NotInFileOrder(Exception):
    """The stored extract is not in ledger file order: the whole frame is read instead."""


def _whole_entries(pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The pieces re-cut so that no entry's lines are split between two of them: the lines of
    the last entry of a piece go to the next one (an entry's lines are consecutive in an
    extract in file order; ``_entries_in_file_order`` checks that it is)."""
    carry: pd.DataFrame | None = None
    for piece in pieces:
        if carry is not None:
            piece = pd.concat([carry, piece], ignore_index=True)
        if not len(piece):
            continue
        jid = piece["journal_id"]
        if pd.isna(jid.iat[-1]):
            raise _NotInFileOrder
        other = np.flatnonzero((jid != jid.iat[-1]).fillna(True).to_numpy(dtype=bool))
        cut = int(other[-1]) + 1 if len(other) else 0
        if cut:
            yield piece.iloc[:cut]
        carry = piece.iloc[cut:]
    if carry is not None and len(carry):
        yield carry


# What file order is judged on; a piece without them, or with a missing value in them, is not
# in it (and the whole frame's paths say what is wrong).
_ORDER_COLUMNS = ("journal_id", "ts_us", "line_no")


def _orderable(pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for piece in pieces:
        if any(c not in piece.columns or piece[c].isna().any() for c in _ORDER_COLUMNS) \
                or not all(pd.api.types.is_integer_dtype(piece[c]) for c in ("ts_us", "line_no")):
            raise _NotInFileOrder
        yield piece


def _entries_in_file_order(pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The pieces of an extract (journal_id, ts_us and line_no at least) re-cut into pieces of
    whole entries, checked to be in ledger file order, within and across pieces; raises
    _NotInFileOrder at the first that is not. No journal id may come back in a later piece
    (an entry's lines at two instants): each piece's ids are checked against a hash of every
    id before it (8 bytes an entry; a collision only costs the whole-frame path)."""
    from finance_pipeline.columnar.leaves import in_file_order

    last: tuple[int, str] | None = None
    seen = np.empty(0, dtype=np.uint64)
    for piece in _whole_entries(_orderable(pieces)):
        if not in_file_order(piece):
            raise _NotInFileOrder
        ts = piece["ts_us"].to_numpy(dtype=np.int64)
        jid = piece["journal_id"]
        # Entries go on across pieces in file order (ids compare in code point order, as there).
        if last is not None and not (int(ts[0]), jid.iat[0]) > last:
            raise _NotInFileOrder
        last = (int(ts[-1]), jid.iat[-1])
        ids = np.sort(pd.util.hash_array(jid.drop_duplicates().to_numpy(dtype=object)))
        at = np.searchsorted(seen, ids)
        if (seen[np.minimum(at, len(seen) - 1)] == ids).any() if len(seen) else False:
            raise _NotInFileOrder
        seen = np.sort(np.concatenate([seen, ids]), kind="stable")  # two sorted runs: a merge
        del ts, jid, ids, at
        yield piece
    if last is None:
        raise _NotInFileOrder  # nothing stored: the whole (empty) frame has the dtypes


def read_for_reconciliation(day: str, lines: FrameSource) -> tuple[pd.DataFrame, int | None, Any]:
    """One pass over a stored extract for the reconciliation step, a piece of whole entries in
    memory at a time: (the lines the reconciliation reads, the day's entry count, the GX
    ledger suite's result). The lines are ``CLAIM_COLUMNS`` of those ``claim_mask`` keeps (at
    five million entries the extract is 4.5 GB as a frame); the suite's result is the whole
    frame's (quality/gates.run_ledger_checks_in_pieces). An extract not in file order is read
    whole."""
    from finance_pipeline.quality import gates
    from finance_pipeline.reconciliation.engine import CLAIM_COLUMNS, claim_mask

    lo, hi = day_bounds_us(day)
    kept: list[pd.DataFrame] = []
    entries = 0

    def claims_of(piece: pd.DataFrame) -> pd.DataFrame:
        return piece.loc[claim_mask(piece), [c for c in CLAIM_COLUMNS if c in piece.columns]]

    def in_day(piece: pd.DataFrame) -> int:
        ts = piece["ts_us"].to_numpy(dtype=np.int64)
        return int(piece["journal_id"][(ts >= lo) & (ts < hi)].nunique())

    def judged() -> Iterator[pd.DataFrame]:
        nonlocal entries
        for piece in _entries_in_file_order(lines.batches(GATE_PIECE_LINES)):
            entries += in_day(piece)
            kept.append(claims_of(piece))
            yield piece
            del piece  # not held while the next one is read

    try:
        result = gates.run_ledger_checks_in_pieces(judged())
    except _NotInFileOrder:
        result = None  # read whole below, once the pieces' frames are let go
    if result is not None:
        claims = pd.concat(kept, ignore_index=True)
        kept.clear()
        release_unused()  # what the pieces were read into, which the allocator keeps otherwise
        return claims, entries, result
    kept.clear()
    release_unused()
    whole = lines.read()
    result = gates.run_ledger_checks(whole)
    try:
        claims, entries = claims_of(whole), in_day(whole)
    except (KeyError, ValueError, TypeError):  # ids or instants missing: the gate says so
        claims, entries = whole[[c for c in CLAIM_COLUMNS if c in whole.columns]], None
    del whole
    release_unused()
    return claims, entries, result


def _ledger_in_pieces(day: str, pieces: Iterable[pd.DataFrame]) -> tuple[bytes, int, list[dict], pd.DataFrame]:
    """(the ledger file, its journal lines, its totals, the lines the context needs) of an
    extract read piece by piece: only a piece of it is in memory at a time. The context needs
    the lines outside the day with a provider (its boundary entries) and the first line of
    each account (its roles); given those and the same counterparts, ``context_bytes`` writes
    what it writes given the whole extract. Raises _NotInFileOrder when the extract is not in
    file order (then the whole frame gives the file)."""
    from finance_pipeline.columnar.leaves import entry_leaves_jsonl

    tally = DayTally(*day_bounds_us(day))
    out = io.BytesIO()
    kept: list[pd.DataFrame] = []
    accounts: set[str] = set()
    for piece in _entries_in_file_order(pieces):
        day_mask = tally.add(piece)
        out.write(entry_leaves_jsonl(piece, day_mask))
        account = piece["account_id"]
        first = (~account.duplicated(keep="first") & ~account.isin(accounts)).to_numpy(dtype=bool)
        accounts.update(account[first].dropna().tolist())
        keep = first | (~day_mask & piece["provider"].notna().to_numpy(dtype=bool))
        kept.append(piece[keep])
    return out.getvalue(), tally.lines, tally.totals, pd.concat(kept, ignore_index=True)


# A stored Stripe pull's record texts are read this many at a time into the provider file
# (about 30 MB of texts).
PULL_PIECE_RECORDS = 1 << 16


def _provider_file(stripe: pd.DataFrame | FrameSource, payouts: pd.DataFrame | FrameSource,
                   stripe_payouts: pd.DataFrame | None) -> tuple[bytes, int]:
    """`provider_records.jsonl` and its count. A stored Stripe pull in (provider, id) order, as
    the pull stores it, gives its record texts a piece at a time
    (``columnar.files.streamed_file_plan``, then ``write_streamed_file``); any other is read
    whole."""
    from finance_pipeline.columnar.files import streamed_file_plan, write_streamed_file

    payouts_frame = _frame(payouts, PULL_COLUMNS)
    if not isinstance(stripe, pd.DataFrame) and hasattr(stripe, "batches"):
        keys = stripe.read(["provider", "id"])
        plan = streamed_file_plan(keys, payouts_frame, *payout_record_frames(stripe_payouts, keys["id"]))
        del keys  # the order is known: the keys are not held while the texts are written
        if plan is not None:
            texts = (piece["record"] for piece in stripe.batches(PULL_PIECE_RECORDS, ["record"]) if "record" in piece)
            streamed = write_streamed_file(plan, texts)
            if streamed is not None:
                return streamed
            del texts  # and the piece it was reading, before the whole frame is read
        del plan
        release_unused()
    stripe_frame = _frame(stripe, PULL_COLUMNS)
    return provider_records_file(stripe_frame, payouts_frame, *payout_record_frames(stripe_payouts, stripe_frame["id"]))


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
    written: at a million entries the ledger frame and the pulls are 1.3 GB together. A stored
    extract is read in pieces of whole entries (``_ledger_in_pieces``): the proof never holds
    the whole ledger frame (4.5 GB at five million entries), only its file.
    """
    from concurrent.futures import ThreadPoolExecutor

    from finance_pipeline.columnar.leaves import entry_leaves_jsonl
    from finance_pipeline.ledger.extract import union_lines
    from finance_pipeline.proof import package as pkg
    from finance_pipeline.proof.merkle import tree_head_and_size_of_lines

    lo, hi = day_bounds_us(day)
    in_pieces = None
    if not isinstance(lines, pd.DataFrame) and hasattr(lines, "batches"):  # else: read whole
        try:
            in_pieces = _ledger_in_pieces(day, lines.batches(LEDGER_PIECE_LINES))
        except _NotInFileOrder:
            release_unused()
    # hashlib and Arrow's kernels release the GIL: the context is written while the ledger file
    # is, and the Merkle tree is built while the provider file is.
    with ThreadPoolExecutor(max_workers=2) as pool:
        if in_pieces is not None:
            ledger_bytes, ledger_lines, totals, lines = in_pieces
            del in_pieces
            root = pool.submit(tree_head_and_size_of_lines, ledger_bytes)
            context = context_bytes(day, lines if counterparts is None else union_lines(lines, counterparts),
                                    tol, stripe_payouts)
            del lines
        else:
            lines = _frame(lines)
            ts = lines["ts_us"].to_numpy()
            day_mask = (ts >= lo) & (ts < hi)
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
        provider_bytes, provider_count = _provider_file(stripe, payouts, stripe_payouts)
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
