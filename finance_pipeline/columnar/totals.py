"""``ledger.totals`` of a frame of journal lines, grouped column-wise; the same rows as
proof/package.ledger_totals gives entry by entry (finance_pipeline_tests/columnar/test_totals.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finance_pipeline.proof.package import totals_rows


def totals_by_currency(lines: pd.DataFrame) -> list[dict]:
    """Debits and credits per currency of ``lines`` (amount_minor, direction, currency)."""
    if lines.empty:
        return []
    amount = lines["amount_minor"].to_numpy(dtype=np.int64)
    debit = (lines["direction"] == "debit").fillna(False).to_numpy(dtype=bool)
    # Grouped on integer codes (currencies sorted, missing ones left out, as groupby does).
    codes, currencies = pd.factorize(lines["currency"], sort=True)
    keep = codes >= 0
    frame = pd.DataFrame({"d": np.where(debit, amount, 0)[keep], "c": np.where(debit, 0, amount)[keep]})
    sums = frame.groupby(codes[keep], sort=True)[["d", "c"]].sum()
    return totals_rows({str(currencies[code]): (int(d), int(c))
                        for code, d, c in zip(sums.index.tolist(), sums["d"].tolist(), sums["c"].tolist())})
