"""Stuck payouts and their re-trigger, on real ledgers and the real payout sandbox."""

from __future__ import annotations

import pytest

from finance_pipeline.ledger.audit import now_us
from finance_pipeline.oncall.stuck import find_stuck_payouts, retrigger_settlement
from finance_pipeline.payouts.service import QuorumNotMetError, get_payout
from finance_pipeline_tests.oncall.helpers import HOUR_US, make_stuck_payout, renew_approvals

SLA_S = 4 * 3600


def test_a_payout_pending_past_the_sla_is_stuck_with_approvals_and_audit_trail(ledger, payout_sandbox):
    t0 = now_us() - 5 * HOUR_US
    make_stuck_payout(ledger, payout_sandbox, "pay_old", at_us=t0)
    make_stuck_payout(ledger, payout_sandbox, "pay_recent", at_us=now_us() - HOUR_US)

    [stuck] = find_stuck_payouts(ledger, sla_s=SLA_S)
    assert stuck.payout_id == "pay_old" and stuck.payout.status == "pending"
    assert stuck.pending_since_us == t0 and stuck.pending_for_s >= 5 * 3600
    assert [(a["approver"], a["role"], a["valid"]) for a in stuck.approvals] == [
        ("fin:lena", "finance-lead", True), ("sec:sam", "security-engineer", True)]
    assert [e["action"] for e in stuck.audit_events] == [
        "payout.create", "payout.approve", "payout.approve", "payout.settle"]
    alert = stuck.to_alert()
    assert alert.key == f"stuck_payout:pay_old:{t0}"
    assert "USD 150,000.00" in alert.summary and "retrigger-settlement pay_old" in alert.summary
    assert alert.detail["approvals"] == stuck.approvals

    # Exactly at the SLA boundary it counts; a second earlier it does not.
    assert [p.payout_id for p in find_stuck_payouts(ledger, sla_s=SLA_S, now_us=t0 + SLA_S * 10**6)] == ["pay_old"]
    assert find_stuck_payouts(ledger, sla_s=SLA_S, now_us=t0 + SLA_S * 10**6 - 1) == []


def test_retrigger_without_quorum_is_refused_and_with_quorum_settles(ledger, payout_sandbox):
    # Stuck for more than a day: the approvals (24 h) have expired since it was submitted.
    make_stuck_payout(ledger, payout_sandbox, "pay_1", at_us=now_us() - 30 * HOUR_US)
    payout_sandbox.mark_stuck(["pay_1"], stuck=False)
    sent_before = len(payout_sandbox.requests())
    with pytest.raises(QuorumNotMetError) as refused:
        retrigger_settlement(ledger, "pay_1", base_url=payout_sandbox.url, token=payout_sandbox.token,
                             actor="ops:ana")
    assert set(refused.value.missing_roles) == {"finance-lead", "security-engineer"}
    assert "finance-lead" in str(refused.value)
    assert len(payout_sandbox.requests()) == sent_before  # nothing reached the provider
    assert get_payout(ledger, "pay_1").payout.status == "pending"

    renew_approvals(ledger, "pay_1")
    outcome = retrigger_settlement(ledger, "pay_1", base_url=payout_sandbox.url,
                                   token=payout_sandbox.token, actor="ops:ana")
    assert (outcome.status, outcome.provider_status) == ("settled", "settled")
    view = get_payout(ledger, "pay_1")
    assert view.payout.status == "settled"
    assert view.events[-1].actor == "ops:ana" and view.events[-1].id == outcome.audit_event_id
    assert find_stuck_payouts(ledger, sla_s=SLA_S) == []


def test_a_retrigger_that_stays_pending_starts_a_new_sla_and_a_new_key(ledger, payout_sandbox):
    t0 = now_us() - 5 * HOUR_US
    make_stuck_payout(ledger, payout_sandbox, "pay_2", at_us=t0)
    [before] = find_stuck_payouts(ledger, sla_s=SLA_S)
    outcome = retrigger_settlement(ledger, "pay_2", base_url=payout_sandbox.url,
                                   token=payout_sandbox.token, actor="ops:ana")
    assert outcome.status == "pending"  # the sandbox still holds it
    assert find_stuck_payouts(ledger, sla_s=SLA_S) == []
    [after] = find_stuck_payouts(ledger, sla_s=SLA_S, now_us=now_us() + (SLA_S + 1) * 10**6)
    assert after.key != before.key
