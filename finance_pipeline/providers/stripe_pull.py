"""Pull balance transactions and payouts from Stripe (or the sandbox) through the official SDK.

The SDK's own retries are switched off: stripe-python retries 5xx and 409 but never 429 and
ignores ``Retry-After`` (see ``HTTPClient._should_retry`` in ``stripe/_http_client.py``), so
our :mod:`retry` policy handles every transient failure instead. Pages are fetched one by one
with ``starting_after`` so a failure costs one page, not the whole pull.

Lists are read with the SDK's ``raw_request`` (same transport, authentication, headers and
error classes as the typed services) and kept as the decoded JSON: building a ``StripeObject``
per record and turning it back into a dict cost about 80% of a large pull.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping

import pandas as pd
import stripe

from finance_pipeline.columnar.canonical import canonical_strs_of_json, canonical_strs_of_json_text
from finance_pipeline.domain.money import is_currency
from finance_pipeline.providers import ProviderError
from finance_pipeline.providers.retry import (
    RetryableFailure,
    RetryPolicy,
    call_with_retry,
    is_retryable_status,
    parse_retry_after,
)

PROVIDER = "stripe"

BALANCE_TRANSACTION_COLUMNS: dict[str, str] = {
    "provider": "str",
    "id": "str",
    "type": "str",
    "reporting_category": "str",
    "source": "str",
    "amount": "int64",
    "fee": "int64",
    "net": "int64",
    "currency": "str",
    "created": "int64",
    "available_on": "int64",
    "status": "str",
    # Which Stripe balance the record moved (payments, risk_reserved, issuing, ...); null from
    # API versions without it (read as payments).
    "balance_type": "str",
    # Presentment -> settlement rate of a converted record, as decimal text (the only float
    # Stripe sends; never used as money). Null when nothing was converted.
    "exchange_rate": "str",
    # The record as Stripe sent it plus a "provider" member, as canonical JSON: its line in the
    # proof's provider_records.jsonl, written once here instead of parsed again there.
    "record": "str",
}


# The SDK's HTTP clients the pulls can use (STRIPE_HTTP_CLIENT). ``pycurl`` (libcurl) spends
# about a third less CPU per page than ``requests`` (bench/README.md), which matters when a busy
# day's pull is bound by decoding pages; its timeouts are the SDK's own (30 s to connect, 80 s
# in all), so ``timeout_s`` applies to ``requests`` only.
HTTP_CLIENTS = ("requests", "pycurl")


def _check_http_client(http_client: str) -> None:
    if http_client not in HTTP_CLIENTS:
        raise ValueError(f"http_client (STRIPE_HTTP_CLIENT) must be one of {', '.join(HTTP_CLIENTS)}, "
                         f"got {http_client!r}")


def _client(api_key: str, api_base: str, timeout_s: float, http_client: str = "requests") -> stripe.StripeClient:
    # ``http_client`` was checked by the public pull functions, before any slice started.
    if http_client == "pycurl":
        try:
            http = stripe.PycurlClient()
        except ImportError as exc:  # pragma: no cover - pycurl is a declared dependency
            raise ValueError(f"STRIPE_HTTP_CLIENT=pycurl needs the pycurl package ({exc}); "
                             "install it or use requests") from None
    else:
        http = stripe.RequestsClient(timeout=timeout_s)
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")},
        max_network_retries=0,
        http_client=http,
    )


def _header(headers: Any, name: str) -> str | None:
    # Header mappings differ by HTTP backend; look the name up case-insensitively.
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _call(fn: Callable[[], Any], endpoint: str, retry: RetryPolicy) -> Any:
    def attempt() -> Any:
        try:
            return fn()
        except stripe.APIConnectionError as exc:
            raise RetryableFailure(None, f"connection failed: {exc.user_message or exc}") from exc
        except stripe.StripeError as exc:
            status = exc.http_status
            message = exc.user_message or str(exc)
            if status is not None and is_retryable_status(status):
                retry_after = parse_retry_after(_header(exc.headers, "retry-after"))
                raise RetryableFailure(status, message, retry_after) from exc
            if status == 401:
                hint = "check the Stripe secret API key (sk_...) given to the pipeline"
            elif status == 403:
                hint = "the API key lacks permission for this endpoint; use a key with read access"
            else:
                param = getattr(exc, "param", None)
                hint = "the request was rejected" + (f" (parameter {param!r})" if param else "")
            raise ProviderError(PROVIDER, endpoint, status, f"{message}; {hint}") from exc

    return call_with_retry(attempt, retry, provider=PROVIDER, endpoint=endpoint)


def _check_window(created_gte: int, created_lt: int) -> None:
    for name, value in (("created_gte", created_gte), ("created_lt", created_lt)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be unix seconds as an int, got {value!r}")
    if created_lt < created_gte:
        raise ValueError(f"created_lt ({created_lt}) is before created_gte ({created_gte}); swap them")


def _pull_list(
    client: stripe.StripeClient,
    path: str,
    params: dict[str, Any],
    retry: RetryPolicy,
    page_size: int,
    stop: Any = None,
    on_page: Callable[[list[dict], str], Any] | None = None,
) -> list[Any]:
    """The records of a list, newest first; with ``on_page``, what it makes of each page's
    records (given with the page's JSON text) instead."""
    endpoint = f"GET {path}"
    out: list[Any] = []
    seen: set[str] = set()
    starting_after: str | None = None
    while stop is None or not stop.is_set():
        page_params = {**params, "limit": page_size}
        if starting_after is not None:
            page_params["starting_after"] = starting_after
        response = _call(lambda: client.raw_request("get", path, **page_params), endpoint, retry)
        page = response.data
        if not isinstance(page, dict) or page.get("object") != "list" or not isinstance(page.get("data"), list):
            raise ProviderError(PROVIDER, endpoint, 200, "the response is not a Stripe list object")
        records = page["data"]
        if not all(isinstance(rec, dict) for rec in records):
            raise ProviderError(PROVIDER, endpoint, 200, "a list entry is not a JSON object")
        for rec in records:
            rid = rec.get("id")
            if rid in seen:
                raise ProviderError(PROVIDER, endpoint, 200, f"paging returned {rid!r} twice")
            seen.add(rid)
        if on_page is None:
            out.extend(records)
        else:
            out.append(on_page(records, response.body))
        if page.get("has_more") is not True:
            return out
        if not records:
            raise ProviderError(PROVIDER, endpoint, 200, "has_more is true on an empty page; cannot page on")
        starting_after = records[-1]["id"]
    return out  # stopped: another window failed, and its error is what the caller sees


def _check_concurrency(concurrency: int) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 64:
        raise ValueError(f"concurrency must be an int from 1 to 64, got {concurrency!r}")


def _cuts(created_gte: int, created_lt: int, k: int) -> list[int]:
    """The bounds of ``k`` equal consecutive parts of [created_gte, created_lt)."""
    return [created_gte + (created_lt - created_gte) * i // k for i in range(k + 1)]


def _pull_window(
    path: str,
    params: dict[str, Any],
    created_gte: int,
    created_lt: int,
    connect: Callable[[], stripe.StripeClient],
    retry: RetryPolicy,
    page_size: int,
    concurrency: int,
    on_page: Callable[[list[dict], str], Any] | None = None,
    ids_of: Callable[[Any], list[Any]] | None = None,
    stop: Any = None,
) -> list[Any]:
    """Every record created in [created_gte, created_lt), newest first (or, with ``on_page``,
    what it makes of each page, and ``ids_of`` tells the ids in one of those). Once ``stop``
    (an Event) is set, it returns after the pages in flight, with what it has.

    The window is cut into ``concurrency`` equal slices of ``created``, each paged on its own
    connection at the same time: a page costs a round trip, so a day of a busy account is many
    thousands of sequential round trips otherwise. The slices are disjoint, so their union is
    the window; a record seen twice is still refused.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
        raise ValueError(f"page_size must be an int from 1 to 100 (Stripe's limit), got {page_size!r}")
    _check_concurrency(concurrency)
    k = max(1, min(concurrency, created_lt - created_gte))
    bounds = _cuts(created_gte, created_lt, k)

    def pull(i: int, stop: Any = None) -> list[dict]:
        window = {**params, "created": {"gte": bounds[i], "lt": bounds[i + 1]}}
        return _pull_list(connect(), path, window, retry, page_size, stop, on_page)

    if k == 1:
        return pull(0, stop)
    stop = stop if stop is not None else threading.Event()
    with ThreadPoolExecutor(max_workers=k, thread_name_prefix="stripe-pull") as pool:
        futures = [pool.submit(pull, i, stop) for i in range(k)]
        try:
            slices = [f.result() for f in futures]
        except BaseException:
            stop.set()
            raise
    out: list[Any] = []
    seen: set[Any] = set()
    for part in reversed(slices):  # the latest slice first: newest first overall
        for rid in ([rec.get("id") for rec in part] if ids_of is None else [i for p in part for i in ids_of(p)]):
            if rid in seen:
                raise ProviderError(PROVIDER, f"GET {path}", 200, f"paging returned {rid!r} twice")
            seen.add(rid)
        out.extend(part)
    return out


def pull_balance_transactions(
    api_key: str,
    api_base: str,
    created_gte: int,
    created_lt: int,
    retry: RetryPolicy = RetryPolicy(),
    page_size: int = 100,
    *,
    payout: str | None = None,
    type: str | None = None,
    timeout_s: float = 60.0,
    concurrency: int = 1,
    http_client: str = "requests",
) -> list[dict]:
    """Every balance transaction created in [created_gte, created_lt) (unix seconds), as plain
    dicts exactly as Stripe sent them, newest first. ``payout``/``type`` narrow the list;
    ``concurrency`` pages that many slices of the window at once; ``http_client``: one of
    ``HTTP_CLIENTS``.
    """
    _check_window(created_gte, created_lt)
    _check_http_client(http_client)
    params: dict[str, Any] = {}
    if payout is not None:
        params["payout"] = payout
    if type is not None:
        params["type"] = type
    return _pull_window("/v1/balance_transactions", params, created_gte, created_lt,
                        lambda: _client(api_key, api_base, timeout_s, http_client), retry, page_size, concurrency)


def pull_payouts(
    api_key: str,
    api_base: str,
    created_gte: int,
    created_lt: int,
    retry: RetryPolicy = RetryPolicy(),
    page_size: int = 100,
    *,
    status: str | None = None,
    timeout_s: float = 60.0,
    concurrency: int = 1,
    http_client: str = "requests",
) -> list[dict]:
    """Every payout created in [created_gte, created_lt) as plain dicts, newest first."""
    _check_window(created_gte, created_lt)
    _check_http_client(http_client)
    params: dict[str, Any] = {} if status is None else {"status": status}
    return _pull_window("/v1/payouts", params, created_gte, created_lt,
                        lambda: _client(api_key, api_base, timeout_s, http_client), retry, page_size, concurrency)


def _json_safe(value: Any) -> Any:
    # Canonical JSON refuses floats; the only float Stripe sends is exchange_rate (not money),
    # so it is kept as its shortest round-trip decimal text.
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _rates(recs: list[Mapping[str, Any]]) -> list[str | None]:
    """``exchange_rate`` as decimal text: Stripe sends a JSON number, a published record (whose
    canonical JSON refuses floats) the same number as text."""
    from decimal import Decimal, InvalidOperation

    out: list[str | None] = []
    for rec in recs:
        value = rec.get("exchange_rate")
        if value is None:
            out.append(None)
            continue
        text = (repr(value) if isinstance(value, float) else value if isinstance(value, str)
                else str(value) if isinstance(value, int) and not isinstance(value, bool) else None)
        try:
            ok = text is not None and not isinstance(value, bool) and Decimal(text).is_finite() and Decimal(text) > 0
        except InvalidOperation:
            ok = False
        if not ok:
            raise ValueError(f"balance transaction {rec.get('id')!r}: 'exchange_rate' must be a positive number "
                             f"or null, got {value!r}")
        out.append(text)
    return out


def _int_field(rec: Mapping[str, Any], key: str) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"balance transaction {rec.get('id')!r}: '{key}' must be an integer "
            f"(minor units or unix seconds), got {value!r}"
        )
    return value


def _ints(recs: list[Mapping[str, Any]], key: str) -> list[int]:
    values = [rec.get(key) for rec in recs]
    if all(type(v) is int for v in values):  # the common case, checked at C speed
        return values
    return [_int_field(rec, key) for rec in recs]  # names the first bad record


def _texts(recs: list[Mapping[str, Any]], key: str) -> list[str | None]:
    values = [rec.get(key) for rec in recs]
    if all(v is None or type(v) is str for v in values):
        return values
    for rec, value in zip(recs, values):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"balance transaction {rec.get('id')!r}: '{key}' must be text or null, got {value!r}")
    return [None if v is None else str(v) for v in values]


def _columns(records: list[Mapping[str, Any]], text: str | None = None) -> dict[str, list[Any]]:
    """The frame's columns for some records, in their order; a record that fails a check is
    named in the error. Built a field at a time: a busy day holds a million records.
    ``text``: the JSON the records were decoded from, if known (their raw texts are then
    written faster; the same text either way)."""
    ids = [rec.get("id") for rec in records]
    for rid, rec in zip(ids, records):
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"balance transaction without a string 'id': {rec!r}")
    for rid, rec in zip(ids, records):
        if "provider" in rec:
            raise ValueError(f"balance transaction {rid!r} already has a 'provider' member; the proof's "
                             "provider_records.jsonl adds its own")
    currencies = [rec.get("currency") for rec in records]
    upper: dict[str, str] = {}
    for rid, currency in zip(ids, currencies):
        if isinstance(currency, str) and currency in upper:
            continue
        code = currency.upper() if isinstance(currency, str) else currency
        if not is_currency(code):
            raise ValueError(f"balance transaction {rid!r}: 'currency' {currency!r} is not an ISO 4217 code")
        upper[currency] = code
    return {
        "id": ids,
        **{key: _texts(records, key) for key in ("type", "reporting_category", "source")},
        **{key: _ints(records, key) for key in ("amount", "fee", "net", "created", "available_on")},
        "currency": [upper[c] for c in currencies],
        "status": _texts(records, "status"),
        "balance_type": _texts(records, "balance_type"),
        "exchange_rate": _rates(records),
        # Floats (Stripe's only one is exchange_rate, not money) as their shortest round-trip text.
        "record": (canonical_strs_of_json([{**rec, "provider": PROVIDER} for rec in records], _json_safe)
                   if text is None else canonical_strs_of_json_text(records, text, _json_safe,
                                                                    add={"provider": PROVIDER})),
    }


_SCHEMA_OF = {"str": "large_string", "int64": "int64"}
_BATCH = 10_000


def _schema():
    import pyarrow as pa

    return pa.schema([(col, getattr(pa, _SCHEMA_OF[dtype])()) for col, dtype in BALANCE_TRANSACTION_COLUMNS.items()
                      if col != "provider"])


def _batch(records: list[Mapping[str, Any]], text: str | None = None):
    """Some records as an Arrow record batch: a million records' columns as Python objects
    would take gigabytes, as Arrow a fraction."""
    import pyarrow as pa

    return pa.RecordBatch.from_pydict(_columns(records, text), schema=_schema())


def _frame(batches: list[Any]) -> pd.DataFrame:
    """One frame of several record batches, sorted by id (code point order, as sorted() gives)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_batches(batches, schema=_schema())
    del batches[:]
    order = pc.sort_indices(table.column("id"))
    # Each column's chunks (one per page) are joined before the take: taking across thousands
    # of chunks is several times slower.
    ids = table.column("id").combine_chunks().take(order)
    if len(ids) > 1:
        twice = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        if pc.any(twice).as_py():
            rid = ids[pc.index(twice, True).as_py()].as_py()
            raise ValueError(f"balance transaction {rid!r} appears twice; deduplicate the pull first")
    data = {}
    for col, dtype in BALANCE_TRANSACTION_COLUMNS.items():
        if col == "provider":
            data[col] = pd.Series([PROVIDER] * len(ids), dtype=dtype)
            continue
        # A column at a time, each dropped once sorted: only one column is ever held twice.
        column = ids if col == "id" else table.column(col).combine_chunks().take(order)
        table = table.drop_columns([col])
        data[col] = pd.Series(column.to_numpy() if dtype == "int64" else column, dtype=dtype)
        del column
    pa.default_memory_pool().release_unused()
    return pd.DataFrame(data)


STRIPE_API = "https://api.stripe.com"


def check_endpoint(api_key: str, api_base: str) -> None:
    """A live key goes to an https:// address only (Stripe's API unless STRIPE_API_BASE says
    otherwise): sent over plain HTTP it would be readable on the way."""
    from urllib.parse import urlsplit

    if api_key.startswith(("sk_live_", "rk_live_")) and urlsplit(api_base).scheme != "https":
        raise ValueError(
            f"STRIPE_API_BASE={api_base} is not an https:// address but STRIPE_API_KEY is a live key, so "
            "the key is not sent there: unset STRIPE_API_BASE to use Stripe's API "
            f"({STRIPE_API}), or use a test key (sk_test_...) with a local sandbox")


def balance_transactions_frame(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per balance transaction, sorted by id; money and times are int64, never float."""
    return _frame([_batch(records[i:i + _BATCH]) for i in range(0, len(records), _BATCH)])


def pull_balance_transactions_frame(
    api_key: str,
    api_base: str,
    created_gte: int,
    created_lt: int,
    retry: RetryPolicy = RetryPolicy(),
    page_size: int = 100,
    *,
    timeout_s: float = 60.0,
    concurrency: int = 1,
    processes: int = 1,
    http_client: str = "requests",
) -> pd.DataFrame:
    """``balance_transactions_frame(pull_balance_transactions(...))``, each page turned into
    columns as it arrives: a million decoded records at once take gigabytes, their columns
    a fraction, and the work overlaps the waits for the next pages.

    ``processes`` > 1 cuts the window into that many parts, each pulled in its own worker
    process: decoding and encoding a page is Python work that holds the GIL, so one process
    tops out at a few hundred pages a second however many requests are in flight. The
    ``concurrency`` slices are shared out among the workers (it is what the provider's rate
    limit sees). The workers hand back Arrow record batches; the frame is the same.
    """
    _check_window(created_gte, created_lt)
    _check_http_client(http_client)
    check_endpoint(api_key, api_base)
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= 32:
        raise ValueError(f"processes must be an int from 1 to 32, got {processes!r}")
    parts = max(1, min(processes, created_lt - created_gte))
    if parts > 1:
        _check_concurrency(concurrency)
        parts = min(parts, concurrency)  # every worker pages at least one slice
    if parts == 1:
        return _frame(_pull_batches(api_key, api_base, created_gte, created_lt, retry, page_size,
                                    timeout_s, concurrency, http_client))
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    bounds = _cuts(created_gte, created_lt, parts)
    each = [concurrency // parts + (i < concurrency % parts) for i in range(parts)]
    # spawn, not fork: the caller may be a threaded server (Dagster), where fork can deadlock.
    context = multiprocessing.get_context("spawn")
    stop = context.Event()  # set when one part fails: the others stop after their pages in flight
    with ProcessPoolExecutor(parts, mp_context=context, initializer=_worker_init, initargs=(stop,)) as pool:
        futures = [pool.submit(_pull_part, api_key, api_base, bounds[i], bounds[i + 1], retry, page_size,
                               timeout_s, each[i], http_client) for i in range(parts)]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
            batches = [batch for future in futures for batch in future.result()]
        except BaseException:
            stop.set()
            raise
    return _frame(batches)


_STOP: Any = None  # in a worker process: the pull's stop event


def _worker_init(stop: Any) -> None:
    global _STOP
    _STOP = stop


def _pull_part(*args: Any) -> list[Any]:
    """``_pull_batches`` in a worker process, as one batch: thousands of small batches take
    far longer to send back than their columns joined."""
    import pyarrow as pa

    batches = _pull_batches(*args, stop=_STOP)
    return pa.Table.from_batches(batches, schema=_schema()).combine_chunks().to_batches()


def _pull_batches(api_key: str, api_base: str, created_gte: int, created_lt: int, retry: RetryPolicy,
                  page_size: int, timeout_s: float, concurrency: int, http_client: str = "requests",
                  stop: Any = None) -> list[Any]:
    """The window's pages as Arrow record batches (module level: worker processes run it)."""
    return _pull_window("/v1/balance_transactions", {}, created_gte, created_lt,
                        lambda: _client(api_key, api_base, timeout_s, http_client), retry, page_size, concurrency,
                        on_page=_batch, ids_of=lambda batch: batch.column("id").to_pylist(), stop=stop)
