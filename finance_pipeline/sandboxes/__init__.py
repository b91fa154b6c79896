"""Local HTTP test doubles for Stripe and the payout provider (tests, demos, the CLI)."""

from finance_pipeline.sandboxes.common import (
    Faults,
    SandboxDataError,
    SandboxHandle,
    SandboxServer,
)
from finance_pipeline.sandboxes.payout_sandbox import (
    PayoutSandboxApp,
    PayoutSandboxHandle,
    start_payout_sandbox,
)
from finance_pipeline.sandboxes.stripe_sandbox import (
    StripeSandboxApp,
    StripeSandboxHandle,
    start_stripe_sandbox,
)

__all__ = [
    "Faults",
    "PayoutSandboxApp",
    "PayoutSandboxHandle",
    "SandboxDataError",
    "SandboxHandle",
    "SandboxServer",
    "StripeSandboxApp",
    "StripeSandboxHandle",
    "start_payout_sandbox",
    "start_stripe_sandbox",
]
