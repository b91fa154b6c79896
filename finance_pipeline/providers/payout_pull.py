"""Pull settlements and pending payouts from the payout provider (its one client, payout_client.py)."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from finance_pipeline.columnar.canonical import canonical_strs_of_json
from finance_pipeline.domain.money import is_currency
from finance_pipeline.domain.timeutil import TimestampError, format_ts_us, parse_ts_us
from finance_pipeline.providers.retry import RetryPolicy

PROVIDER = "payout_sandbox"

SETTLEMENT_COLUMNS: dict[str, str] = {
    "provider": "str",
    "id": "str",
    "payout_id": "str",
    "status": "str",
    "amount_minor": "int64",
    "currency": "str",
    "ts_us": "int64",
    # The record as the provider sent it plus a "provider" member, as canonical JSON: its line
    # in the proof's provider_records.jsonl.
    "record": "str",
}


def _ts_text(value: str | int | None, name: str) -> str | None:
    """RFC 3339 'Z' text for a bound given as text or as UTC microseconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{name} must be an RFC 3339 timestamp or UTC microseconds, got {value!r}")
    try:
        return format_ts_us(value if isinstance(value, int) else parse_ts_us(value))
    except TimestampError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _pull_all(
    base_url: str, token: str, path: str, params: dict[str, Any], retry: RetryPolicy, page_size: int, timeout_s: float
) -> list[dict]:
    from finance_pipeline.providers.payout_client import PayoutProviderClient

    with PayoutProviderClient(base_url, token, retry, timeout_s=timeout_s) as client:
        return client.list_all(path, params, page_size)


def pull_settlements(
    base_url: str,
    token: str,
    from_ts: str | int,
    to_ts: str | int,
    retry: RetryPolicy = RetryPolicy(),
    page_size: int = 100,
    *,
    timeout_s: float = 30.0,
) -> list[dict]:
    """Settlements with settled_at in [from_ts, to_ts), ordered by (settled_at, id).

    Bounds are RFC 3339 text (e.g. '2026-01-02T00:00:00Z') or UTC microseconds.
    """
    params = {"from": _ts_text(from_ts, "from_ts"), "to": _ts_text(to_ts, "to_ts")}
    return _pull_all(base_url, token, "/settlements", params, retry, page_size, timeout_s)


def pull_pending_payouts(
    base_url: str,
    token: str,
    created_to: str | int,
    retry: RetryPolicy = RetryPolicy(),
    page_size: int = 100,
    *,
    created_from: str | int | None = None,
    timeout_s: float = 30.0,
) -> list[dict]:
    """Payouts still pending that were created before ``created_to`` (exclusive)."""
    params = {
        "status": "pending",
        "created_from": _ts_text(created_from, "created_from"),
        "created_to": _ts_text(created_to, "created_to"),
    }
    return _pull_all(base_url, token, "/payouts", params, retry, page_size, timeout_s)


def settlements_frame(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per settlement (or payout record), sorted by id.

    ``ts_us`` is settled_at when present, else created_at (pending payouts), in UTC microseconds.
    """
    rows: dict[str, list[Any]] = {col: [] for col in SETTLEMENT_COLUMNS}
    seen: set[str] = set()
    recs = sorted(records, key=lambda r: str(r.get("id")))
    for rec in recs:
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"settlement record without a string 'id': {rec!r}")
        if rid in seen:
            raise ValueError(f"settlement record {rid!r} appears twice; deduplicate the pull first")
        seen.add(rid)
        amount = rec.get("amount_minor")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ValueError(f"settlement record {rid!r}: 'amount_minor' must be an integer, got {amount!r}")
        currency = rec.get("currency")
        if not is_currency(currency):
            raise ValueError(f"settlement record {rid!r}: 'currency' {currency!r} is not an ISO 4217 code in capitals")
        when_key = "settled_at" if rec.get("settled_at") is not None else "created_at"
        try:
            ts_us = parse_ts_us(rec.get(when_key))
        except TimestampError as exc:
            raise ValueError(f"settlement record {rid!r}: '{when_key}' {exc}") from None
        if "provider" in rec:
            raise ValueError(f"settlement record {rid!r} already has a 'provider' member; the proof's "
                             "provider_records.jsonl adds its own")
        rows["provider"].append(PROVIDER)
        rows["id"].append(rid)
        rows["payout_id"].append(rec.get("payout_id"))
        rows["status"].append(rec.get("status"))
        rows["amount_minor"].append(amount)
        rows["currency"].append(currency)
        rows["ts_us"].append(ts_us)
    rows["record"] = canonical_strs_of_json([{**rec, "provider": PROVIDER} for rec in recs])
    return pd.DataFrame({col: pd.Series(rows[col], dtype=dtype) for col, dtype in SETTLEMENT_COLUMNS.items()})
