"""prove_day holds one big frame at a time: the ledger frame it read from its source is let go
before the pulls are read (at a million entries, 0.9 GB that the provider file's peak carried)."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
import pytest

from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.export.prove import prove_day
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline_tests.perf.test_leaves_and_bundle import DAY, scenario_inputs


class Source:
    """A FrameSource that remembers the frames it handed out, weakly."""

    def __init__(self, frame: pd.DataFrame, on_read=None):
        self.frame, self.on_read, self.given = frame, on_read, []

    def read(self, columns=None) -> pd.DataFrame:
        if self.on_read:
            self.on_read()
        out = self.frame[[c for c in columns if c in self.frame.columns]] if columns else self.frame.copy()
        self.given.append(weakref.ref(out))
        return out


@pytest.mark.parametrize("with_counterparts", [False, True])
def test_the_ledger_frame_is_let_go_before_the_pulls_are_read(with_counterparts):
    lines, stripe, payouts = scenario_inputs(7, True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    ledger = Source(lines)
    alive_at_pull: list[bool] = []

    def ledger_alive():
        gc.collect()
        alive_at_pull.append(any(ref() is not None for ref in ledger.given))

    # No entry followed: the union with the extract is the extract itself.
    counterparts = lines.iloc[0:0].copy() if with_counterparts else None
    bundle = prove_day(DAY, ledger, Source(stripe, ledger_alive), Source(payouts), report, tol, None,
                       counterparts=counterparts)
    assert ledger.given and alive_at_pull == [False]
    # The same bytes as with the frames handed over directly.
    direct = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    assert bundle.files == direct.files and bundle.statement_bytes == direct.statement_bytes
