"""Resources of the on-call operations: where alerts go, and the SLA and grace settings."""

from __future__ import annotations

from typing import Any, Callable

import dagster as dg

from finance_pipeline.defs.resources import env_int_or, env_or


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
    applied batch must be to count as an incident (``FP_BATCH_GRACE_S``, 15 min), in seconds."""

    stuck_payout_sla_s: int = 4 * 3600
    batch_grace_s: int = 15 * 60


def build_ops_resources() -> dict[str, dg.ConfigurableResource]:
    """Wired to the environment when the definitions load; unset means the defaults above."""
    return {
        "notifier": NotifierResource(webhook_url=env_or("FP_ALERT_WEBHOOK_URL", "")),
        "ops_settings": OpsSettings(
            stuck_payout_sla_s=env_int_or("FP_STUCK_PAYOUT_SLA_S", 4 * 3600),
            batch_grace_s=env_int_or("FP_BATCH_GRACE_S", 15 * 60),
        ),
    }
