"""Stripe payouts of a day, from ``/v1/payouts``: what the balance transactions alone do not say.

A payout's balance transaction records the money leaving Stripe's balance when the payout is
created; the payout object says where it stands (``status``: pending, in_transit, paid,
failed, canceled) and when it reaches the bank (``arrival_date``). A day reads the payouts
created in its window and those arriving on it; for a payout arriving on the day but created
before the window, its balance transaction is fetched by id, so a ledger that books payouts
on their arrival day finds its record (docs/stripe-mapping.md, "Payouts").
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import pandas as pd

from finance_pipeline.columnar.membership import isin
from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.money import is_currency
from finance_pipeline.providers import ProviderError
from finance_pipeline.providers.retry import RetryPolicy
from finance_pipeline.providers.stripe_pull import (
    PROVIDER,
    _call,
    _check_http_client,
    _check_window,
    _client,
    _json_safe,
    _pull_list,
    check_endpoint,
)

PAYOUT_COLUMNS: dict[str, str] = {
    "provider": "str",
    "id": "str",
    "status": "str",
    "amount": "int64",
    "currency": "str",
    "created": "int64",
    "arrival_date": "int64",
    "balance_transaction": "str",
    "failure_balance_transaction": "str",
    # The payout as Stripe sent it plus a "provider" member, canonical JSON (its provider line).
    "record": "str",
    # For a payout created before the day's window: its balance transaction, fetched by id, in
    # the same form (null otherwise: the balance pull has it).
    "balance_transaction_record": "str",
}
_TXN_ID = re.compile(r"^txn_[A-Za-z0-9_]{1,200}$")


def _text(rec: Mapping[str, Any], key: str, *, prefix: str | None = None) -> str | None:
    value = rec.get(key)
    if isinstance(value, dict):  # expanded
        value = value.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or (prefix and not value.startswith(prefix)):
        raise ValueError(f"payout {rec.get('id')!r}: '{key}' must be {prefix or ''}... text or null, got {value!r}")
    return value


def _int(rec: Mapping[str, Any], key: str) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"payout {rec.get('id')!r}: '{key}' must be an integer, got {value!r}")
    return value


def _record_text(rec: Mapping[str, Any]) -> str:
    return canonical_str(_json_safe({**{k: v for k, v in rec.items() if k != "provider"}, "provider": PROVIDER}))


def payouts_frame(payouts: list[Mapping[str, Any]], fetched: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> pd.DataFrame:
    """One row per payout, sorted by id; ``fetched``: balance transactions by id, for the
    payouts whose transaction the balance pull does not hold."""
    fetched = fetched or {}
    rows: dict[str, list] = {c: [] for c in PAYOUT_COLUMNS}
    seen: set[str] = set()
    for rec in sorted(payouts, key=lambda r: str(r.get("id"))):
        pid = rec.get("id")
        if not isinstance(pid, str) or not pid.startswith("po_"):
            raise ValueError(f"a payout's 'id' must be po_... text, got {pid!r}")
        if pid in seen:
            raise ValueError(f"payout {pid!r} appears twice; deduplicate the pull first")
        seen.add(pid)
        currency = rec.get("currency")
        if not isinstance(currency, str) or not is_currency(currency.upper()):
            raise ValueError(f"payout {pid!r}: 'currency' must be an ISO 4217 code such as \"usd\", got {currency!r}")
        txn = _text(rec, "balance_transaction", prefix="txn_")
        rows["provider"].append(PROVIDER)
        rows["id"].append(pid)
        rows["status"].append(_text(rec, "status"))
        rows["amount"].append(_int(rec, "amount"))
        rows["currency"].append(currency.upper())
        rows["created"].append(_int(rec, "created"))
        rows["arrival_date"].append(_int(rec, "arrival_date"))
        rows["balance_transaction"].append(txn)
        rows["failure_balance_transaction"].append(_text(rec, "failure_balance_transaction", prefix="txn_"))
        rows["record"].append(_record_text(rec))
        rows["balance_transaction_record"].append(_record_text(fetched[txn]) if txn in fetched else None)
    return pd.DataFrame({c: pd.Series(v, dtype="int64" if t == "int64" else "string[pyarrow]")
                         for (c, t), v in zip(PAYOUT_COLUMNS.items(), rows.values())})


def fetched_not_pulled(payouts: pd.DataFrame | None, pulled_ids: set[str] | pd.Series) -> pd.DataFrame:
    """The rows of ``payouts`` whose balance transaction was fetched and the balance pull does
    not hold (``pulled_ids``): the reconciliation reads them, the provider file publishes them."""
    if payouts is None or not len(payouts):
        return pd.DataFrame({c: pd.Series([], dtype="string[pyarrow]") for c in PAYOUT_COLUMNS})
    fetched = payouts.dropna(subset=["balance_transaction_record"])
    if not isinstance(pulled_ids, pd.Series):  # a set: compared as pandas compares it
        pulled_ids = pd.Series(list(pulled_ids), dtype=object)
    return fetched[~isin(fetched["balance_transaction"], pulled_ids)]


def extra_balance_transactions(payouts: pd.DataFrame | None, pulled_ids: set[str] | pd.Series) -> list[dict]:
    """``fetched_not_pulled``'s balance transactions as Stripe sent them (without the provider
    member), by id."""
    out = []
    for text in fetched_not_pulled(payouts, pulled_ids)["balance_transaction_record"].tolist():
        rec = json.loads(text)
        rec.pop("provider", None)
        out.append(rec)
    return sorted(out, key=lambda r: r["id"])


def with_payout_transactions(stripe: pd.DataFrame, payouts: pd.DataFrame | None) -> pd.DataFrame:
    """The balance pull plus the payouts' fetched balance transactions it does not hold, as one
    frame sorted by id: every balance transaction the day reads."""
    from finance_pipeline.providers.stripe_pull import balance_transactions_frame

    extra = extra_balance_transactions(payouts, stripe["id"])
    if not extra:
        return stripe
    more = balance_transactions_frame(extra)
    more = more[[c for c in stripe.columns if c in more.columns]]
    both = pd.concat([stripe, more.astype({c: stripe[c].dtype for c in more.columns})], ignore_index=True)
    return both.sort_values("id", kind="mergesort").reset_index(drop=True)


def pull_day_payouts(api_key: str, api_base: str, window: tuple[int, int], day: tuple[int, int],
                     retry: RetryPolicy = RetryPolicy(), page_size: int = 100, *, timeout_s: float = 60.0,
                     http_client: str = "requests") -> pd.DataFrame:
    """The payouts created in ``window`` or arriving in ``day`` (unix seconds, [gte, lt)), with
    the balance transactions of those created before ``window`` fetched by id."""
    for lo, hi in (window, day):
        _check_window(lo, hi)
    _check_http_client(http_client)
    check_endpoint(api_key, api_base)
    client = _client(api_key, api_base, timeout_s, http_client)
    by_id: dict[str, dict] = {}
    for key, (lo, hi) in (("created", window), ("arrival_date", day)):
        for rec in _pull_list(client, "/v1/payouts", {key: {"gte": lo, "lt": hi}}, retry, page_size):
            by_id[rec.get("id")] = rec
    fetched: dict[str, dict] = {}
    for rec in by_id.values():
        txn = _text(rec, "balance_transaction", prefix="txn_")
        if txn is None or window[0] <= _int(rec, "created") < window[1]:
            continue
        if not _TXN_ID.match(txn):
            raise ValueError(f"payout {rec.get('id')!r}: 'balance_transaction' {txn!r} is not a balance transaction id")
        endpoint = f"GET /v1/balance_transactions/{txn}"
        response = _call(lambda txn=txn: client.raw_request("get", f"/v1/balance_transactions/{txn}"), endpoint, retry)
        if not isinstance(response.data, dict) or response.data.get("id") != txn:
            raise ProviderError(PROVIDER, endpoint, 200, "the response is not that balance transaction")
        fetched[txn] = response.data
    return payouts_frame(list(by_id.values()), fetched)
