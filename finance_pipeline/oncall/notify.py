"""One way to raise an alert: an audit event in the ledger, a log line, and a webhook if set.

The audit event is the durable record and needs nothing from Dagster; the log line goes
wherever the caller's logger goes (a sensor passes ``context.log``); the webhook
(``FP_ALERT_WEBHOOK_URL``) gets a JSON body, retried with backoff. Nothing here raises to
the caller: an alert path that can crash would take the sensor down with the incident.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa

ALERT_FORMAT = "finance-pipeline-alert/1"
ALERT_ACTION = "ops.alert"
ALERT_SUBJECT = "alert"
DEFAULT_ACTOR = "system:ops-alerts"
SEVERITIES = ("info", "warning", "critical")
# audit_events.subject_id is VARCHAR(255).
_MAX_KEY = 255


@dataclass(frozen=True)
class Alert:
    """What happened, once: ``key`` is stable for the life of the incident (dedup key)."""

    kind: str
    key: str
    summary: str
    severity: str = "warning"
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        if not self.key or len(self.key) > _MAX_KEY:
            raise ValueError(f"alert key must be 1-{_MAX_KEY} characters, got {len(self.key)}")

    def body(self, ts_us: int) -> dict[str, Any]:
        """The webhook's JSON body. ``text`` makes it readable as-is by Slack-style webhooks."""
        from finance_pipeline.domain.timeutil import format_ts_us

        return {
            "format": ALERT_FORMAT, "kind": self.kind, "key": self.key, "severity": self.severity,
            "summary": self.summary, "detail": self.detail, "ts": format_ts_us(ts_us),
            "text": f"[{self.severity}] {self.summary}",
        }


@dataclass
class Delivery:
    """What became of one alert. ``recorded``: at least one durable channel took it."""

    alert_key: str
    audit_event_id: int | None = None
    webhook: str = "not_configured"  # not_configured | delivered | failed | skipped
    webhook_attempts: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def recorded(self) -> bool:
        return self.audit_event_id is not None or self.webhook == "delivered"


class Notifier:
    """Sends alerts. One instance per sensor tick: after a webhook has failed every attempt,
    later alerts of the same tick skip it, so a dead endpoint cannot stall the tick past the
    sensor's time limit (the audit event still records each alert)."""

    def __init__(
        self,
        engine: sa.Engine | None,
        *,
        log: Callable[[str], Any] | None = None,
        webhook_url: str | None = None,
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        actor: str = DEFAULT_ACTOR,
        sleep: Callable[[float], Any] = time.sleep,
        now_us: Callable[[], int] | None = None,
    ) -> None:
        from finance_pipeline.ledger.audit import now_us as _now_us

        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.engine = engine
        self.log = log or (lambda message: None)
        self.webhook_url = webhook_url or None
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.actor = actor
        self._sleep = sleep
        self._now_us = now_us or _now_us
        self._webhook_down = False

    def notify(self, alert: Alert) -> Delivery:
        ts = self._now_us()
        out = Delivery(alert.key)
        self._safe_log(f"ALERT [{alert.severity}] {alert.kind} {alert.key}: {alert.summary}")
        out.audit_event_id = self._audit(alert, ts, out)
        if self.webhook_url:
            if self._webhook_down:
                out.webhook = "skipped"
                out.errors.append("webhook skipped: it failed earlier in this tick")
            else:
                self._post(alert.body(ts), out)
        return out

    def notify_all(self, alerts: Iterable[Alert]) -> list[Delivery]:
        return [self.notify(a) for a in alerts]

    def _safe_log(self, message: str) -> None:
        try:
            self.log(message)
        except Exception:  # a broken logger must not lose the audit event or the webhook
            pass

    def _audit(self, alert: Alert, ts: int, out: Delivery) -> int | None:
        if self.engine is None:
            return None
        from finance_pipeline.ledger.audit import record_event
        from finance_pipeline.ledger.engine import begin_write

        try:
            with begin_write(self.engine) as conn:
                return record_event(
                    conn, self.actor, ALERT_ACTION, ALERT_SUBJECT, alert.key,
                    {"kind": alert.kind, "severity": alert.severity, "summary": alert.summary,
                     "detail": alert.detail},
                    ts_us=ts,
                )
        except Exception as exc:
            message = f"audit event for alert {alert.key} not recorded: {type(exc).__name__}: {exc}"
            out.errors.append(message)
            self._safe_log(message)
            return None

    def _post(self, body: dict[str, Any], out: Delivery) -> None:
        import httpx

        data = json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "finance-pipeline-alerts/1"}
        last = ""
        for attempt in range(1, self.attempts + 1):
            out.webhook_attempts = attempt
            retryable = True
            try:
                with httpx.Client(timeout=self.timeout_s) as client:
                    response = client.post(self.webhook_url, content=data, headers=headers)
                if 200 <= response.status_code < 300:
                    out.webhook = "delivered"
                    return
                last = f"HTTP {response.status_code}"
                # 4xx other than 429 is our request or the URL being wrong: retrying cannot help.
                retryable = response.status_code == 429 or response.status_code >= 500
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # e.g. a malformed URL; still never the caller's problem
                last = f"{type(exc).__name__}: {exc}"
                retryable = False
            if not retryable or attempt == self.attempts:
                break
            self._sleep(self.backoff_s * 2 ** (attempt - 1))
        out.webhook = "failed"
        self._webhook_down = True
        message = f"webhook delivery of alert {body['key']} failed after {out.webhook_attempts} attempt(s): {last}"
        out.errors.append(message)
        self._safe_log(message)


@dataclass
class AlertCursor:
    """Incident keys already alerted and still open; a sensor's cursor is its JSON.

    Keys of incidents that are gone are dropped, so the cursor stays as small as the set of
    open incidents, and an incident that comes back later alerts again.
    """

    open: dict[str, int] = field(default_factory=dict)  # key -> first alerted (UTC us)

    @classmethod
    def load(cls, text: str | None) -> "AlertCursor":
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls({str(k): int(v) for k, v in data.get("open", {}).items()})
        except (ValueError, AttributeError, TypeError):
            # An unreadable cursor re-alerts open incidents once rather than silencing them.
            return cls()

    def dump(self) -> str:
        return json.dumps({"v": 1, "open": dict(sorted(self.open.items()))}, sort_keys=True)

    def is_new(self, key: str) -> bool:
        return key not in self.open

    def mark(self, key: str, at_us: int) -> None:
        self.open.setdefault(key, at_us)

    def retain(self, current_keys: Iterable[str]) -> list[str]:
        """Forget keys not in ``current_keys``; returns the forgotten (resolved) ones."""
        current = set(current_keys)
        gone = sorted(k for k in self.open if k not in current)
        for k in gone:
            del self.open[k]
        return gone
