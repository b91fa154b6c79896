"""Turning journal entries (leaves) into the ledger-lines frame the engine reads.

The Dagster extract reads the same columns straight from the database; this path serves
replays from a published bundle and tests.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from finance_pipeline.domain.journal import JournalEntry, parse_entry

LINE_COLUMNS = [
    "journal_id", "ts_us", "kind", "memo", "batch_id", "provider", "provider_reference", "reverses",
    "posted_by", "reviewed_by", "line_no", "account_id", "direction", "amount_minor", "currency",
    "account_role",
]


def lines_frame(entries: Iterable[JournalEntry | dict], roles: Mapping[str, str | None]) -> pd.DataFrame:
    """One row per journal line, with the role of each line's account from ``roles``."""
    cols: dict[str, list] = {c: [] for c in LINE_COLUMNS}
    for raw in entries:
        e = raw if isinstance(raw, JournalEntry) else parse_entry(raw)
        for n, line in enumerate(e.lines):
            cols["journal_id"].append(e.journal_id)
            cols["ts_us"].append(e.ts_us)
            cols["kind"].append(e.kind)
            cols["memo"].append(e.memo)
            cols["batch_id"].append(e.batch_id)
            cols["provider"].append(e.provider)
            cols["provider_reference"].append(e.provider_reference)
            cols["reverses"].append(e.reverses)
            cols["posted_by"].append(e.posted_by)
            cols["reviewed_by"].append(e.reviewed_by)
            cols["line_no"].append(n)
            cols["account_id"].append(line.account_id)
            cols["direction"].append(line.direction)
            cols["amount_minor"].append(line.amount_minor)
            cols["currency"].append(line.currency)
            cols["account_role"].append(roles.get(line.account_id))
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in cols.items()})
    for c in ("ts_us", "line_no", "amount_minor"):
        frame[c] = frame[c].astype(np.int64)
    return frame
