"""The files of one day's proof package, written from the day's frames (no I/O, no keys);
export/prove.prove_day puts them together with the statement.

Beside the four files of `finance-proof/1` the bundle carries `reconciliation_context.json`:
the boundary ledger entries (within the time tolerance outside the day), the roles of the
accounts the reconciliation read and the tolerances. With it, `ledger_entries.jsonl` and
`provider_records.jsonl` reproduce the report exactly (`finance-pipeline reconcile --replay`).
Its hash is signed as the extra statement member `reconciliation.context_sha256`.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.proof.package import CONTEXT_FORMAT
from finance_pipeline.proof.verify import Computed
from finance_pipeline.reconciliation.engine import Tolerances



@dataclass(frozen=True)
class DayBundle:
    """A day's package before its signatures. The statement is held as ``S``, its canonical
    bytes, computed once: what is signed, hashed, chained and compared is these bytes."""

    day: str
    statement_bytes: bytes
    files: dict[str, bytes]  # every file but proof_package.json, which needs the signatures
    # The ledger file's tree head as computed over its bytes, kept apart from the statement:
    # the self-check need not build the tree again.
    computed: dict[str, Computed] = field(default_factory=dict)

    @property
    def statement(self) -> dict:
        """A fresh parse of ``S`` each time: changing it changes nothing signed or published."""
        return json.loads(self.statement_bytes)

    @property
    def statement_sha256(self) -> str:
        return hashlib.sha256(self.statement_bytes).hexdigest()

    @property
    def proof_id(self) -> str:
        return self.statement["proof_id"]

    @property
    def merkle_root(self) -> str:
        return self.statement["ledger"]["merkle_root"]

    @property
    def entries(self) -> int:
        return self.statement["ledger"]["entries"]


def provider_records(stripe: pd.DataFrame, payouts: pd.DataFrame, *more: pd.DataFrame) -> list[dict]:
    """Every record the reconciliation read, as the provider sent it plus a `provider` member.

    The pulls store that as the ``record`` column; a frame stored by an earlier version has
    the record alone (``raw``) and gets the member here.
    """
    out = []
    for frame in (stripe, payouts, *more):
        if "record" in frame.columns:
            for provider, rid, text in zip(frame["provider"].tolist(), frame["id"].tolist(),
                                           frame["record"].tolist()):
                record = json.loads(text) if isinstance(text, str) else None
                if not isinstance(record, dict) or record.get("provider") != provider:
                    raise ValueError(f"{provider} record {rid!r}: its stored text is not the record with "
                                     f"\"provider\": {json.dumps(provider)}; pull the day again")
                out.append(record)
            continue
        for provider, raw in zip(frame["provider"].tolist(), frame["raw"].tolist()):
            record = json.loads(raw)
            if "provider" in record:
                raise ValueError(f"{provider} record {record.get('id')!r} already has a 'provider' member")
            record["provider"] = provider
            out.append(record)
    return out


def _context_parts(day: str, lines: pd.DataFrame, tol: Tolerances,
                   stripe_payouts: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    lo, hi = day_bounds_us(day)
    outside = lines[((lines["ts_us"] < lo) | (lines["ts_us"] >= hi)) & lines["provider"].notna()]
    codes, _ = pd.factorize(lines["account_id"], sort=False)
    if (codes >= 0).all():  # the first line of each account, as drop_duplicates keeps it
        first = np.sort(np.unique(codes, return_index=True)[1])
        roles = lines[["account_id", "account_role"]].iloc[first].sort_values("account_id")
    else:
        roles = lines[["account_id", "account_role"]].drop_duplicates("account_id").sort_values("account_id")
    doc = {
        "format": CONTEXT_FORMAT,
        "interval": {"from": format_ts_us(lo), "to": format_ts_us(hi)},
        "tolerances": {"time_s": tol.time_s, "amount_minor": tol.amount_minor,
                       "per_class_minor": dict(sorted(tol.per_class_minor.items()))},
        "account_roles": {str(a): (None if pd.isna(r) else str(r))
                          for a, r in zip(roles["account_id"], roles["account_role"])},
    }
    payouts = payout_objects(stripe_payouts)
    if payouts:  # only then: a day without Stripe payouts keeps the context it always had
        doc["stripe_payouts"] = payouts
    return doc, outside


def context_document(day: str, lines: pd.DataFrame, tol: Tolerances,
                     stripe_payouts: pd.DataFrame | None = None) -> dict:
    """What the reconciliation read besides the two published data files."""
    from finance_pipeline.ledger.extract import entries_from_lines

    doc, outside = _context_parts(day, lines, tol, stripe_payouts)
    return {**doc, "boundary_entries": entries_from_lines(outside)}


def context_bytes(day: str, lines: pd.DataFrame, tol: Tolerances,
                  stripe_payouts: pd.DataFrame | None = None) -> bytes:
    """``canonical_bytes(context_document(day, lines, tol))``, with the boundary entries written
    by the columnar leaf encoder: members sort as account_roles < boundary_entries < format <
    interval < tolerances, so the entries' array goes right after the roles."""
    from finance_pipeline.columnar.leaves import entry_leaves

    doc, outside = _context_parts(day, lines, tol, stripe_payouts)
    names = sorted([*doc, "boundary_entries"], key=lambda k: k.encode("utf-16-be"))
    assert names[:2] == ["account_roles", "boundary_entries"], names
    roles = canonical_str({"account_roles": doc.pop("account_roles")})
    entries = ",".join(entry_leaves(outside).to_pylist())
    return (roles[:-1] + ',"boundary_entries":[' + entries + "]," + canonical_str(doc)[1:]).encode("utf-8")


def _frame_records(frame: pd.DataFrame):
    """(texts, providers, ids) of a pull frame's ``record`` column as string arrays; None when
    the frame has none (stored before the pulls wrote it) or a value is missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

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
    import pyarrow as pa
    import pyarrow.compute as pc

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
    """`provider_records.jsonl` and its record count:
    ``provider_records_bytes(provider_records(stripe, payouts))``, taken straight from the
    frames' ``record`` texts (canonical already, written by the pulls) when they are in
    (provider, id) order or can be put in it, else by the per-record path (which also raises
    where that path raises)."""
    import pyarrow as pa
    import pyarrow.compute as pc

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
    from finance_pipeline.proof import package as pkg

    records = provider_records(stripe, payouts, *more)
    return pkg.provider_records_bytes(records), len(records)


def payout_record_frames(stripe_payouts: pd.DataFrame | None, stripe_ids: pd.Series) -> list[pd.DataFrame]:
    """The balance transactions fetched for the day's Stripe payouts that the balance pull does
    not hold, as a (provider, id, record) frame for the provider file (none when there are none)."""
    from finance_pipeline.providers.stripe_payouts import fetched_not_pulled

    fetched = fetched_not_pulled(stripe_payouts, stripe_ids)
    if not len(fetched):
        return []
    return [pd.DataFrame({c: fetched[src].astype("string[pyarrow]").to_numpy() for c, src in
                          (("provider", "provider"), ("id", "balance_transaction"),
                           ("record", "balance_transaction_record"))})]


def payout_objects(stripe_payouts: pd.DataFrame | None) -> list[dict]:
    """The day's Stripe payout objects as the context carries them: as Stripe sent them, with
    the provider member, by id. They decide how payout records compare (status, arrival)."""
    if stripe_payouts is None or not len(stripe_payouts):
        return []
    return [json.loads(text) for text in stripe_payouts.sort_values("id")["record"].tolist()]
