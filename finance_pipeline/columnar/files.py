"""The package's context and provider files written column-wise: byte for byte what their
per-record reference in export/bundle.py gives (finance_pipeline_tests/perf)."""

from __future__ import annotations

import io
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finance_pipeline.columnar.leaves import entry_leaves
from finance_pipeline.domain.canonical import canonical_str, utf16_key
from finance_pipeline.export.bundle import context_parts, provider_records
from finance_pipeline.proof.package import provider_records_bytes
from finance_pipeline.reconciliation.engine import Tolerances


def context_bytes(day: str, lines: pd.DataFrame, tol: Tolerances,
                  stripe_payouts: pd.DataFrame | None = None) -> bytes:
    """``canonical_bytes(context_document(...))`` (export/bundle.py), with the boundary entries written
    by the columnar leaf encoder: members sort as account_roles < boundary_entries < format <
    interval < tolerances, so the entries' array goes right after the roles."""
    doc, outside = context_parts(day, lines, tol, stripe_payouts)
    names = sorted([*doc, "boundary_entries"], key=utf16_key)
    assert names[:2] == ["account_roles", "boundary_entries"], names
    roles = canonical_str({"account_roles": doc.pop("account_roles")})
    out = io.BytesIO()
    out.write((roles[:-1] + ',"boundary_entries":[').encode("utf-8"))
    # Written a chunk of leaves at a time: at five million entries the array is 218 MB, and
    # its text as Python strings, joined and encoded, took 2 GB.
    leaves = entry_leaves(outside)
    del outside
    assert not leaves.null_count  # a null would be skipped by the join, not written
    if len(leaves):
        _write_lines(leaves, out, sep=",")
        out.seek(-1, io.SEEK_END)  # the separator written after the last leaf
        out.truncate()
    del leaves
    out.write(("]," + canonical_str(doc)[1:]).encode("utf-8"))
    return out.getvalue()


def _frame_records(frame: pd.DataFrame):
    """(texts, providers, ids) of a pull frame's ``record`` column as string arrays; None when
    the frame has none (stored before the pulls wrote it) or a value is missing."""
    if "record" not in frame.columns:
        return None
    # The texts stay in their chunks (joining them would copy 0.4 GB at a million records).
    record, keys = _strings(frame["record"], combine=False), _frame_keys(frame)
    if record is None or keys is None:
        return None
    return record, *keys


def _strings(column: pd.Series, *, combine: bool = True):
    """The column as an Arrow string array (chunked unless ``combine``); None if a value is missing."""
    arr = pa.array(column)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if combine else arr
    elif not combine:
        arr = pa.chunked_array([arr])
    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return arr


def _frame_keys(frame: pd.DataFrame):
    """(providers, ids) of a pull frame as string arrays; None when a value is missing or empty."""
    provider, ids = _strings(frame["provider"]), _strings(frame["id"])
    if provider is None or ids is None:
        return None
    if len(frame) and (pc.any(pc.equal(pc.utf8_length(provider), 0)).as_py()
                       or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py()):
        return None
    return provider.cast(pa.string()), ids.cast(pa.string())


# Records are copied into the file this many at a time, so the file is the only full copy.
RECORD_CHUNK = 1 << 16


def _write_lines(texts, out: io.BytesIO, order=None, sep: str = "\n") -> None:
    """Write each text of ``texts`` (in ``order`` when given) followed by ``sep``."""
    ls = pa.large_string()
    n = len(texts) if order is None else len(order)
    for lo in range(0, n, RECORD_CHUNK):
        part = texts.slice(lo, RECORD_CHUNK) if order is None else texts.take(order.slice(lo, RECORD_CHUNK))
        joined = pc.binary_join_element_wise(part.cast(ls), pa.scalar(sep, ls), pa.scalar("", ls))
        for chunk in (joined.chunks if isinstance(joined, pa.ChunkedArray) else [joined]):
            if not len(chunk):
                continue
            offs = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
            out.write(chunk.buffers()[2].slice(int(offs[0]), int(offs[-1] - offs[0])))


def provider_records_file(stripe: pd.DataFrame, payouts: pd.DataFrame, *more: pd.DataFrame) -> tuple[bytes, int]:
    """`provider_records.jsonl` and its record count: what
    ``provider_records_bytes(provider_records(stripe, payouts))`` gives (export/bundle.py,
    proof/package.py), taken straight from the
    frames' ``record`` texts (canonical already, written by the pulls) when they are in
    (provider, id) order or can be put in it, else by the per-record path (which also raises
    where that path raises)."""
    parts = [_frame_records(stripe), _frame_records(payouts), *(_frame_records(m) for m in more)]
    if all(part is not None for part in parts):
        parts = [part for part in parts if len(part[0])]
        if not parts:
            return b"", 0
        # Each frame comes sorted by id (the pulls sort it); order the frames by provider and
        # take their texts as they are when that already gives (provider, id) order.
        keys = _ordered_keys(parts)
        n = keys.num_rows
        out = io.BytesIO()
        if _ascending(keys):
            for part in parts:
                _write_lines(part[0], out)
            return out.getvalue(), n
        order = pc.sort_indices(keys, sort_keys=[("p", "ascending"), ("i", "ascending")])
        keys = keys.take(order)
        same = pc.and_(pc.equal(keys["p"].slice(1), keys["p"].slice(0, n - 1)),
                       pc.equal(keys["i"].slice(1), keys["i"].slice(0, n - 1)))
        if not pc.any(same).as_py():
            # Joined once: a take on chunked texts would join them again for every slice.
            _write_lines(pa.concat_arrays([c for p in parts for c in p[0].cast(pa.large_string()).chunks]),
                         out, order)
            return out.getvalue(), n
    records = provider_records(stripe, payouts, *more)
    return provider_records_bytes(records), len(records)


def _ordered_keys(parts: list) -> pa.Table:
    """Sort the (texts, providers, ids) parts by their first provider (each frame comes sorted by
    id, the pulls sort it) and return their keys in that order, as columns p and i."""
    parts.sort(key=lambda part: part[1][0].as_py())
    return pa.table({"p": pa.concat_arrays([p[1] for p in parts]), "i": pa.concat_arrays([p[2] for p in parts])})


def _ascending(keys: pa.Table) -> bool:
    """Whether the (p, i) rows of ``keys`` are in strictly increasing (provider, id) order."""
    n = keys.num_rows
    if n <= 1:
        return True
    p_prev, p_next = keys["p"].slice(0, n - 1), keys["p"].slice(1)
    i_prev, i_next = keys["i"].slice(0, n - 1), keys["i"].slice(1)
    return pc.all(pc.or_(pc.greater(p_next, p_prev),
                         pc.and_(pc.equal(p_next, p_prev), pc.greater(i_next, i_prev)))).as_py()


def streamed_file_plan(stripe_keys: pd.DataFrame, payouts: pd.DataFrame,
                       *more: pd.DataFrame) -> list[tuple[pa.ChunkedArray | None, int]] | None:
    """The first half of ``provider_records_file`` for a Stripe pull given as its ``provider``
    and ``id`` columns (``stripe_keys``), whose ``record`` texts come later in pieces
    (``write_streamed_file``), so the pull's texts (2 GB at five million records) are never
    held whole. The parts of the file in order, as (texts, count), with None as the texts of
    the Stripe pull; None when the frames are not in (provider, id) order as they stand (the
    pulls sort theirs) or a key or text is missing, and the caller builds the file from the
    whole frames. Holds no keys: at five million records they are 0.5 GB, not needed once the
    order is known. No records at all give an empty plan (an empty file)."""
    keys = _frame_keys(stripe_keys)
    others = [_frame_records(payouts), *(_frame_records(m) for m in more)]
    if keys is None or any(part is None for part in others):
        return None
    parts = [part for part in [(None, *keys), *others] if len(part[1])]
    del keys
    if not parts or not _ascending(_ordered_keys(parts)):  # _ordered_keys puts the parts in order
        return [] if not parts else None
    return [(texts, len(providers)) for texts, providers, _ in parts]


def write_streamed_file(plan: list[tuple[pa.ChunkedArray | None, int]],
                        stripe_texts: Iterable[pd.Series]) -> tuple[bytes, int] | None:
    """The file of a ``streamed_file_plan`` (the bytes ``provider_records_file`` gives), the
    Stripe pull's texts read from ``stripe_texts``, consecutive pieces in the keys' row order;
    None when they are not its count or one is missing."""
    out = io.BytesIO()
    for texts, count in plan:
        if texts is not None:
            _write_lines(texts, out)
            continue
        written = 0
        for piece in stripe_texts:
            arr = _strings(piece)
            if arr is None:
                return None
            _write_lines(arr, out)
            written += len(arr)
            del piece, arr  # not held while the next piece is read
        if written != count:
            return None
    return out.getvalue(), sum(count for _, count in plan)
