"""Provider pulls against the sandboxes over real HTTP: paging, retries, frames."""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest

from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.providers import ProviderError
from finance_pipeline.providers.payout_pull import (
    SETTLEMENT_COLUMNS,
    pull_pending_payouts,
    pull_settlements,
    settlements_frame,
)
from finance_pipeline.providers.retry import RetryPolicy, parse_retry_after
from finance_pipeline.providers.stripe_pull import (
    BALANCE_TRANSACTION_COLUMNS,
    HTTP_CLIENTS,
    balance_transactions_frame,
    pull_balance_transactions,
    pull_balance_transactions_frame,
    pull_payouts,
)

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


class RecordingSleep:
    """Records the waits instead of spending them; the delays still come from real headers."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(max_attempts: int = 5, base: float = 0.25, cap: float = 30.0) -> tuple[RetryPolicy, RecordingSleep]:
    sleep = RecordingSleep()
    return RetryPolicy(max_attempts=max_attempts, base_delay_s=base, max_delay_s=cap, sleep=sleep), sleep


def stripe_day(n: int = 230) -> list[dict]:
    """n transactions over 2026-01-01 plus a few either side of the window."""
    out = []
    for i in range(n):
        kind = "refund" if i % 7 == 0 else "charge"
        out.append(
            {
                "id": f"txn_{i:05d}",
                "amount": -(500 + i) if kind == "refund" else 1000 + i,
                "fee": 0 if kind == "refund" else 29 + i % 3,
                "currency": "usd" if i % 5 else "EUR",
                "created": T0 + (i * 373) % DAY,
                "type": kind,
                "source": f"{'re' if kind == 'refund' else 'ch'}_{i:05d}",
            }
        )
    out.append({"id": "txn_before", "amount": 1, "currency": "usd", "created": T0 - 1, "type": "charge"})
    out.append({"id": "txn_at_end", "amount": 1, "currency": "usd", "created": T0 + DAY, "type": "charge"})
    return out


def served(sandbox, txn_ids: list[str]) -> list[dict]:
    """What the sandbox serves for each id, fetched without the SDK."""
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": f"Bearer {sandbox.api_key}"}) as c:
        return [c.get(f"/v1/balance_transactions/{t}").json() for t in txn_ids]


# --------------------------------------------------------------------------- retry policy


def test_retry_delays():
    p = RetryPolicy(base_delay_s=0.5, max_delay_s=3)
    assert [p.delay_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert p.delay_s(1, retry_after_s=2.0) == 2.0
    assert p.delay_s(1, retry_after_s=60.0) == 3.0
    assert parse_retry_after("1") == 1.0 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# --------------------------------------------------------------------------- stripe


def test_pull_balance_transactions_pages_the_whole_window(stripe_sandbox):
    records = stripe_day()
    stripe_sandbox.add_objects(balance_transactions=records)
    retry, sleep = policy()
    got = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry)

    in_window = [r for r in records if T0 <= r["created"] < T0 + DAY]
    assert len(got) == len(in_window) == 230
    assert [g["id"] for g in got] == [
        r["id"] for r in sorted(in_window, key=lambda r: (r["created"], r["id"]), reverse=True)
    ]
    log = stripe_sandbox.requests()
    assert [e["params"].get("starting_after") for e in log] == [None, got[99]["id"], got[199]["id"]]
    assert all(e["params"]["created[gte]"] == str(T0) and e["params"]["created[lt]"] == str(T0 + DAY) for e in log)
    assert sleep.waits == []
    # Plain dicts, equal to what the API serves: nothing dropped or coerced by the SDK.
    assert got == served(stripe_sandbox, [g["id"] for g in got])
    assert json.loads(json.dumps(got)) == got


@pytest.mark.parametrize("concurrency", [2, 3, 7])
def test_concurrent_slices_give_the_same_records_in_the_same_order(stripe_sandbox, concurrency):
    records = stripe_day(230)
    stripe_sandbox.add_objects(balance_transactions=records)
    one = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, page_size=40)
    stripe_sandbox.clear_requests()
    many = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, page_size=40,
                                     concurrency=concurrency)
    assert many == one and len(many) == 230
    # Each slice is its own disjoint created window, and together they cover the day exactly.
    windows = sorted({(int(e["params"]["created[gte]"]), int(e["params"]["created[lt]"]))
                      for e in stripe_sandbox.requests()})
    assert len(windows) == concurrency
    assert windows[0][0] == T0 and windows[-1][1] == T0 + DAY
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))


def test_concurrency_wider_than_the_window_and_bad_values(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(5))
    got = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0 + 373, T0 + 375, concurrency=8)
    assert [g["id"] for g in got] == ["txn_00001"]
    assert len(stripe_sandbox.requests()) == 2  # two one-second slices, not eight
    for bad in (0, 65, True, 2.0):
        with pytest.raises(ValueError, match="concurrency"):
            pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, concurrency=bad)


def test_a_failing_slice_fails_the_whole_pull(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(230))
    stripe_sandbox.set_faults(after=2, server_error=50)
    retry, _ = policy(max_attempts=2, base=0.01)
    with pytest.raises(ProviderError, match="HTTP 500"):
        pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry,
                                  page_size=20, concurrency=4)


@pytest.mark.parametrize("http", HTTP_CLIENTS)
def test_pull_honours_retry_after_and_retries_server_errors(stripe_sandbox, http):
    records = stripe_day(150)
    stripe_sandbox.add_objects(balance_transactions=records)
    clean = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, page_size=50,
                                    http_client=http)
    stripe_sandbox.clear_requests()

    # First page goes through; the second page meets two 429s (Retry-After: 1) and a 500.
    stripe_sandbox.set_faults(after=1, rate_limit=2, retry_after=1, server_error=1)
    retry, sleep = policy(base=0.25)
    got = pull_balance_transactions(
        stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry, page_size=50, http_client=http
    )

    assert got == clean and len(got) == 150
    assert sleep.waits == [1.0, 1.0, 1.0]  # Retry-After twice, then backoff for attempt 3 (0.25 * 2**2)
    log = stripe_sandbox.requests()
    assert [e["status"] for e in log] == [200, 429, 429, 500, 200, 200]
    second_page = {e["params"].get("starting_after") for e in log[1:5]}
    assert second_page == {clean[49]["id"]}  # only the failed page was retried


def test_backoff_without_retry_after_and_cap(stripe_sandbox):
    retry, sleep = policy(base=0.1, cap=0.3)
    stripe_sandbox.set_faults(server_error=3, server_error_status=503)
    assert pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry) == []
    assert sleep.waits == [0.1, 0.2, 0.3]
    stripe_sandbox.set_faults(rate_limit=1, retry_after=7)
    pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry)
    assert sleep.waits[-1] == 0.3  # Retry-After: 7 capped by max_delay_s


def test_retries_exhausted_is_a_provider_error(stripe_sandbox):
    stripe_sandbox.set_faults(rate_limit=10, retry_after=1)
    retry, sleep = policy(max_attempts=3)
    with pytest.raises(ProviderError) as exc:
        pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry)
    err = exc.value
    assert (err.provider, err.endpoint, err.status, err.attempts) == ("stripe", "GET /v1/balance_transactions", 429, 3)
    assert "stripe GET /v1/balance_transactions failed with HTTP 429 after 3 attempts" in str(err)
    assert len(stripe_sandbox.requests()) == 3 and sleep.waits == [1.0, 1.0]


@pytest.mark.parametrize("http", HTTP_CLIENTS)
def test_connection_errors_are_retried_then_reported(stripe_sandbox, http):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(3))
    retry, sleep = policy(base=0.01)
    stripe_sandbox.set_faults(disconnect=2)
    assert len(pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=retry,
                                         http_client=http)) == 3
    assert sleep.waits == [0.01, 0.02]
    stripe_sandbox.set_faults(disconnect=5)
    with pytest.raises(ProviderError) as exc:
        pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, retry=policy(3, 0.01)[0],
                                  http_client=http)
    assert exc.value.status is None and "connection" in str(exc.value)


@pytest.mark.parametrize("http", HTTP_CLIENTS)
def test_bad_key_fails_at_once(stripe_sandbox, http):
    retry, sleep = policy()
    with pytest.raises(ProviderError) as exc:
        pull_balance_transactions("sk_test_wrong", stripe_sandbox.url, T0, T0 + DAY, retry=retry, http_client=http)
    assert exc.value.status == 401 and "API key" in str(exc.value)
    assert len(stripe_sandbox.requests()) == 1 and sleep.waits == []


def test_pull_filters_and_payouts(stripe_sandbox):
    stripe_sandbox.add_objects(
        balance_transactions=stripe_day(20),
        payouts=[
            {"id": "po_1", "amount": 5000, "currency": "usd", "created": T0 + 3600,
             "balance_transactions": ["txn_00001", "txn_00002"]},
            {"id": "po_2", "amount": 10, "currency": "usd", "created": T0 + 7200, "status": "pending"},
            {"id": "po_3", "amount": 10, "currency": "usd", "created": T0 + DAY, "status": "pending"},
        ],
    )
    key, url = stripe_sandbox.api_key, stripe_sandbox.url
    by_payout = pull_balance_transactions(key, url, T0, T0 + DAY, payout="po_1")
    assert sorted(t["id"] for t in by_payout) == ["txn_00001", "txn_00002"]
    refunds = pull_balance_transactions(key, url, T0, T0 + DAY, type="refund", page_size=2)
    assert sorted(t["id"] for t in refunds) == ["txn_00000", "txn_00007", "txn_00014"]
    assert [p["id"] for p in pull_payouts(key, url, T0, T0 + DAY, page_size=1)] == ["po_2", "po_1"]
    assert [p["id"] for p in pull_payouts(key, url, T0, T0 + 2 * DAY, status="pending")] == ["po_3", "po_2"]


def test_balance_transactions_frame(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(12))
    records = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY)
    frame = balance_transactions_frame(records)

    assert list(frame.columns) == list(BALANCE_TRANSACTION_COLUMNS)
    for col in ("amount", "fee", "net", "created", "available_on"):
        assert frame[col].dtype == "int64"
    assert not any(pd.api.types.is_float_dtype(t) for t in frame.dtypes)
    assert list(frame["id"]) == sorted(r["id"] for r in records)
    assert set(frame["currency"]) == {"USD", "EUR"}
    assert set(frame["provider"]) == {"stripe"}
    row = frame.set_index("id").loc["txn_00003"]
    assert (row["amount"], row["fee"], row["net"], row["type"], row["source"]) == (1003, 29, 974, "charge", "ch_00003")
    original = next(r for r in records if r["id"] == "txn_00003")
    assert row["record"] == canonical_str({**original, "provider": "stripe"})
    assert json.loads(row["record"]) == {**original, "provider": "stripe"}
    with pytest.raises(ValueError, match="'txn_00003' already has a 'provider' member"):
        balance_transactions_frame([{**r, "provider": "x"} if r["id"] == "txn_00003" else r for r in records])
    # Same records in another order give an identical frame.
    pd.testing.assert_frame_equal(frame, balance_transactions_frame(list(reversed(records))))
    # The frame is what the plain construction gives (the columns go through Arrow on the way).
    ordered = sorted(records, key=lambda r: r["id"])
    plain = pd.DataFrame({col: pd.Series(
        ["stripe"] * len(ordered) if col == "provider"
        else [canonical_str({**r, "provider": "stripe"}) for r in ordered] if col == "record"
        else [r.get(col).upper() if col == "currency" else r.get(col) for r in ordered], dtype=dtype)
        for col, dtype in BALANCE_TRANSACTION_COLUMNS.items()})
    pd.testing.assert_frame_equal(frame, plain)
    with pytest.raises(ValueError, match="'txn_00004': 'type' must be text or null, got 7"):
        balance_transactions_frame([{**r, "type": 7} if r["id"] == "txn_00004" else r for r in records])


@pytest.mark.parametrize(("page_size", "concurrency"), [(100, 1), (7, 1), (13, 3), (40, 8)])
def test_the_frame_pulled_page_by_page_is_the_frame_of_the_records(stripe_sandbox, page_size, concurrency):
    records = stripe_day(230)
    records[5]["exchange_rate"] = 1.0834  # the exact path, in the middle of a page
    records[9]["description"] = "Caf\u00e9 \U0001f600"
    stripe_sandbox.add_objects(balance_transactions=records)
    pulled = pull_balance_transactions(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY)
    frame = pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                            page_size=page_size, concurrency=concurrency)
    pd.testing.assert_frame_equal(frame, balance_transactions_frame(pulled))
    assert len(frame) == 230 and frame["id"].is_monotonic_increasing
    assert json.loads(frame.set_index("id").loc["txn_00005", "record"])["exchange_rate"] == "1.0834"
    empty = pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0 - DAY, T0 - 10)
    pd.testing.assert_frame_equal(empty, balance_transactions_frame([]))


def test_a_bad_record_fails_the_frame_pull_and_names_the_record(stripe_sandbox):
    records = stripe_day(60)
    stripe_sandbox.add_objects(balance_transactions=records)
    # A provider that breaks its own schema (the sandbox refuses such a record on the way in).
    stripe_sandbox.app.state.txns["txn_00031"]["amount"] = 10.5
    with pytest.raises(ValueError, match="'txn_00031': 'amount' must be an integer"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                        page_size=10, concurrency=3)


@pytest.mark.parametrize("http", HTTP_CLIENTS)
def test_worker_processes_pull_the_same_frame(stripe_sandbox, http):
    records = stripe_day(230)
    records[5]["exchange_rate"] = 1.0834
    stripe_sandbox.add_objects(balance_transactions=records)
    one = pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                          page_size=17, concurrency=2)
    many = pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                           page_size=17, concurrency=2, processes=3,
                                           http_client=http)
    pd.testing.assert_frame_equal(many, one)
    assert len(many) == 230
    # The workers paged with the HTTP library asked for (the SDK names it in every request).
    libraries = {json.loads(e["client"])["httplib"] for e in stripe_sandbox.requests()}
    assert libraries == {"requests", http}
    with pytest.raises(ValueError, match="STRIPE_HTTP_CLIENT"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, http_client="curl")
    with pytest.raises(ValueError, match="processes must be an int from 1 to 32"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, processes=0)
    with pytest.raises(ValueError, match="concurrency must be an int from 1 to 64"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                        concurrency=0, processes=2)


def test_a_failure_in_a_worker_process_is_raised_as_it_would_be_in_process(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(60))
    with pytest.raises(ProviderError, match="HTTP 401") as caught:
        pull_balance_transactions_frame("sk_test_wrong", stripe_sandbox.url, T0, T0 + DAY, processes=2,
                                        retry=RetryPolicy(max_attempts=1))
    assert (caught.value.provider, caught.value.status, caught.value.endpoint) == (
        "stripe", 401, "GET /v1/balance_transactions")
    stripe_sandbox.app.state.txns["txn_00031"]["amount"] = 10.5
    with pytest.raises(ValueError, match="'txn_00031': 'amount' must be an integer"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY, processes=2)


def test_a_failing_worker_stops_the_others(stripe_sandbox):
    # 400 records, one per page, each page 20 ms: the older half alone is 200 pages (4 s). The
    # newest record is bad, so the newer half fails on its first page and the older one stops.
    records = [{**r, "created": T0 + 60 + i * 200} for i, r in enumerate(stripe_day(400)[:400])]
    stripe_sandbox.add_objects(balance_transactions=records)
    stripe_sandbox.app.state.txns[records[-1]["id"]]["amount"] = "12"  # past the sandbox's own checks
    stripe_sandbox.set_faults(delay_ms=20)
    stripe_sandbox.clear_requests()
    with pytest.raises(ValueError, match="'amount' must be an integer"):
        pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                        page_size=1, concurrency=2, processes=2)
    assert len(stripe_sandbox.requests()) < 150  # the older half stopped, not 200 pages later


def test_workers_never_page_more_slices_than_the_concurrency(stripe_sandbox):
    stripe_sandbox.add_objects(balance_transactions=stripe_day(40))
    stripe_sandbox.clear_requests()
    frame = pull_balance_transactions_frame(stripe_sandbox.api_key, stripe_sandbox.url, T0, T0 + DAY,
                                            concurrency=1, processes=4)
    assert len(frame) == 40
    assert len(stripe_sandbox.requests()) == 1  # one slice, one page: no worker was started for more


def test_large_frames_are_built_in_batches():
    records = [{"id": f"txn_{i:06d}", "type": "charge", "reporting_category": "charge", "source": f"ch_{i}",
                "amount": 100 + i, "fee": 3, "net": 97 + i, "currency": "usd" if i % 2 else "eur",
                "created": 1 + i, "available_on": 2 + i, "status": "available"} for i in range(25_003)]
    frame = balance_transactions_frame(records[::-1])
    assert frame["id"].tolist() == [r["id"] for r in records]
    assert frame["amount"].tolist() == [r["amount"] for r in records]
    assert frame["record"].iloc[-1] == canonical_str({**records[-1], "provider": "stripe"})
    with pytest.raises(ValueError, match="'txn_012345' appears twice"):
        balance_transactions_frame(records + [records[12_345]])


def test_empty_frames_keep_columns_and_dtypes():
    assert balance_transactions_frame([]).dtypes.to_dict() == balance_transactions_frame(
        [{"id": "txn_1", "type": "charge", "reporting_category": "charge", "source": "ch_1", "amount": 1, "fee": 0,
          "net": 1, "currency": "usd", "created": 1, "available_on": 1, "status": "available"}]
    ).dtypes.to_dict()
    empty = settlements_frame([])
    assert list(empty.columns) == list(SETTLEMENT_COLUMNS) and len(empty) == 0
    assert empty["amount_minor"].dtype == "int64" and empty["ts_us"].dtype == "int64"


def test_frames_reject_float_money_and_keep_exchange_rate_exact():
    base = {"id": "txn_1", "type": "charge", "amount": 100, "fee": 0, "net": 100, "currency": "usd",
            "created": 1, "available_on": 1, "status": "available", "exchange_rate": 1.234}
    raw = json.loads(balance_transactions_frame([base])["record"][0])
    assert raw["exchange_rate"] == "1.234"  # canonical JSON has no floats; the text is exact
    with pytest.raises(ValueError, match="'amount' must be an integer"):
        balance_transactions_frame([{**base, "amount": 100.0}])
    with pytest.raises(ValueError, match="'net' must be an integer"):
        balance_transactions_frame([{**base, "net": True}])
    with pytest.raises(ValueError, match="appears twice"):
        balance_transactions_frame([base, base])
    with pytest.raises(ValueError, match="amount_minor"):
        settlements_frame([{"id": "stl_1", "payout_id": "1", "amount_minor": 1.0, "currency": "USD",
                            "status": "settled", "settled_at": "2026-01-01T00:00:00Z"}])


# --------------------------------------------------------------------------- payout provider


def seed_settlements(sandbox, n: int) -> None:
    payouts = [
        {"payout_id": f"p{i:02d}", "amount_minor": 100 + i, "currency": "USD", "destination": "acct_1",
         "created_at": "2025-12-31T00:00:00Z", "status": "settled",
         "settled_at": f"2026-01-01T{i % 24:02d}:00:00Z"}
        for i in range(n)
    ]
    payouts.append({"payout_id": "late", "amount_minor": 1, "currency": "USD", "destination": "acct_1",
                    "created_at": "2025-12-31T00:00:00Z", "status": "settled", "settled_at": "2026-01-02T00:00:00Z"})
    payouts.append({"payout_id": "waiting", "amount_minor": 5, "currency": "GBP", "destination": "acct_1",
                    "created_at": "2026-01-01T12:00:00Z"})
    payouts.append({"payout_id": "waiting_new", "amount_minor": 5, "currency": "GBP", "destination": "acct_1",
                    "created_at": "2026-01-02T00:00:00Z"})
    sandbox.add_objects(payouts=payouts)


def test_pull_settlements_follows_the_cursor(payout_sandbox):
    seed_settlements(payout_sandbox, 30)
    got = pull_settlements(
        payout_sandbox.url, payout_sandbox.token, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", page_size=7
    )
    assert len(got) == 30
    assert [s["id"] for s in got] == [
        s["id"] for s in sorted(got, key=lambda s: (s["settled_at"], s["id"]))
    ]
    assert "stl_late" not in {s["id"] for s in got}
    log = payout_sandbox.requests()
    assert len(log) == 5 and [("cursor" in e["params"]) for e in log] == [False, True, True, True, True]
    # Microsecond bounds mean the same window.
    same = pull_settlements(payout_sandbox.url, payout_sandbox.token, T0 * 10**6, (T0 + DAY) * 10**6)
    assert same == got


def test_pull_settlements_retries_with_retry_after(payout_sandbox):
    seed_settlements(payout_sandbox, 9)
    clean = pull_settlements(payout_sandbox.url, payout_sandbox.token, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    payout_sandbox.clear_requests()
    payout_sandbox.set_faults(after=1, rate_limit=1, retry_after=1, server_error=2, disconnect=1)
    retry, sleep = policy(base=0.05)
    got = pull_settlements(
        payout_sandbox.url, payout_sandbox.token, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
        retry=retry, page_size=4,
    )
    assert got == clean
    assert sleep.waits == [1.0, 0.1, 0.2, 0.4]
    assert [e["status"] for e in payout_sandbox.requests()] == [200, 429, 500, 500, 0, 200, 200]


def test_pull_settlements_errors(payout_sandbox):
    with pytest.raises(ProviderError) as exc:
        pull_settlements(payout_sandbox.url, "wrong", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    assert exc.value.status == 401 and exc.value.provider == "payout_sandbox"
    assert "GET /settlements" in str(exc.value) and "token" in str(exc.value)

    payout_sandbox.set_faults(server_error=4)
    retry, sleep = policy(max_attempts=4, base=0.01)
    with pytest.raises(ProviderError) as exc:
        pull_settlements(payout_sandbox.url, payout_sandbox.token, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z",
                         retry=retry)
    assert (exc.value.status, exc.value.attempts) == (500, 4)
    with pytest.raises(ValueError, match="from_ts"):
        pull_settlements(payout_sandbox.url, payout_sandbox.token, "2026-01-01", "2026-01-02T00:00:00Z")


def test_pending_payouts_and_settlements_frame(payout_sandbox):
    seed_settlements(payout_sandbox, 3)
    pending = pull_pending_payouts(payout_sandbox.url, payout_sandbox.token, "2026-01-02T00:00:00Z")
    assert [p["id"] for p in pending] == ["waiting"]
    settled = pull_settlements(payout_sandbox.url, payout_sandbox.token, "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z")

    frame = settlements_frame(settled + pending)
    assert list(frame.columns) == list(SETTLEMENT_COLUMNS)
    assert list(frame["id"]) == ["stl_late", "stl_p00", "stl_p01", "stl_p02", "waiting"]
    assert frame["amount_minor"].dtype == "int64" and frame["ts_us"].dtype == "int64"
    assert not any(pd.api.types.is_float_dtype(t) for t in frame.dtypes)
    rows = frame.set_index("id")
    assert rows.loc["stl_p02", "ts_us"] == (T0 + 2 * 3600) * 10**6  # settled_at
    assert rows.loc["waiting", "ts_us"] == (T0 + 12 * 3600) * 10**6  # created_at of a pending payout
    assert rows.loc["waiting", "currency"] == "GBP" and rows.loc["waiting", "status"] == "pending"
    assert json.loads(rows.loc["stl_p01", "record"]) == {
        **next(s for s in settled if s["id"] == "stl_p01"), "provider": "payout_sandbox"}
    with pytest.raises(ValueError, match="'stl_p01' already has a 'provider' member"):
        settlements_frame([{**s, "provider": "x"} if s["id"] == "stl_p01" else s for s in settled])
    pd.testing.assert_frame_equal(frame, settlements_frame(list(reversed(settled + pending))))


def test_stripe_api_base_unset_means_stripes_own_api_and_live_keys_go_only_to_https(monkeypatch, stripe_sandbox):
    import os

    from finance_pipeline.definitions import build_resources
    from finance_pipeline.providers.stripe_pull import check_endpoint, pull_balance_transactions_frame
    from finance_pipeline.settings import Settings

    def base() -> str:
        # As the code location wires it: a set variable becomes an EnvVar the run resolves.
        return build_resources(Settings.from_environ(os.environ))["stripe"].process_config_and_initialize().base

    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    assert base() == "https://api.stripe.com"
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111")
    assert base() == "http://127.0.0.1:12111"

    check_endpoint("sk_live_abc", "https://api.stripe.com")
    check_endpoint("sk_test_abc", "http://127.0.0.1:12111")
    # A live key over plain HTTP is refused before any request is made.
    with pytest.raises(ValueError, match="not an https:// address but STRIPE_API_KEY is a live key"):
        pull_balance_transactions_frame("sk_live_abc", stripe_sandbox.url, 0, 86400)
    with pytest.raises(ValueError, match="live key"):
        check_endpoint("rk_live_abc", "http://api.stripe.com")
