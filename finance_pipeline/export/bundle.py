"""The files of one day's proof package, built from the day's frames (no I/O, no keys).

Beside the four files of `finance-proof/1` the bundle carries `reconciliation_context.json`:
the boundary ledger entries (within the time tolerance outside the day), the roles of the
accounts the reconciliation read and the tolerances. With it, `ledger_entries.jsonl` and
`provider_records.jsonl` reproduce the report exactly (`finance-pipeline reconcile --replay`).
Its hash is signed as the extra statement member `reconciliation.context_sha256`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.reconciliation.engine import Tolerances

LEDGER_FILE = "ledger_entries.jsonl"
PROVIDER_FILE = "provider_records.jsonl"
REPORT_FILE = "reconciliation_report.json"
PACKAGE_FILE = "proof_package.json"
CONTEXT_FILE = "reconciliation_context.json"
CONTEXT_FORMAT = "finance-reconciliation-context/1"


@dataclass
class DayBundle:
    day: str
    statement: dict
    files: dict[str, bytes]  # every file but proof_package.json, which needs the signatures

    @property
    def merkle_root(self) -> str:
        return self.statement["ledger"]["merkle_root"]


def totals_by_currency(lines: pd.DataFrame) -> list[dict]:
    """The statement's `ledger.totals`: debits and credits per currency, sorted by currency."""
    if lines.empty:
        return []
    amount = lines["amount_minor"].to_numpy(dtype=np.int64)
    debit = lines["direction"].to_numpy() == "debit"
    frame = pd.DataFrame({"currency": lines["currency"].to_numpy(), "d": np.where(debit, amount, 0),
                          "c": np.where(debit, 0, amount)})
    sums = frame.groupby("currency", sort=True)[["d", "c"]].sum()
    return [{"currency": str(cur), "debits_minor": int(r.d), "credits_minor": int(r.c)}
            for cur, r in sums.iterrows()]


def provider_records(stripe: pd.DataFrame, payouts: pd.DataFrame) -> list[dict]:
    """Every record the reconciliation read, as the provider sent it plus a `provider` member."""
    out = []
    for frame in (stripe, payouts):
        for provider, raw in zip(frame["provider"].tolist(), frame["raw"].tolist()):
            record = json.loads(raw)
            if "provider" in record:
                raise ValueError(f"{provider} record {record.get('id')!r} already has a 'provider' member")
            record["provider"] = provider
            out.append(record)
    return out


def context_document(day: str, lines: pd.DataFrame, tol: Tolerances) -> dict:
    """What the reconciliation read besides the two published data files."""
    from finance_pipeline.ledger.extract import entries_from_lines

    lo, hi = day_bounds_us(day)
    outside = lines[((lines["ts_us"] < lo) | (lines["ts_us"] >= hi)) & lines["provider"].notna()]
    roles = (lines[["account_id", "account_role"]].drop_duplicates("account_id")
             .sort_values("account_id"))
    return {
        "format": CONTEXT_FORMAT,
        "interval": {"from": format_ts_us(lo), "to": format_ts_us(hi)},
        "tolerances": {"time_s": tol.time_s, "amount_minor": tol.amount_minor,
                       "per_class_minor": dict(sorted(tol.per_class_minor.items()))},
        "account_roles": {str(a): (None if pd.isna(r) else str(r))
                          for a, r in zip(roles["account_id"], roles["account_role"])},
        "boundary_entries": entries_from_lines(outside),
    }


def build_bundle(day: str, lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame,
                 report: dict, tol: Tolerances, previous: dict | None) -> DayBundle:
    """All files and the unsigned statement of ``day``. ``lines`` is the widened extract."""
    from finance_pipeline.ledger.extract import entries_from_lines
    from finance_pipeline.proof import package as pkg

    lo, hi = day_bounds_us(day)
    in_day = lines[(lines["ts_us"] >= lo) & (lines["ts_us"] < hi)]
    leaves = [canonical_bytes(e) for e in entries_from_lines(in_day)]
    ledger_bytes = pkg.ledger_entries_bytes(leaves)
    records = provider_records(stripe, payouts)
    provider_bytes = pkg.provider_records_bytes(records)
    report_bytes = canonical_bytes(report)
    context_bytes = canonical_bytes(context_document(day, lines, tol))
    summary = report["summary"]
    statement = pkg.build_statement(
        day=day, ledger_leaves=leaves, ledger_lines=len(in_day), totals=totals_by_currency(in_day),
        provider_records_bytes=provider_bytes, provider_records=len(records), report_bytes=report_bytes,
        matched=int(summary["matched"]), discrepancies=int(sum(summary["discrepancies"].values())),
        previous=previous,
        extra={"reconciliation": {"context_sha256": hashlib.sha256(context_bytes).hexdigest()}},
    )
    files = {LEDGER_FILE: ledger_bytes, PROVIDER_FILE: provider_bytes, REPORT_FILE: report_bytes,
             CONTEXT_FILE: context_bytes}
    return DayBundle(day=day, statement=statement, files=files)
