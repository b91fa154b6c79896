"""The package's context and provider files written column-wise: byte for byte what their
per-record reference in export/bundle.py gives (finance_pipeline_tests/perf)."""

from __future__ import annotations

import io

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
    entries = ",".join(entry_leaves(outside).to_pylist())
    return (roles[:-1] + ',"boundary_entries":[' + entries + "]," + canonical_str(doc)[1:]).encode("utf-8")


def _frame_records(frame: pd.DataFrame):
    """(texts, providers, ids) of a pull frame's ``record`` column as string arrays; None when
    the frame has none (stored before the pulls wrote it) or a value is missing."""
    if "record" not in frame.columns:
        return None

    def column(name: str, *, combine: bool = True):
        arr = pa.array(frame[name])
        if isinstance(arr, pa.ChunkedArray):
            return arr.combine_chunks() if combine else arr
        return pa.chunked_array([arr]) if not combine else arr

    # The texts stay in their chunks (joining them would copy 0.4 GB at a million records).
    record, provider, ids = column("record", combine=False), column("provider"), column("id")
    for arr in (record, provider, ids):
        if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return None
    if len(frame) and (pc.any(pc.equal(pc.utf8_length(provider), 0)).as_py()
                       or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py()):
        return None
    return record, provider.cast(pa.string()), ids.cast(pa.string())


# Records are copied into the file this many at a time, so the file is the only full copy.
RECORD_CHUNK = 1 << 16


def _write_lines(texts, out: io.BytesIO, order=None) -> None:
    """Write each text of ``texts`` (in ``order`` when given) followed by a newline."""
    ls = pa.large_string()
    n = len(texts) if order is None else len(order)
    for lo in range(0, n, RECORD_CHUNK):
        part = texts.slice(lo, RECORD_CHUNK) if order is None else texts.take(order.slice(lo, RECORD_CHUNK))
        joined = pc.binary_join_element_wise(part.cast(ls), pa.scalar("\n", ls), pa.scalar("", ls))
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
        parts.sort(key=lambda part: part[1][0].as_py())
        keys = pa.table({"p": pa.concat_arrays([p[1] for p in parts]), "i": pa.concat_arrays([p[2] for p in parts])})
        n = keys.num_rows
        if n > 1:
            p_prev, p_next = keys["p"].slice(0, n - 1), keys["p"].slice(1)
            i_prev, i_next = keys["i"].slice(0, n - 1), keys["i"].slice(1)
            ascending = pc.or_(pc.greater(p_next, p_prev),
                               pc.and_(pc.equal(p_next, p_prev), pc.greater(i_next, i_prev)))
            in_order = pc.all(ascending).as_py()
        else:
            in_order = True
        out = io.BytesIO()
        if in_order:
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
