"""Resources of the on-call operations: where alerts go, and the SLA and grace settings."""

from __future__ import annotations

from typing import Any, Callable

import dagster as dg

from finance_pipeline.defs.resources import configured
from finance_pipeline.settings import DEFAULT_BATCH_GRACE_S, DEFAULT_STUCK_PAYOUT_SLA_S, Settings


class NotifierResource(dg.ConfigurableResource):
    """Alerts: always an audit event and a log line; also a JSON POST to ``FP_ALERT_WEBHOOK_URL``
    when it is set (retried with backoff; a failing webhook never fails the sensor)."""

    webhook_url: str = ""
    attempts: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 5.0

    def notifier(self, engine: Any, log: Callable[[str], Any] | None = None):
        from finance_pipeline.oncall.notify import Notifier

        return Notifier(engine, log=log, webhook_url=self.webhook_url or None,
                        attempts=self.attempts, backoff_s=self.backoff_s, timeout_s=self.timeout_s)


class OpsSettings(dg.ConfigurableResource):
    """How long a payout may stay pending (``FP_STUCK_PAYOUT_SLA_S``, 4 h) and how old a partly
    applied batch must be to count as an incident (``FP_BATCH_GRACE_S``, 15 min), in seconds;
    the payout approval policy a re-triggered settlement must meet (``FP_PAYOUT_TIERS``,
    ``FP_PAYOUT_APPROVAL_TTL_S``; unset: the built-in tiers)."""

    stuck_payout_sla_s: int = DEFAULT_STUCK_PAYOUT_SLA_S
    batch_grace_s: int = DEFAULT_BATCH_GRACE_S
    payout_tiers: str = ""
    payout_approval_ttl_s: int | None = None

    def payout_policy(self):
        from finance_pipeline.payouts.policy import PayoutPolicy

        return PayoutPolicy.configured(self.payout_tiers, self.payout_approval_ttl_s)


def build_ops_resources(config: Settings) -> dict[str, dg.ConfigurableResource]:
    """Wired to ``config`` when the definitions load (see ``configured``)."""
    return {
        "notifier": NotifierResource(webhook_url=configured(config, "alert_webhook_url")),
        "ops_settings": OpsSettings(
            stuck_payout_sla_s=configured(config, "stuck_payout_sla_s"),
            batch_grace_s=configured(config, "batch_grace_s"),
            payout_tiers=configured(config, "payout_tiers"),
            payout_approval_ttl_s=configured(config, "payout_approval_ttl_s"),
        ),
    }
