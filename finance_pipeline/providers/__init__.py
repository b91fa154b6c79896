"""Pulls from the payment providers (Stripe, the payout provider). Plain Python, no Dagster."""

from __future__ import annotations


class ProviderError(RuntimeError):
    """A provider call failed for good: auth refused, a bad request, or retries exhausted."""

    def __init__(
        self,
        provider: str,
        endpoint: str,
        status: int | None,
        message: str,
        *,
        attempts: int = 1,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        self.detail = message
        where = f"HTTP {status}" if status is not None else "no HTTP response"
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{provider} {endpoint} failed with {where}{tries}: {message}")

    def __reduce__(self):
        # Raised in a worker process (a parallel pull) and re-raised here: pickle rebuilds it
        # from its own arguments, not from the formatted message.
        return (_rebuild, (type(self), self.provider, self.endpoint, self.status, self.detail, self.attempts))


def _rebuild(cls, provider, endpoint, status, message, attempts):
    return cls(provider, endpoint, status, message, attempts=attempts)


__all__ = ["ProviderError"]
