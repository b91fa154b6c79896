"""The proof's ledger leaves written column-wise: ``entry_leaves`` and ``entry_leaves_jsonl``
give byte for byte ``canonical_str`` of each entry ``ledger.extract.entries_from_lines`` builds
(the reference, which also takes over for what the columnar path cannot write)."""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finance_pipeline.columnar.canonical import canonical_text_lines, canonical_texts
from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_str
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.ledger.extract import entries_from_lines


def format_ts_arrow(ts_us: np.ndarray) -> pa.Array:
    """``format_ts_us`` of every instant, as an Arrow string array (vectorised for years
    1000-9999, the rest one by one)."""
    arr = np.asarray(ts_us, dtype=np.int64)
    if not len(arr) or arr.min() < -30_610_224_000_000_000 or arr.max() >= 253_402_300_800_000_000:
        return pa.array([format_ts_us(v) for v in arr.tolist()], pa.string())
    secs, frac = np.divmod(arr, 1_000_000)
    base = pa.array(np.datetime_as_string(secs.astype("datetime64[s]"), unit="s"), pa.string())
    if isinstance(base, pa.ChunkedArray):
        base = base.combine_chunks()
    frac_text = pc.utf8_lpad(pc.cast(pa.array(frac), pa.string()), 6, "0")
    with_frac = pc.binary_join_element_wise(base, ".", frac_text, "Z", "")
    return pc.if_else(pa.array(frac == 0), pc.binary_join_element_wise(base, "Z", ""), with_frac)


_ENTRY_STRINGS = ("journal_id", "kind", "memo", "batch_id", "provider", "provider_reference",
                  "reverses", "posted_by", "reviewed_by")


# Leaves are encoded in chunks of this many entries, two chunks at a time (Arrow's kernels
# release the GIL): the working set stays small and both cores are used.
LEAF_CHUNK = 1 << 17
THREADS = 2


def entry_leaves(lines: pd.DataFrame) -> pa.ChunkedArray:
    """The canonical leaves (RFC 8785 text) of the entries in ``lines``, in ledger file order.

    Element i is ``canonical_str(entries_from_lines(lines)[i])``; the entries are built as
    Arrow struct arrays and encoded column-wise (``canonical_texts``), some fifty times faster
    than encoding dicts one by one. Inputs the columnar path cannot represent (ids missing,
    columns of mixed types, integers beyond +-2^53) take the reference path, which raises
    where it does.
    """
    chunks = _leaf_chunks(lines, jsonl=False)
    if chunks is None:
        return pa.chunked_array([pa.array([canonical_str(e) for e in entries_from_lines(lines)],
                                          pa.large_string())])
    return pa.chunked_array(chunks, type=pa.large_string())


def entry_leaves_jsonl(lines: pd.DataFrame, mask: np.ndarray | None = None) -> bytes:
    """`ledger_entries.jsonl` of the entries in ``lines`` (or in ``lines[mask]``, without copying
    the frame): the leaves of ``entry_leaves``, each followed by a newline, written chunk by
    chunk (no array of all the leaves is kept)."""
    # Each chunk is copied into the file as soon as it is written and then dropped: joining a
    # list of all the chunks at the end held the file twice (1 GB at a million entries).
    out = io.BytesIO()
    if _leaf_chunks(lines, jsonl=True, mask=mask, sink=out.write) is None:
        subset = lines if mask is None else lines[mask]
        return "".join(canonical_str(e) + "\n" for e in entries_from_lines(subset)).encode("utf-8")
    return out.getvalue()  # no copy: BytesIO hands over its buffer


def in_file_order(lines: pd.DataFrame) -> bool:
    """Whether ``lines`` are in ledger file order as the extract returns them: sorted by
    (ts_us, journal_id, line_no), each entry's lines together; then any run of whole entries
    is written as it is, and the runs' files joined are the file of all of them."""
    jid = pa.array(lines["journal_id"])
    jid = jid.combine_chunks() if isinstance(jid, pa.ChunkedArray) else jid
    if not len(lines) or jid.null_count or not (pa.types.is_string(jid.type) or pa.types.is_large_string(jid.type)):
        return False
    return _file_order_runs(lines, np.arange(len(lines)), jid) is not None


def _run_chunks(fn, count: int, sink: Callable[[Any], Any] | None = None) -> list[Any]:
    """``[fn(k) for k in range(count)]``, THREADS at a time; with ``sink``, each result in order
    is given to it instead and not kept."""
    keep: list[Any] = []
    put = sink or keep.append
    if count <= 1 or THREADS <= 1:
        for k in range(count):
            put(fn(k))
        return keep
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        # At most THREADS + 2 chunks are alive at once (THREADS + 1 pending, one being taken):
        # the next is submitted as each one is taken.
        pending = [pool.submit(fn, k) for k in range(min(count, THREADS + 1))]
        for k in range(count):
            result = pending[k].result()
            pending[k] = None
            if k + THREADS + 1 < count:
                pending.append(pool.submit(fn, k + THREADS + 1))
            put(result)
            del result
    return keep


def _leaf_chunks(lines: pd.DataFrame, *, jsonl: bool, mask: np.ndarray | None = None,
                 sink: Callable[[Any], Any] | None = None) -> list[Any] | None:
    rows = np.arange(len(lines)) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
    if not len(rows):
        return []
    try:
        return _encode_leaf_chunks(lines, rows, jsonl, sink)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, CanonicalJSONError):
        return None


class _Bad(Exception):
    """A chunk the columnar path cannot write; the reference path takes over."""


def _file_order_runs(lines: pd.DataFrame, rows: np.ndarray, jid_col: pa.Array):
    """When the rows already are in file order, as the extract returns them (a contiguous run
    of the frame, sorted by ts_us, journal_id, line_no, each entry's lines together on one ts),
    the (start, end) of each entry's run of rows; else None."""
    if not len(rows) or rows[-1] - rows[0] + 1 != len(rows):
        return None
    base, n = int(rows[0]), len(rows)
    ts = lines["ts_us"].to_numpy(dtype=np.int64)[base:base + n]
    line_no = lines["line_no"].to_numpy(dtype=np.int64)[base:base + n]
    jid = jid_col.slice(base, n)
    if n == 1:
        return np.array([base]), np.array([base + 1])
    step = np.diff(ts)
    if np.any(step < 0):
        return None
    a, b = jid.slice(0, n - 1), jid.slice(1)
    same_id = pc.equal(b, a).to_numpy(zero_copy_only=False)
    back = pc.less(b, a).to_numpy(zero_copy_only=False)
    if np.any((step == 0) & back) or np.any(same_id & ((step != 0) | (np.diff(line_no) <= 0))):
        return None
    starts = np.flatnonzero(np.r_[True, ~same_id])
    # An id may not come back later (on another ts): that would be one entry cut in two.
    if len(pc.unique(jid.take(pa.array(starts)))) != len(starts):
        return None
    return starts + base, np.r_[starts[1:], n] + base


def _encode_leaf_chunks(lines: pd.DataFrame, rows: np.ndarray, jsonl: bool,
                        sink: Callable[[Any], Any] | None = None) -> list[Any] | None:
    jid_col = pa.array(lines["journal_id"])
    jid_col = jid_col.combine_chunks() if isinstance(jid_col, pa.ChunkedArray) else jid_col
    if (jid_col.null_count and jid_col.take(pa.array(rows)).null_count) or not (
            pa.types.is_string(jid_col.type) or pa.types.is_large_string(jid_col.type)):
        return None
    runs = _file_order_runs(lines, rows, jid_col)
    if runs is not None:
        # Already in file order: entries are runs of rows, lines are consecutive rows.
        starts, ends = runs
        entry_rows = starts
        offsets = np.r_[starts, ends[-1]] - starts[0]
        line_base = int(starts[0])
        line_rows = None
        ts = lines["ts_us"].to_numpy(dtype=np.int64)[entry_rows]
        rank = entry_rows
    else:
        # The grouping of entries_from_lines: factorize ids, sort rows by (entry, line_no). Codes
        # of the whole column serve the subset as well: only which rows share an id matters.
        codes, _ = pd.factorize(lines["journal_id"], sort=False)
        order = rows[np.lexsort((lines["line_no"].to_numpy(dtype=np.int64)[rows], codes[rows]))]
        grouped = codes[order]  # rows of the subset (positions in the frame), entry by entry
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        ends = np.r_[starts[1:], len(order)]
        first = order[starts]
        ts = lines["ts_us"].to_numpy(dtype=np.int64)[first]
        # File order: by ts, then journal_id in code point order (= UTF-8 byte order, as Arrow sorts).
        rank = pc.sort_indices(pa.table({"ts": ts, "jid": jid_col.take(pa.array(first))}),
                               sort_keys=[("ts", "ascending"), ("jid", "ascending")]).to_numpy()
        lens = (ends - starts)[rank]
        offsets = np.zeros(len(rank) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        line_rows = order[np.repeat(starts[rank] - offsets[:-1], lens) + np.arange(offsets[-1])]
        line_base = 0
        entry_rows = first[rank]
        ts = ts[rank]
    columns = {c: pa.array(lines[c]) for c in (*_ENTRY_STRINGS, "account_id", "direction", "currency")}
    amounts = lines["amount_minor"].to_numpy(dtype=np.int64)

    def take(name: str, rows: np.ndarray) -> pa.Array:
        out = columns[name].take(pa.array(rows))
        return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out

    def piece(name: str, lo: int, hi: int) -> pa.Array:
        out = columns[name].slice(line_base + lo, hi - lo)
        return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out

    def encode(k: int) -> Any:
        e_lo, e_hi = k * LEAF_CHUNK, min((k + 1) * LEAF_CHUNK, len(rank))
        l_lo, l_hi = int(offsets[e_lo]), int(offsets[e_hi])
        if line_rows is None:  # consecutive rows: slices, no copies
            line_struct = pa.StructArray.from_arrays(
                [piece(c, l_lo, l_hi) for c in ("account_id", "direction", "currency")]
                + [pa.array(amounts[line_base + l_lo:line_base + l_hi])],
                names=["account_id", "direction", "currency", "amount_minor"],
            )
        else:
            rows = line_rows[l_lo:l_hi]
            line_struct = pa.StructArray.from_arrays(
                [take(c, rows) for c in ("account_id", "direction", "currency")] + [pa.array(amounts[rows])],
                names=["account_id", "direction", "currency", "amount_minor"],
            )
        mine = entry_rows[e_lo:e_hi]
        entries = pa.StructArray.from_arrays(
            [take(c, mine) for c in _ENTRY_STRINGS]
            + [format_ts_arrow(ts[e_lo:e_hi]),
               pa.LargeListArray.from_arrays(pa.array(offsets[e_lo:e_hi + 1] - l_lo, pa.int64()), line_struct)],
            names=[*_ENTRY_STRINGS, "ts", "lines"],
        )
        if jsonl:
            out = canonical_text_lines(entries)
            if out is None:
                raise _Bad
            ends = np.frombuffer(out.buffers()[1], dtype=np.int64)[out.offset:out.offset + len(out) + 1]
            return out.buffers()[2].slice(int(ends[0]), int(ends[-1] - ends[0]))
        texts = canonical_texts(entries, errors="null")
        if texts.null_count:
            raise _Bad
        return texts

    try:
        return _run_chunks(encode, -(-len(rank) // LEAF_CHUNK), sink)
    except _Bad:
        return None
