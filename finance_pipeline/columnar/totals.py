"""``ledger.totals`` of a frame of journal lines, grouped column-wise; the same rows as
proof/package.ledger_totals gives entry by entry (finance_pipeline_tests/columnar/test_totals.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from finance_pipeline.proof.package import totals_rows


def totals_by_currency(lines: pd.DataFrame) -> list[dict]:
    """Debits and credits per currency of ``lines`` (amount_minor, direction, currency)."""
    return totals_rows(sums_by_currency(lines))


class DayTally:
    """What a day holds of an extract read in pieces of whole entries: its entries, its journal
    lines and the sums by currency (``totals``), added up piece by piece (the pieces of a day
    hold disjoint entries, so their counts add up)."""

    def __init__(self, lo_us: int, hi_us: int):
        self.lo, self.hi = lo_us, hi_us
        self.entries = self.lines = 0
        self.sums: dict[str, tuple[int, int]] = {}

    def add(self, piece: pd.DataFrame) -> np.ndarray:
        """Count ``piece`` in; its rows inside the day, as a mask."""
        ts = piece["ts_us"].to_numpy(dtype=np.int64)
        in_day = (ts >= self.lo) & (ts < self.hi)
        self.entries += int(piece["journal_id"][in_day].nunique())
        self.lines += int(in_day.sum())
        # Only the columns the totals read: a copy of a whole piece is a gigabyte at 1M entries.
        sums_by_currency(piece.loc[in_day, ["currency", "direction", "amount_minor"]], self.sums)
        return in_day

    @property
    def totals(self) -> list[dict]:
        return totals_rows(self.sums)


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
