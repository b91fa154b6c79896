"""The retry policy every provider pull shares: 429, 5xx and connection errors are retried.

A ``Retry-After`` header wins over our own backoff (capped by ``max_delay_s``) because the
provider knows when it will take requests again; otherwise delays grow exponentially. No
jitter: one daily job per provider, so there is no herd to spread, and runs stay reproducible.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from finance_pipeline.providers import ProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_retryable_status(status: int) -> bool:
    """429 and every 5xx are worth another try; other statuses will not change by waiting."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a provider call gets and how long to wait between them.

    ``sleep`` is injectable so tests can record the waits instead of spending them.
    """

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("base_delay_s and max_delay_s must not be negative")

    def delay_s(self, failed_attempt: int, retry_after_s: float | None = None) -> float:
        """Wait before the next try after attempt number ``failed_attempt`` (1-based) failed."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_delay_s)
        return min(self.base_delay_s * 2 ** (failed_attempt - 1), self.max_delay_s)


class RetryableFailure(Exception):
    """Raised by an attempt whose failure is transient (429, 5xx, connection trouble)."""

    def __init__(self, status: int | None, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s


def call_with_retry(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    provider: str,
    endpoint: str,
) -> T:
    """Run ``attempt`` until it returns, raises something other than RetryableFailure, or
    ``policy.max_attempts`` is used up, in which case a ProviderError names the last failure.
    """
    for n in range(1, policy.max_attempts + 1):
        try:
            return attempt()
        except RetryableFailure as failure:
            if n == policy.max_attempts:
                hint = (
                    "the provider kept rate limiting; retry later or lower the request rate"
                    if failure.status == 429
                    else "the provider is failing or unreachable; check its status and retry the run"
                )
                raise ProviderError(
                    provider, endpoint, failure.status, f"{failure.detail}; {hint}", attempts=n
                ) from failure
            wait = policy.delay_s(n, failure.retry_after_s)
            log.warning(
                "%s %s: %s (attempt %d of %d); retrying in %.3g s%s",
                provider, endpoint, failure.detail, n, policy.max_attempts, wait,
                " as Retry-After asked" if failure.retry_after_s is not None else "",
            )
            policy.sleep(wait)
    raise AssertionError("unreachable")  # the loop either returns or raises
