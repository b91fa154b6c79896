"""``ledger.totals`` of a frame of journal lines, grouped column-wise; the same rows as
proof/package.ledger_totals gives entry by entry (finance_pipeline_tests/columnar/test_totals.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finance_pipeline.proof.package import totals_rows


def totals_by_currency(lines: pd.DataFrame) -> list[dict]:
    """Debits and credits per currency of ``lines`` (amount_minor, direction, currency)."""
    return totals_rows(sums_by_currency(lines))


def sums_by_currency(lines: pd.DataFrame, into: dict[str, tuple[int, int]] | None = None
                     ) -> dict[str, tuple[int, int]]:
    """{currency: (debits, credits)} of ``lines``, added to ``into`` when given (a day read in
    pieces: ``totals_rows`` of the sums of its pieces is ``totals_by_currency`` of the day)."""
    out = {} if into is None else into
    if lines.empty:
        return out
    amount = lines["amount_minor"].to_numpy(dtype=np.int64)
    debit = (lines["direction"] == "debit").fillna(False).to_numpy(dtype=bool)
    # Grouped on integer codes (currencies sorted, missing ones left out, as groupby does).
    codes, currencies = pd.factorize(lines["currency"], sort=True)
    keep = codes >= 0
    frame = pd.DataFrame({"d": np.where(debit, amount, 0)[keep], "c": np.where(debit, 0, amount)[keep]})
    sums = frame.groupby(codes[keep], sort=True)[["d", "c"]].sum()
    for code, d, c in zip(sums.index.tolist(), sums["d"].tolist(), sums["c"].tolist()):
        d0, c0 = out.get(str(currencies[code]), (0, 0))
        out[str(currencies[code])] = (d0 + int(d), c0 + int(c))
    return out
