"""The files of one day's proof package from the day's frames, record by record (no I/O, no
keys): the reference that columnar/files.py writes column-wise; export/prove.prove_day puts
them together with the statement.

Beside the four files of `finance-proof/1` the bundle carries `reconciliation_context.json`:
the boundary ledger entries (within the time tolerance outside the day), the roles of the
accounts the reconciliation read and the tolerances. With it, `ledger_entries.jsonl` and
`provider_records.jsonl` reproduce the report exactly (`finance-pipeline reconcile --replay`).
Its hash is signed as the extra statement member `reconciliation.context_sha256`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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


def context_parts(day: str, lines: pd.DataFrame, tol: Tolerances,
                  stripe_payouts: pd.DataFrame | None = None) -> tuple[dict, pd.DataFrame]:
    """The context document without its boundary entries, and the lines of those entries."""
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

    doc, outside = context_parts(day, lines, tol, stripe_payouts)
    return {**doc, "boundary_entries": entries_from_lines(outside)}


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
