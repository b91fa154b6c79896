"""Embedded defaults: what runs when DATABASE_URL, PAYOUT_API_BASE, ... are not set (Stripe
itself is the one default that is not embedded: STRIPE_API_BASE unset means Stripe's API).

Plain constants, read by nobody at import time except as defaults; the environment is
consulted only when definitions are loaded or a command runs.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_VAR_DIR = "var"
DEFAULT_PARTITIONS_START = "2026-11-01"
DEFAULT_STRIPE_PORT = 12111
DEFAULT_PAYOUT_PORT = 12112
DEFAULT_STRIPE_API_KEY = "sk_test_sandbox"
DEFAULT_PAYOUT_TOKEN = "payout_sandbox_token"
# Reconciliation tolerances (issue 3 documents them in full).
# One hour: the 02:00 UTC export of yesterday then sees every boundary counterpart.
DEFAULT_TIME_TOLERANCE_S = 3600
DEFAULT_AMOUNT_TOLERANCE_MINOR = 0
# How far in the future an entry may be dated (clock skew between writers), in seconds.
DEFAULT_ENTRY_FUTURE_SKEW_S = 3600
# How long a person's submitted entry waits for its second person, in seconds.
DEFAULT_JOURNAL_REVIEW_TTL_S = 86400


def var_dir() -> Path:
    """Folder for the embedded default's files (ledger, storage, keys, sandboxes)."""
    return Path(os.environ.get("FP_VAR_DIR", DEFAULT_VAR_DIR))


def default_database_url() -> str:
    return f"sqlite:///{var_dir() / 'ledger.sqlite3'}"


def default_stripe_api_base() -> str:
    """Stripe's own API: the local sandbox is set explicitly (demo, `make dev`, tests), never
    reached by default, so a real key is never sent to a stand-in."""
    return "https://api.stripe.com"


def sandbox_stripe_api_base() -> str:
    return f"http://127.0.0.1:{DEFAULT_STRIPE_PORT}"


def default_payout_api_base() -> str:
    return f"http://127.0.0.1:{DEFAULT_PAYOUT_PORT}"


def default_storage_dir() -> str:
    return str(var_dir() / "storage")


def partitions_start() -> str:
    """The first daily partition (FP_PARTITIONS_START): no entry may be dated before it."""
    return os.environ.get("FP_PARTITIONS_START") or DEFAULT_PARTITIONS_START


def entry_future_skew_s() -> int:
    """FP_ENTRY_FUTURE_SKEW_S: how far past now an entry may be dated."""
    raw = os.environ.get("FP_ENTRY_FUTURE_SKEW_S", "").strip()
    if not raw:
        return DEFAULT_ENTRY_FUTURE_SKEW_S
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FP_ENTRY_FUTURE_SKEW_S must be a number of seconds such as 3600, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"FP_ENTRY_FUTURE_SKEW_S must be >= 0, got {value}")
    return value


def journal_review_ttl_s() -> int:
    """FP_JOURNAL_REVIEW_TTL_S: how long a submitted entry waits for its review."""
    raw = os.environ.get("FP_JOURNAL_REVIEW_TTL_S", "").strip()
    if not raw:
        return DEFAULT_JOURNAL_REVIEW_TTL_S
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"FP_JOURNAL_REVIEW_TTL_S must be a positive number of seconds such as 86400, got {raw!r}")
    return value
