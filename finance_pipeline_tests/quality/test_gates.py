"""The data-quality gates, run for real through Great Expectations (no mocking).

GX builds its context once per process (the gates cache it), so only the first test pays the
import; the subprocess tests check the lazy import and the quiet run from a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

from finance_pipeline.ledger.extract import COLUMN_NAMES as EXTRACT_COLUMNS
from finance_pipeline.ledger.extract import DTYPES as LEDGER_DTYPES
from finance_pipeline.providers.payout_pull import SETTLEMENT_COLUMNS, settlements_frame
from finance_pipeline.providers.stripe_pull import (
    BALANCE_TRANSACTION_COLUMNS,
    balance_transactions_frame,
)
from finance_pipeline.quality import (
    SUITE_VERSIONS,
    Failure,
    GateResult,
    ParityPolicy,
    run_ledger_checks,
    run_parity_checks,
    run_payout_checks,
    run_stripe_checks,
)
from finance_pipeline.quality.suites import (
    DEFAULT_BLOCKING,
    LEDGER_COLUMNS,
    PAYOUT_COLUMNS,
    STRIPE_COLUMNS,
    journal_totals,
)
from finance_pipeline.reconciliation.engine import CLASSES, DISCREPANCY_COLUMNS

# ---------------------------------------------------------------------------------------------
# Builders


def _line(jid: str, line_no: int, direction: str, amount: int, currency: str = "USD",
          account: str | None = None, **extra) -> dict:
    return {
        "journal_id": jid, "ts_us": 1_793_577_600_000_000 + line_no, "kind": "standard",
        "memo": f"memo {jid}", "batch_id": None, "provider": "stripe",
        "provider_reference": f"ch_{jid}", "reverses": None, "posted_by": "svc",
        "reviewed_by": None, "line_no": line_no, "account_id": account or f"acct_{direction}",
        "direction": direction, "amount_minor": amount, "currency": currency,
        "account_role": None, **extra,
    }


def ledger_rows() -> list[dict]:
    return [
        _line("je-1", 1, "debit", 9_680, account="stripe_clearing_usd"),
        _line("je-1", 2, "debit", 320, account="stripe_fees_usd"),
        _line("je-1", 3, "credit", 10_000, account="revenue_usd"),
        _line("je-2", 1, "debit", 1_200, "JPY"),
        _line("je-2", 2, "credit", 1_200, "JPY"),
        # Multi-currency journal, balanced in each currency.
        _line("je-3", 1, "debit", 500, "EUR"),
        _line("je-3", 2, "credit", 500, "EUR"),
        _line("je-3", 3, "debit", 700, "GBP"),
        _line("je-3", 4, "credit", 700, "GBP"),
    ]


def ledger_frame(rows: list[dict] | None = None, dtypes: dict | None = LEDGER_DTYPES) -> pd.DataFrame:
    df = pd.DataFrame(ledger_rows() if rows is None else rows, columns=list(EXTRACT_COLUMNS))
    return df.astype(dtypes) if dtypes else df


def stripe_records() -> list[dict]:
    def txn(i: int, amount: int, fee: int, currency: str = "usd", kind: str = "charge") -> dict:
        return {
            "id": f"txn_{i:03d}", "object": "balance_transaction", "amount": amount,
            "available_on": 1_793_750_400, "created": 1_793_577_600 + i, "currency": currency,
            "fee": fee, "net": amount - fee, "reporting_category": kind, "source": f"ch_{i:03d}",
            "status": "available", "type": kind,
        }
    return [txn(1, 10_000, 320), txn(2, 2_500, 103, "eur"), txn(3, -10_000, 0, kind="refund"),
            txn(4, 1_200, 0, "jpy")]


def stripe_frame() -> pd.DataFrame:
    return balance_transactions_frame(stripe_records())


def payout_records() -> list[dict]:
    def rec(i: int, status: str, amount: int, currency: str = "USD") -> dict:
        return {
            "id": f"st_{i:03d}", "payout_id": f"po_{i:03d}", "status": status,
            "amount_minor": amount, "currency": currency,
            "created_at": "2026-11-02T08:00:00Z",
            "settled_at": None if status == "pending" else "2026-11-02T09:00:00Z",
        }
    return [rec(1, "settled", 50_000), rec(2, "pending", 1_000, "EUR"), rec(3, "failed", 7)]


def payout_frame() -> pd.DataFrame:
    return settlements_frame(payout_records())


def discrepancies(*classes: str) -> pd.DataFrame:
    rows = [
        {"class": cls, "provider": "stripe", "provider_id": f"txn_{i}", "journal_id": f"je-{i}",
         "currency": "USD", "provider_amount_minor": 100 + i, "ledger_amount_minor": None,
         "detail": f"{cls} #{i}"}
        for i, cls in enumerate(classes)
    ]
    df = pd.DataFrame(rows, columns=DISCREPANCY_COLUMNS)
    return df.astype({"provider_amount_minor": "Int64", "ledger_amount_minor": "Int64"})


def failure(result: GateResult, expectation: str, column: str | None = None) -> Failure:
    hits = [f for f in result.failures
            if f.expectation == expectation and (column is None or f.column == column)]
    assert hits, f"no {expectation} failure on {column!r} in:\n{result.markdown()}"
    return hits[0]


def only_failure(result: GateResult) -> Failure:
    assert not result.success
    assert len(result.failures) == 1, result.markdown()
    return result.failures[0]


def assert_plain_json(value) -> None:
    """Only plain Python JSON types (no numpy scalars, no NaN), all the way down."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value), value
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (type(value), value)
        if type(value) is float:
            assert np.isfinite(value)


# ---------------------------------------------------------------------------------------------
# Import cost and quietness


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "GX_ANALYTICS_ENABLED")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_importing_the_package_does_not_import_great_expectations():
    proc = _python("""
        import sys
        import finance_pipeline.quality
        import finance_pipeline.quality.gates, finance_pipeline.quality.suites
        loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'great_expectations')
        print(loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_gate_run_prints_nothing_and_turns_analytics_and_progress_bars_off():
    proc = _python("""
        import logging
        logging.basicConfig(level=logging.INFO)  # an application that logs INFO
        import pandas as pd
        from finance_pipeline.quality import run_payout_checks, run_ledger_checks
        from finance_pipeline.quality import gates
        r = run_payout_checks(pd.DataFrame({"id": ["a", "a"]}))
        assert not r.success
        r = run_ledger_checks(pd.DataFrame({"amount_minor": [1.5]}))
        assert not r.success
        ctx = gates._runner().context
        assert ctx.config.analytics_enabled is False
        assert ctx.variables.progress_bars["globally"] is False
        assert not ctx.validation_results_store.list_keys()
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


# ---------------------------------------------------------------------------------------------
# Contracts and clean frames


def test_contracts_match_the_producers():
    assert tuple(LEDGER_COLUMNS) == EXTRACT_COLUMNS
    assert list(STRIPE_COLUMNS) == list(BALANCE_TRANSACTION_COLUMNS)
    assert list(PAYOUT_COLUMNS) == list(SETTLEMENT_COLUMNS)


@pytest.mark.parametrize("dtypes", [LEDGER_DTYPES, None], ids=["extract-dtypes", "default-dtypes"])
def test_clean_ledger_passes(dtypes):
    result = run_ledger_checks(ledger_frame(dtypes=dtypes))
    assert result.success, result.markdown()
    assert result.failures == []
    assert result.name == "ledger_extract"
    assert result.suite_version == SUITE_VERSIONS["ledger_extract"]
    assert result.rows == 9
    assert result.evaluated == 47


def test_a_gate_does_not_keep_the_frame_it_checked():
    """GX's execution engine caches every batch it loads; the gates drop them after each run,
    or a day's frames (gigabytes at a million entries) stay alive until the process ends."""
    import gc

    import pyarrow as pa

    run_ledger_checks(ledger_frame())  # GX imported and its context built before the baseline
    gc.collect()
    baseline = pa.total_allocated_bytes()
    rows = [{**row, "memo": "m" * 1000} for row in ledger_rows() * 2000]
    frame = ledger_frame(rows)
    assert pa.total_allocated_bytes() - baseline > 15_000_000  # the memos live in Arrow memory
    run_ledger_checks(frame)
    del frame
    gc.collect()
    assert pa.total_allocated_bytes() - baseline < 1_000_000


def test_clean_stripe_and_payout_frames_from_the_producers_pass():
    stripe = run_stripe_checks(stripe_frame())
    payout = run_payout_checks(payout_frame())
    assert stripe.success, stripe.markdown()
    assert payout.success, payout.markdown()
    assert (stripe.name, payout.name) == ("stripe_balance_transactions", "payout_records")
    assert stripe.evaluated > 20 and payout.evaluated > 15


def test_empty_frames_pass_a_quiet_day():
    assert run_ledger_checks(ledger_frame([])).success
    assert run_stripe_checks(balance_transactions_frame([])).success
    assert run_payout_checks(settlements_frame([])).success
    assert run_parity_checks(discrepancies()).success
    # Empty with the right column names but object dtype (as built by some empty-path code).
    assert run_ledger_checks(pd.DataFrame(columns=list(EXTRACT_COLUMNS))).success


@pytest.mark.parametrize("runner, columns", [
    (run_ledger_checks, EXTRACT_COLUMNS),
    (run_stripe_checks, list(BALANCE_TRANSACTION_COLUMNS)),
    (run_payout_checks, list(SETTLEMENT_COLUMNS)),
    (run_parity_checks, DISCREPANCY_COLUMNS),
])
def test_empty_frames_without_the_columns_fail_the_schema(runner, columns):
    result = runner(pd.DataFrame())
    assert not result.success
    missing = {f.column for f in result.failures if f.expectation == "expect_column_to_exist"}
    assert missing == set(columns)


# ---------------------------------------------------------------------------------------------
# Ledger rules, each broken on its own


def test_unbalanced_journal_names_the_journal_currency_and_imbalance():
    rows = ledger_rows()
    rows[7]["amount_minor"] = 650  # je-3's GBP debit: 650 against a 700 credit
    result = run_ledger_checks(ledger_frame(rows))
    f = only_failure(result)
    assert f.expectation == "expect_column_values_to_be_between"
    assert f.column == "imbalance_minor"
    assert f.unexpected_count == 1
    assert f.samples == [{"journal_id": "je-3", "currency": "GBP", "debit_minor": 650,
                          "credit_minor": 700, "imbalance_minor": -50, "journal_lines": 4}]
    assert "balance per currency" in f.description and "1 of 4" in f.description


def test_journal_balanced_in_total_but_not_per_currency_fails():
    rows = [_line("je-x", 1, "debit", 100, "USD"), _line("je-x", 2, "credit", 100, "EUR")]
    result = run_ledger_checks(ledger_frame(rows))
    f = only_failure(result)
    assert f.column == "imbalance_minor"
    assert [(s["journal_id"], s["currency"], s["imbalance_minor"]) for s in f.samples] == [
        ("je-x", "USD", 100), ("je-x", "EUR", -100)]


def test_single_line_journal_fails_the_two_lines_rule():
    rows = ledger_rows() + [_line("je-solo", 1, "debit", 10)]
    result = run_ledger_checks(ledger_frame(rows))
    f = failure(result, "expect_column_values_to_be_between", "journal_lines")
    assert f.unexpected_count == 1
    assert f.samples[0]["journal_id"] == "je-solo" and f.samples[0]["journal_lines"] == 1
    # It is unbalanced too, and nothing else is wrong.
    assert {x.column for x in result.failures} == {"journal_lines", "imbalance_minor"}


def test_float_amount_column_fails_the_type_check():
    df = ledger_frame().astype({"amount_minor": "float64"})
    f = only_failure(run_ledger_checks(df))
    assert f.expectation == "expect_column_values_to_be_of_type"
    assert f.column == "amount_minor"
    assert "int64" in f.description and "float64" in f.description


def test_non_positive_amounts_fail_with_the_offending_lines():
    rows = ledger_rows()
    rows[3]["amount_minor"] = rows[4]["amount_minor"] = 0  # je-2 stays balanced
    f = only_failure(run_ledger_checks(ledger_frame(rows)))
    assert (f.expectation, f.column, f.unexpected_count) == (
        "expect_column_values_to_be_between", "amount_minor", 2)
    assert f.description == "amount_minor must be > 0: 2 of 9 rows fail"
    assert f.samples == [
        {"journal_id": "je-2", "line_no": 1, "amount_minor": 0},
        {"journal_id": "je-2", "line_no": 2, "amount_minor": 0},
    ]


def test_lower_case_currency_fails():
    rows = ledger_rows()
    rows[3]["currency"] = rows[4]["currency"] = "jpy"
    f = only_failure(run_ledger_checks(ledger_frame(rows)))
    assert (f.expectation, f.column, f.unexpected_count) == (
        "expect_column_values_to_be_in_set", "currency", 2)
    assert [s["currency"] for s in f.samples] == ["jpy", "jpy"]


def test_unknown_currency_code_fails():
    rows = ledger_rows()
    rows[3]["currency"] = rows[4]["currency"] = "XYZ"
    f = only_failure(run_ledger_checks(ledger_frame(rows)))
    assert f.column == "currency" and f.samples[0]["journal_id"] == "je-2"


def test_duplicate_journal_line_fails_uniqueness():
    rows = ledger_rows()
    rows[4]["line_no"] = 1  # je-2 has two line 1s (still balanced)
    f = only_failure(run_ledger_checks(ledger_frame(rows)))
    assert f.expectation == "expect_compound_columns_to_be_unique"
    assert f.column is None and "(journal_id, line_no)" in f.description
    assert f.unexpected_count == 2
    assert [(s["journal_id"], s["line_no"]) for s in f.samples] == [("je-2", 1), ("je-2", 1)]


def test_invalid_direction_fails():
    rows = ledger_rows()
    rows[4]["direction"] = "CREDIT"
    result = run_ledger_checks(ledger_frame(rows))
    f = failure(result, "expect_column_values_to_be_in_set", "direction")
    assert f.samples == [{"journal_id": "je-2", "line_no": 2, "direction": "CREDIT"}]
    # A line that is neither debit nor credit leaves its journal unbalanced as well.
    assert {x.column for x in result.failures} == {"direction", "imbalance_minor"}


def test_invalid_kind_fails():
    rows = ledger_rows()
    for r in rows[:3]:
        r["kind"] = "manual"
    f = only_failure(run_ledger_checks(ledger_frame(rows)))
    assert (f.column, f.unexpected_count) == ("kind", 3)
    assert "standard, adjustment, reversal" in f.description


def test_missing_journal_id_fails():
    rows = ledger_rows()
    rows[0]["journal_id"] = None
    result = run_ledger_checks(ledger_frame(rows))
    f = failure(result, "expect_column_values_to_not_be_null", "journal_id")
    assert f.samples == [{"journal_id": None, "line_no": 1}]


def test_missing_ledger_column_fails_schema_once():
    result = run_ledger_checks(ledger_frame().drop(columns=["amount_minor"]))
    f = only_failure(result)
    assert (f.expectation, f.column) == ("expect_column_to_exist", "amount_minor")
    assert "missing" in f.description and "not evaluated" in f.description
    assert result.evaluated == 47


def test_journal_totals_is_a_groupby_in_first_appearance_order():
    totals = journal_totals(ledger_frame())
    assert list(zip(totals["journal_id"], totals["currency"], totals["imbalance_minor"],
                    totals["journal_lines"])) == [
        ("je-1", "USD", 0, 3), ("je-2", "JPY", 0, 2), ("je-3", "EUR", 0, 4), ("je-3", "GBP", 0, 4)]
    assert totals["imbalance_minor"].dtype == np.int64


# ---------------------------------------------------------------------------------------------
# Stripe


def test_stripe_net_must_equal_amount_minus_fee():
    df = stripe_frame()
    df.loc[1, "net"] = 2_400  # txn_002: 2500 - 103 = 2397
    f = only_failure(run_stripe_checks(df))
    assert f.expectation == "expect_column_pair_values_to_be_equal"
    assert f.unexpected_count == 1
    assert f.samples == [{"id": "txn_002", "type": "charge", "currency": "EUR",
                          "amount": 2_500, "fee": 103, "net": 2_400}]


def test_stripe_negative_and_zero_fees_pass_when_net_is_amount_minus_fee():
    """A refund returning its fee (fee -290), a won dispute's refunded fee, a fee-free payout:
    ordinary Stripe activity that must not block a day."""
    df = stripe_frame()
    df.loc[0, "amount"], df.loc[0, "fee"], df.loc[0, "net"] = -10_000, -290, -9_710
    df.loc[1, "fee"] = 0
    df.loc[1, "net"] = df.loc[1, "amount"]
    assert run_stripe_checks(df).success
    df.loc[0, "net"] = -10_290  # the fee counted the wrong way round
    f = only_failure(run_stripe_checks(df))
    assert f.expectation == "expect_column_pair_values_to_be_equal"
    assert f.samples[0]["id"] == "txn_001" and f.samples[0]["fee"] == -290


def test_stripe_duplicate_and_null_ids_fail():
    df = stripe_frame()
    df.loc[1, "id"] = "txn_001"
    df.loc[3, "id"] = None
    result = run_stripe_checks(df)
    dup = failure(result, "expect_column_values_to_be_unique", "id")
    assert dup.unexpected_count == 2
    assert [s["id"] for s in dup.samples] == ["txn_001", "txn_001"]
    null = failure(result, "expect_column_values_to_not_be_null", "id")
    assert null.unexpected_count == 1 and null.samples[0]["id"] is None
    assert len(result.failures) == 2


def test_stripe_lower_case_currency_fails():
    df = stripe_frame()
    df.loc[2, "currency"] = "usd"
    f = only_failure(run_stripe_checks(df))
    assert f.column == "currency" and f.samples == [
        {"id": "txn_003", "type": "refund", "currency": "usd"}]


def test_stripe_float_amounts_fail_the_schema():
    df = stripe_frame().astype({"amount": "float64"})
    f = only_failure(run_stripe_checks(df))
    assert (f.expectation, f.column) == ("expect_column_values_to_be_of_type", "amount")


def test_stripe_missing_fee_column_is_one_failure():
    f = only_failure(run_stripe_checks(stripe_frame().drop(columns=["fee"])))
    assert (f.expectation, f.column) == ("expect_column_to_exist", "fee")


# ---------------------------------------------------------------------------------------------
# Payouts


def test_unknown_payout_status_fails():
    df = payout_frame()
    df.loc[2, "status"] = "in_transit"
    f = only_failure(run_payout_checks(df))
    assert (f.expectation, f.column) == ("expect_column_values_to_be_in_set", "status")
    assert f.samples == [{"id": "st_003", "payout_id": "po_003", "status": "in_transit",
                          "currency": "USD"}]


def test_payout_duplicate_ids_and_non_positive_amounts_fail():
    df = payout_frame()
    df.loc[1, "id"] = "st_001"
    df.loc[2, "amount_minor"] = 0
    result = run_payout_checks(df)
    assert failure(result, "expect_column_values_to_be_unique", "id").unexpected_count == 2
    amount = failure(result, "expect_column_values_to_be_between", "amount_minor")
    assert amount.samples == [{"id": "st_003", "payout_id": "po_003", "status": "failed",
                               "currency": "USD", "amount_minor": 0}]
    assert len(result.failures) == 2


def test_payout_bad_currency_and_missing_column_fail():
    df = payout_frame()
    df.loc[0, "currency"] = "usd"
    result = run_payout_checks(df.drop(columns=["ts_us"]))
    assert failure(result, "expect_column_values_to_be_in_set", "currency").unexpected_count == 1
    assert failure(result, "expect_column_to_exist", "ts_us")
    assert len(result.failures) == 2


# ---------------------------------------------------------------------------------------------
# Parity


def test_default_policy_blocks_every_class_but_timing_window():
    assert set(DEFAULT_BLOCKING) == set(CLASSES) - {"TIMING_WINDOW"}
    policy = ParityPolicy.from_config(None, None)
    assert policy == ParityPolicy()
    assert run_parity_checks(discrepancies("TIMING_WINDOW", "TIMING_WINDOW"), policy).success


@pytest.mark.parametrize("cls", DEFAULT_BLOCKING)
def test_default_policy_blocks_on_each_blocking_class(cls):
    result = run_parity_checks(discrepancies(cls, "TIMING_WINDOW", cls))
    f = only_failure(result)
    assert f.expectation == "expect_column_values_to_be_between"
    assert f.unexpected_count == 2
    assert f.description == f"{cls} discrepancies must be <= 0: 2 found"
    assert [s["provider_id"] for s in f.samples] == ["txn_0", "txn_2"]
    assert all(s["class"] == cls for s in f.samples)


def test_max_allowed_tolerates_up_to_the_limit():
    policy = ParityPolicy.from_config(None, {"AMOUNT_MISMATCH": 2})
    assert run_parity_checks(discrepancies("AMOUNT_MISMATCH", "AMOUNT_MISMATCH"), policy).success
    result = run_parity_checks(discrepancies(*["AMOUNT_MISMATCH"] * 3), policy)
    f = only_failure(result)
    assert f.unexpected_count == 3 and "<= 2: 3 found" in f.description
    assert result.params["max_allowed"]["AMOUNT_MISMATCH"] == 2
    # Other classes keep the default of 0.
    assert not run_parity_checks(discrepancies("FEE_MISMATCH"), policy).success


def test_custom_blocking_list():
    policy = ParityPolicy.from_config(["LEDGER_MISSING", "TIMING_WINDOW"], None)
    assert run_parity_checks(discrepancies("AMOUNT_MISMATCH"), policy).success
    assert not run_parity_checks(discrepancies("TIMING_WINDOW"), policy).success
    assert run_parity_checks(discrepancies("LEDGER_MISSING"), ParityPolicy.from_config([], None)).success


@pytest.mark.parametrize("blocking, max_allowed, match", [
    (["LEDGER_MISING"], None, r"unknown discrepancy class 'LEDGER_MISING'.*did you mean 'LEDGER_MISSING'"),
    (None, {"amount_mismatch": 1}, r"unknown discrepancy class 'amount_mismatch' in parity max_allowed"),
    (None, {"AMOUNT_MISMATCH": -1}, r"max_allowed\['AMOUNT_MISMATCH'\] must be an integer >= 0"),
    (None, {"AMOUNT_MISMATCH": 1.5}, r"must be an integer"),
])
def test_bad_parity_config_raises_a_clear_error(blocking, max_allowed, match):
    with pytest.raises(ValueError, match=match) as info:
        ParityPolicy.from_config(blocking, max_allowed)
    if "unknown" in match:
        assert "known classes: LEDGER_MISSING" in str(info.value)


def test_unknown_class_in_the_discrepancies_frame_fails():
    f = only_failure(run_parity_checks(discrepancies("NEW_KIND")))
    assert (f.expectation, f.column) == ("expect_column_values_to_be_in_set", "class")
    assert f.samples[0]["class"] == "NEW_KIND"


# ---------------------------------------------------------------------------------------------
# Result shape, determinism, samples


def test_metadata_is_plain_json_and_markdown_is_a_short_table():
    rows = ledger_rows()
    rows[3]["amount_minor"] = rows[4]["amount_minor"] = -5
    rows[0]["memo"] = "x" * 1_000
    result = run_ledger_checks(ledger_frame(rows))
    meta = result.to_metadata()
    assert_plain_json(meta)
    json.dumps(meta, allow_nan=False)
    assert meta["suite"] == "ledger_extract" and meta["suite_version"] == result.suite_version
    assert meta["evaluated"] == 47 and meta["failed"] == 1 and meta["success"] is False
    md = result.markdown()
    assert md.splitlines()[2] == "| expectation | column | unexpected | description |"
    assert "| expect_column_values_to_be_between | amount_minor | 2 |" in md
    assert len(md.splitlines()) == 5
    parity = run_parity_checks(discrepancies("LEDGER_MISSING")).to_metadata()
    assert_plain_json(parity)
    assert parity["params"]["blocking_classes"] == list(DEFAULT_BLOCKING)
    assert parity["failures"][0]["samples"][0]["ledger_amount_minor"] is None
    ok = run_payout_checks(payout_frame())
    assert "passed" in ok.markdown() and ok.to_metadata()["failures"] == []


def test_samples_are_the_first_five_offending_rows_by_position():
    rows = []
    for i in range(8):
        rows += [_line(f"je-{i}", 1, "debit", 10, "usd"), _line(f"je-{i}", 2, "credit", 10, "usd")]
    df = ledger_frame(rows)
    df.index = [100 - i for i in range(len(df))]  # a non-default, descending index
    first = run_ledger_checks(df)
    f = only_failure(first)
    assert f.unexpected_count == 16
    assert [(s["journal_id"], s["line_no"]) for s in f.samples] == [
        ("je-0", 1), ("je-0", 2), ("je-1", 1), ("je-1", 2), ("je-2", 1)]
    assert run_ledger_checks(df) == first
    assert run_ledger_checks(df.copy()).to_metadata() == first.to_metadata()


def test_duplicate_index_labels_do_not_confuse_samples():
    df = ledger_frame()
    df.index = [0] * len(df)
    df.loc[:, "kind"] = ["standard"] * 8 + ["bogus"]
    f = only_failure(run_ledger_checks(df))
    assert f.samples == [{"journal_id": "je-3", "line_no": 4, "kind": "bogus"}]


def test_concurrent_gates_in_threads():
    results: dict[str, GateResult] = {}

    def go(name, fn, df):
        results[name] = fn(df)

    threads = [
        threading.Thread(target=go, args=("ledger", run_ledger_checks, ledger_frame())),
        threading.Thread(target=go, args=("stripe", run_stripe_checks, stripe_frame())),
        threading.Thread(target=go, args=("payout", run_payout_checks, payout_frame().head(0))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert {k: v.success for k, v in results.items()} == {"ledger": True, "stripe": True,
                                                          "payout": True}
