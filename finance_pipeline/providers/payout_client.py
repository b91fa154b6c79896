"""The one client of the payout provider's HTTP API: the pulls' paged reads (``list_all``), the
mutating calls (create, settle) and a single-payout read, with one error and retry policy.

Both POSTs are idempotent at the provider (create on ``payout_id``, settle on the payout), so
they are retried like the pulls: on 429, 5xx and connection failures, even when the request may
already have been processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from finance_pipeline.providers import ProviderError
from finance_pipeline.providers.retry import (
    RetryableFailure,
    RetryPolicy,
    call_with_retry,
    is_retryable_status,
    parse_retry_after,
)

PROVIDER = "payout_sandbox"


@dataclass(frozen=True)
class SettleResult:
    """The provider's answer to a settle: ``status`` settled/failed (HTTP 200) or pending (202)."""

    http_status: int
    status: str
    body: dict[str, Any]

    @property
    def pending(self) -> bool:
        return self.status == "pending"


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json()["error"]
        text = str(err.get("message"))
        return text + (f" (field {err['field']!r})" if err.get("field") else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return resp.text[:200] or resp.reason_phrase


class PayoutProviderClient:
    """``create``, ``get`` and ``settle`` on the payout provider, with ``retry`` between tries."""

    def __init__(self, base_url: str, token: str, retry: RetryPolicy = RetryPolicy(), *,
                 timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                    headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PayoutProviderClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method: str, path: str, ok: tuple[int, ...], json_body: Any = None,
              params: dict[str, Any] | None = None) -> httpx.Response:
        endpoint = f"{method} {path}"

        def attempt() -> httpx.Response:
            try:
                resp = self._client.request(method, path, json=json_body, params=params)
            except httpx.TransportError as exc:
                raise RetryableFailure(None, f"connection failed: {type(exc).__name__}: {exc}") from exc
            if is_retryable_status(resp.status_code):
                raise RetryableFailure(resp.status_code, _error_message(resp),
                                       parse_retry_after(resp.headers.get("retry-after")))
            if resp.status_code == 401:
                raise ProviderError(PROVIDER, endpoint, 401,
                                    f"{_error_message(resp)}; check PAYOUT_API_TOKEN")
            if resp.status_code not in ok:
                raise ProviderError(PROVIDER, endpoint, resp.status_code,
                                    f"{_error_message(resp)}; the request was rejected")
            return resp

        return call_with_retry(attempt, self.retry, provider=PROVIDER, endpoint=endpoint)

    @staticmethod
    def _json(resp: httpx.Response, endpoint: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(PROVIDER, endpoint, resp.status_code, "response is not a JSON object")
        return body

    def create(self, payout_id: str, amount_minor: int, currency: str, destination: str,
               metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the payout (or get the existing identical one); 409 if it exists differently."""
        body = {"payout_id": payout_id, "amount_minor": amount_minor, "currency": currency,
                "destination": destination, "metadata": metadata or {}}
        resp = self._call("POST", "/payouts", (200, 201), body)
        return self._json(resp, "POST /payouts")

    def list_all(self, path: str, params: dict[str, Any], page_size: int) -> list[dict]:
        """Every record of a paged list (``data`` + ``next_cursor``), page after page."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be a positive int, got {page_size!r}")
        endpoint = f"GET {path}"
        params = {k: v for k, v in params.items() if v is not None}
        out: list[dict] = []
        seen_cursors: set[str] = set()
        cursor: str | None = None
        while True:
            page = {**params, "limit": page_size, **({"cursor": cursor} if cursor else {})}
            body = self._json(self._call("GET", path, (200,), params=page), endpoint)
            if not isinstance(body.get("data"), list) or not (
                    body.get("next_cursor") is None or isinstance(body.get("next_cursor"), str)):
                raise ProviderError(PROVIDER, endpoint, 200, "response lacks 'data' list / 'next_cursor'")
            out.extend(body["data"])
            cursor = body["next_cursor"]
            if cursor is None:
                return out
            if cursor in seen_cursors:
                raise ProviderError(PROVIDER, endpoint, 200, "next_cursor repeated; paging would never end")
            seen_cursors.add(cursor)

    def get(self, payout_id: str) -> dict[str, Any]:
        path = f"/payouts/{quote(payout_id, safe='')}"
        return self._json(self._call("GET", path, (200,)), f"GET {path}")

    def settle(self, payout_id: str) -> SettleResult:
        """Ask the provider to settle; 200 carries the settlement, 202 the still-pending payout."""
        path = f"/payouts/{quote(payout_id, safe='')}/settle"
        resp = self._call("POST", path, (200, 202))
        body = self._json(resp, f"POST {path}")
        status = body.get("status")
        if resp.status_code == 202:
            status = "pending"
        if status not in ("settled", "failed", "pending"):
            raise ProviderError(PROVIDER, f"POST {path}", resp.status_code,
                                f"unexpected payout status {status!r} in the answer")
        return SettleResult(resp.status_code, status, body)
