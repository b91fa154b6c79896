"""Gates validate with BOOLEAN_ONLY first and re-run failing parts with the full format: every
GateResult is the one the full format alone gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finance_pipeline.quality import gates
from finance_pipeline.reconciliation import Tolerances, reconcile
from finance_pipeline_tests.reconciliation.builders import HI, LO

from .test_leaves_and_bundle import scenario_inputs


def _both(monkeypatch, fn, *args):
    quick = fn(*args).to_metadata()
    monkeypatch.setattr(gates, "QUICK_FORMAT", gates.RESULT_FORMAT)
    full = fn(*args).to_metadata()
    monkeypatch.undo()
    return quick, full


@pytest.fixture(scope="module")
def inputs():
    lines, stripe, payouts = scenario_inputs(7, True)
    return lines, stripe, payouts, reconcile(lines, stripe, payouts, LO, HI, Tolerances())


def _broken_lines(lines: pd.DataFrame) -> pd.DataFrame:
    bad = lines.copy()
    bad.loc[bad.index[:3], "currency"] = "usd"
    bad.loc[bad.index[5], "amount_minor"] = 0
    bad.loc[bad.index[7], "direction"] = "up"
    return bad


def _broken_stripe(stripe: pd.DataFrame) -> pd.DataFrame:
    bad = stripe.copy()
    bad.loc[bad.index[1], "net"] = bad["net"].iloc[1] + 1
    bad.loc[bad.index[2], "fee"] = -5
    return pd.concat([bad, bad.iloc[:1]], ignore_index=True)


@pytest.mark.parametrize("case", ["clean", "broken", "missing_column"])
def test_ledger_gate(monkeypatch, inputs, case):
    lines = inputs[0]
    if case == "broken":
        lines = _broken_lines(lines)
    elif case == "missing_column":
        lines = lines.drop(columns=["currency"])
    quick, full = _both(monkeypatch, gates.run_ledger_checks, lines)
    assert quick == full
    assert quick["success"] is (case == "clean")


@pytest.mark.parametrize("broken", [False, True])
def test_provider_gates(monkeypatch, inputs, broken):
    stripe, payouts = inputs[1], inputs[2]
    if broken:
        stripe = _broken_stripe(stripe)
        payouts = payouts.assign(status=np.where(np.arange(len(payouts)) == 0, "lost", payouts["status"]))
    for fn, frame in ((gates.run_stripe_checks, stripe), (gates.run_payout_checks, payouts)):
        quick, full = _both(monkeypatch, fn, frame)
        assert quick == full
        assert quick["success"] is not broken


def test_parity_gate(monkeypatch, inputs):
    disc = inputs[3].discrepancies
    quick, full = _both(monkeypatch, gates.run_parity_checks, disc)
    assert quick == full and not quick["success"]
    policy = gates.ParityPolicy.from_config(None, {c: 99 for c in gates.ParityPolicy().blocking_classes})
    quick, full = _both(monkeypatch, gates.run_parity_checks, disc, policy)
    assert quick == full and quick["success"]
