"""The notifier against a real ledger and a real local webhook receiver."""

from __future__ import annotations

import pytest

from finance_pipeline.ledger.audit import list_events
from finance_pipeline.oncall.notify import ALERT_ACTION, Alert, AlertCursor, Notifier
from finance_pipeline_tests.oncall.helpers import WebhookReceiver, refused_url

ALERT = Alert(kind="partial_batch", key="partial_batch:b-1", summary="batch b-1 is partly applied",
              severity="critical", detail={"batch_id": "b-1", "days": ["2026-11-02"], "amounts": {"USD": 1250}})


def _notifier(engine, url=None, **kw):
    logs: list[str] = []
    sleeps: list[float] = []
    n = Notifier(engine, log=logs.append, webhook_url=url, sleep=sleeps.append,
                 now_us=lambda: 1_793_577_600_000_000, timeout_s=2.0, **kw)
    return n, logs, sleeps


def test_webhook_receives_the_alert_as_json_and_the_audit_event_is_recorded(ledger, webhook):
    n, logs, _ = _notifier(ledger, webhook.url)
    delivery = n.notify(ALERT)
    assert delivery.recorded and delivery.webhook == "delivered" and delivery.webhook_attempts == 1
    [req] = webhook.requests
    assert req["path"] == "/hooks/alerts"
    assert req["headers"]["Content-Type"] == "application/json"
    [body] = webhook.json_bodies()
    assert body == {
        "format": "finance-pipeline-alert/1", "kind": "partial_batch", "key": "partial_batch:b-1",
        "severity": "critical", "summary": "batch b-1 is partly applied",
        "detail": {"batch_id": "b-1", "days": ["2026-11-02"], "amounts": {"USD": 1250}},
        "ts": "2026-11-02T00:00:00Z", "text": "[critical] batch b-1 is partly applied",
    }
    [event] = list_events(ledger, action=ALERT_ACTION)
    assert event.id == delivery.audit_event_id
    assert (event.subject_type, event.subject_id) == ("alert", "partial_batch:b-1")
    assert event.detail["detail"]["amounts"] == {"USD": 1250}
    assert any("partial_batch:b-1" in line for line in logs)


def test_server_errors_are_retried_with_exponential_backoff(ledger):
    receiver = WebhookReceiver(statuses=[500, 503])
    try:
        n, _, sleeps = _notifier(ledger, receiver.url, attempts=3, backoff_s=0.25)
        delivery = n.notify(ALERT)
    finally:
        receiver.stop()
    assert [r["status"] for r in receiver.requests] == [500, 503, 200]
    assert delivery.webhook == "delivered" and delivery.webhook_attempts == 3
    assert sleeps == [0.25, 0.5]


def test_a_webhook_that_keeps_failing_never_raises_and_is_skipped_for_the_rest_of_the_tick(ledger):
    receiver = WebhookReceiver(statuses=[500] * 10)
    try:
        n, logs, sleeps = _notifier(ledger, receiver.url, attempts=3)
        first = n.notify(ALERT)
        second = n.notify(Alert(kind="stuck_payout", key="stuck_payout:p1:1", summary="p1 stuck"))
    finally:
        receiver.stop()
    assert first.webhook == "failed" and first.webhook_attempts == 3 and len(sleeps) == 2
    assert second.webhook == "skipped"
    assert len(receiver.requests) == 3  # the second alert did not wait on a dead endpoint again
    # The audit trail still has both: the alerts are recorded, the sensor can move on.
    assert first.recorded and second.recorded
    assert [e.subject_id for e in list_events(ledger, action=ALERT_ACTION)] == [
        "partial_batch:b-1", "stuck_payout:p1:1"]
    assert any("failed after 3 attempt(s): HTTP 500" in line for line in logs)


def test_connection_refused_is_retried_then_reported_not_raised(ledger):
    n, logs, sleeps = _notifier(ledger, refused_url(), attempts=2)
    delivery = n.notify(ALERT)
    assert delivery.webhook == "failed" and delivery.webhook_attempts == 2 and sleeps == [0.5]
    assert "ConnectError" in delivery.errors[0]
    assert delivery.recorded  # by the audit event


def test_a_client_error_is_not_retried(ledger):
    receiver = WebhookReceiver(statuses=[404])
    try:
        n, _, sleeps = _notifier(ledger, receiver.url, attempts=3)
        delivery = n.notify(ALERT)
    finally:
        receiver.stop()
    assert delivery.webhook == "failed" and delivery.webhook_attempts == 1 and sleeps == []


def test_without_a_webhook_the_audit_event_and_the_log_remain(ledger):
    n, logs, _ = _notifier(ledger, None)
    delivery = n.notify(ALERT)
    assert delivery.webhook == "not_configured" and delivery.audit_event_id is not None
    assert len(logs) == 1


def test_an_unusable_ledger_does_not_stop_the_webhook(tmp_path, webhook):
    from finance_pipeline.ledger.engine import create_ledger_engine

    # A database without the schema: the audit insert fails.
    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    n, logs, _ = _notifier(engine, webhook.url)
    delivery = n.notify(ALERT)
    assert delivery.audit_event_id is None
    assert delivery.webhook == "delivered" and delivery.recorded
    assert any("not recorded" in line for line in logs)


def test_nothing_durable_means_not_recorded(tmp_path):
    from finance_pipeline.ledger.engine import create_ledger_engine

    engine = create_ledger_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    n, _, _ = _notifier(engine, refused_url(), attempts=1)
    assert not n.notify(ALERT).recorded


def test_alert_cursor_round_trips_forgets_resolved_keys_and_survives_garbage():
    cursor = AlertCursor.load(None)
    assert cursor.is_new("a")
    cursor.mark("a", 1)
    cursor.mark("b", 2)
    cursor.mark("a", 3)  # the first alert time is kept
    again = AlertCursor.load(cursor.dump())
    assert again.open == {"a": 1, "b": 2} and not again.is_new("a")
    assert again.retain(["b", "c"]) == ["a"]
    assert again.open == {"b": 2}
    assert AlertCursor.load("not json").open == {}
    assert AlertCursor.load('["a list"]').open == {}


def test_alert_rejects_an_unknown_severity_and_an_oversized_key():
    with pytest.raises(ValueError):
        Alert(kind="x", key="k", summary="s", severity="panic")
    with pytest.raises(ValueError):
        Alert(kind="x", key="k" * 256, summary="s")


def test_the_operations_logic_does_not_need_dagster():
    import subprocess
    import sys

    code = ("import sys\n"
            "import finance_pipeline.oncall.imbalance, finance_pipeline.oncall.notify, finance_pipeline.oncall.repair, "
            "finance_pipeline.oncall.signing, finance_pipeline.oncall.stuck\n"
            "sys.exit(1 if 'dagster' in sys.modules else 0)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
