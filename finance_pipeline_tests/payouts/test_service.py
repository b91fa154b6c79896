"""Payout approvals, quorum and settlement on SQLite and PostgreSQL, against the payout sandbox."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from finance_pipeline.ledger.audit import list_events
from finance_pipeline.ledger.schema import payout_approvals, payouts
from finance_pipeline.payouts import (
    ApprovalForbiddenError,
    PayoutConflictError,
    PayoutNotFoundError,
    PayoutPolicy,
    PayoutProviderClient,
    PayoutValidationError,
    QuorumNotMetError,
    approval_status,
    approve,
    create_payout,
    get_payout,
    submit_or_retrigger,
)
from finance_pipeline.providers import ProviderError
from finance_pipeline.providers.retry import RetryPolicy
from finance_pipeline_tests.ledger.helpers import row_counts

T0 = 1_793_614_500_000_000  # 2026-11-02T10:15:00Z
HOUR = 3600 * 1_000_000
POLICY = PayoutPolicy()
LEAD = {"finance-lead"}
SEC = {"security-engineer"}
ADMIN = {"super-admin"}


def small(engine, pid="po_small"):
    return create_payout(engine, pid, 50_000, "USD", "acct_creator_1", "ops:oscar", now_us=T0)


def medium(engine, pid="po_medium"):
    return create_payout(engine, pid, 5_000_000, "USD", "acct_creator_2", "ops:oscar", now_us=T0)


def large(engine, pid="po_large"):
    return create_payout(engine, pid, 30_000_000, "USD", "acct_creator_3", "ops:oscar", now_us=T0)


@pytest.fixture
def client(payout_sandbox):
    # No sleeping between retries: the sandbox's faults are immediate.
    with PayoutProviderClient(payout_sandbox.url, payout_sandbox.token,
                              RetryPolicy(max_attempts=3, sleep=lambda s: None)) as c:
        yield c


def api_requests(sandbox) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"], r["status"]) for r in sandbox.requests()]


# --- creating -------------------------------------------------------------------------------


def test_create_records_the_request_and_an_audit_event_and_is_idempotent(ledger):
    payout = small(ledger)
    assert (payout.status, payout.provider_reference, payout.initiated_by) == ("requested", None, "ops:oscar")
    assert small(ledger) == payout  # identical repeat
    events = list_events(ledger, subject_type="payout", subject_id="po_small")
    assert [(e.actor, e.action, e.detail["amount_minor"]) for e in events] == [
        ("ops:oscar", "payout.create", 50_000)]

    before = row_counts(ledger)
    with pytest.raises(PayoutConflictError, match="already exists with other attributes"):
        create_payout(ledger, "po_small", 50_001, "USD", "acct_creator_1", "ops:oscar")
    assert row_counts(ledger) == before


def test_create_rejects_bad_input_naming_every_field_and_writes_nothing(sqlite_ledger):
    before = row_counts(sqlite_ledger)
    with pytest.raises(PayoutValidationError) as exc:
        create_payout(sqlite_ledger, "bad id!", 12.5, "usd", "", "ops:oscar")
    assert [e.field for e in exc.value.errors] == ["payout_id", "amount_minor", "currency", "destination"]
    assert "1050 for 10.50" in str(exc.value)
    assert row_counts(sqlite_ledger) == before


# --- quorum tiers ---------------------------------------------------------------------------


def test_quorum_follows_the_tier_of_the_amount(ledger):
    small(ledger), medium(ledger), large(ledger)

    approve(ledger, "po_small", "fin:lena", "finance-lead", T0 + 1, approver_roles=LEAD, policy=POLICY)
    assert approval_status(ledger, "po_small", T0 + 2, policy=POLICY).met

    approve(ledger, "po_medium", "fin:lena", "finance-lead", T0 + 1, approver_roles=LEAD, policy=POLICY)
    status = approval_status(ledger, "po_medium", T0 + 2, policy=POLICY)
    assert (status.met, status.missing_roles) == (False, ("security-engineer",))
    approve(ledger, "po_medium", "sec:sam", "security-engineer", T0 + 3, approver_roles=SEC, policy=POLICY)
    assert approval_status(ledger, "po_medium", T0 + 4, policy=POLICY).met

    approve(ledger, "po_large", "fin:lena", "finance-lead", T0 + 1, approver_roles=LEAD, policy=POLICY)
    approve(ledger, "po_large", "sec:sam", "security-engineer", T0 + 1, approver_roles=SEC, policy=POLICY)
    status = approval_status(ledger, "po_large", T0 + 2, policy=POLICY)
    assert (status.met, status.required_roles, status.missing_roles) == (
        False, ("finance-lead", "security-engineer", "super-admin"), ("super-admin",))
    result = approve(ledger, "po_large", "root:rita", "super-admin", T0 + 5, approver_roles=ADMIN, policy=POLICY)
    assert result.outcome == "created" and result.quorum.met
    assert [a.approver for a in result.quorum.valid] == ["fin:lena", "sec:sam", "root:rita"]


def test_approvals_expire_after_the_ttl_and_can_be_renewed(ledger):
    small(ledger)
    approve(ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)

    just_before = approval_status(ledger, "po_small", T0 + 24 * HOUR - 1, policy=POLICY)
    at_expiry = approval_status(ledger, "po_small", T0 + 24 * HOUR, policy=POLICY)
    assert just_before.met and len(just_before.valid) == 1
    assert not at_expiry.met
    assert at_expiry.missing_roles == ("finance-lead",)
    assert [a.approver for a in at_expiry.expired] == ["fin:lena"]

    renewed = approve(ledger, "po_small", "fin:lena", "finance-lead", T0 + 30 * HOUR,
                      approver_roles=LEAD, policy=POLICY)
    assert renewed.outcome == "renewed" and renewed.quorum.met
    assert renewed.approval.expires_at_us == T0 + 54 * HOUR
    # A shorter configured TTL applies to approvals given under it.
    short = PayoutPolicy(approval_ttl_s=60)
    medium(ledger)
    result = approve(ledger, "po_medium", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=short)
    assert result.approval.expires_at_us == T0 + 60 * 1_000_000


def test_the_initiator_cannot_approve_their_own_payout(ledger):
    create_payout(ledger, "po_self", 50_000, "USD", "acct_1", "fin:lena", now_us=T0)
    before = row_counts(ledger)
    with pytest.raises(ApprovalForbiddenError) as exc:
        approve(ledger, "po_self", "fin:lena", "finance-lead", T0 + 1, approver_roles=LEAD, policy=POLICY)
    assert exc.value.errors[0].field == "approver"
    assert "initiated" in exc.value.errors[0].message
    assert row_counts(ledger) == before


def test_an_approver_must_hold_the_role_and_the_tier_must_need_it(sqlite_ledger):
    small(sqlite_ledger)
    before = row_counts(sqlite_ledger)
    with pytest.raises(ApprovalForbiddenError, match="does not hold the role finance-lead"):
        approve(sqlite_ledger, "po_small", "ops:ana", "finance-lead", T0, approver_roles={"operator"}, policy=POLICY)
    with pytest.raises(PayoutValidationError, match="needs approvals by finance-lead; super-admin"):
        approve(sqlite_ledger, "po_small", "root:rita", "super-admin", T0, approver_roles=ADMIN, policy=POLICY)
    with pytest.raises(PayoutValidationError) as exc:
        approve(sqlite_ledger, "po_small", "ops:ana", "operator", T0, approver_roles={"operator"}, policy=POLICY)
    assert exc.value.errors[0].field == "role"
    with pytest.raises(PayoutNotFoundError):
        approve(sqlite_ledger, "po_nope", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    assert row_counts(sqlite_ledger) == before


def test_one_approval_per_approver(ledger):
    medium(ledger)
    both = {"finance-lead", "security-engineer"}
    first = approve(ledger, "po_medium", "fin:max", "finance-lead", T0, approver_roles=both, policy=POLICY)
    events_before = len(list_events(ledger, subject_type="payout", subject_id="po_medium"))

    repeat = approve(ledger, "po_medium", "fin:max", "finance-lead", T0 + 5, approver_roles=both, policy=POLICY)
    assert repeat.outcome == "unchanged" and repeat.approval == first.approval
    # Holding both roles does not let one person fill both seats of the quorum.
    with pytest.raises(PayoutConflictError, match="one approval per approver"):
        approve(ledger, "po_medium", "fin:max", "security-engineer", T0 + 6, approver_roles=both, policy=POLICY)
    assert len(list_events(ledger, subject_type="payout", subject_id="po_medium")) == events_before
    status = approval_status(ledger, "po_medium", T0 + 7, policy=POLICY)
    assert status.missing_roles == ("security-engineer",)


# --- settlement -----------------------------------------------------------------------------


def test_retrigger_without_quorum_is_refused_and_nothing_reaches_the_provider(ledger, client, payout_sandbox):
    medium(ledger)
    approve(ledger, "po_medium", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    before = row_counts(ledger)
    with pytest.raises(QuorumNotMetError) as exc:
        submit_or_retrigger(ledger, "po_medium", client, "ops:ana", T0 + 1, policy=POLICY)
    assert exc.value.missing_roles == ("security-engineer",)
    assert "security-engineer" in str(exc.value)
    assert row_counts(ledger) == before
    assert payout_sandbox.requests() == []


def test_expired_quorum_is_refused(sqlite_ledger, client, payout_sandbox):
    small(sqlite_ledger)
    approve(sqlite_ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    with pytest.raises(QuorumNotMetError) as exc:
        submit_or_retrigger(sqlite_ledger, "po_small", client, "ops:ana", T0 + 25 * HOUR, policy=POLICY)
    assert exc.value.missing_roles == ("finance-lead",)
    assert payout_sandbox.requests() == []


def test_with_quorum_the_payout_settles_at_the_provider(ledger, client, payout_sandbox):
    medium(ledger)
    approve(ledger, "po_medium", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    approve(ledger, "po_medium", "sec:sam", "security-engineer", T0, approver_roles=SEC, policy=POLICY)

    outcome = submit_or_retrigger(ledger, "po_medium", client, "ops:ana", T0 + HOUR, policy=POLICY)

    assert (outcome.payout_id, outcome.status, outcome.provider_status) == ("po_medium", "settled", "settled")
    assert api_requests(payout_sandbox) == [
        ("POST", "/payouts", 201), ("POST", "/payouts/po_medium/settle", 200)]
    at_provider = client.get("po_medium")
    assert (at_provider["status"], at_provider["amount_minor"], at_provider["destination"]) == (
        "settled", 5_000_000, "acct_creator_2")
    view = get_payout(ledger, "po_medium")
    assert (view.payout.status, view.payout.provider_reference) == ("settled", "po_medium")
    settle_event = view.events[-1]
    assert settle_event.id == outcome.audit_event_id
    assert (settle_event.actor, settle_event.action, settle_event.detail["status_before"],
            settle_event.detail["provider_status"]) == ("ops:ana", "payout.settle", "requested", "settled")
    assert settle_event.detail["approvals"] == [["fin:lena", "finance-lead"], ["sec:sam", "security-engineer"]]

    # Re-triggering a settled payout changes nothing and does not call the provider again.
    payout_sandbox.clear_requests()
    again = submit_or_retrigger(ledger, "po_medium", client, "ops:ana", T0 + 2 * HOUR, policy=POLICY)
    assert again.status == "settled" and again.audit_event_id > outcome.audit_event_id
    assert payout_sandbox.requests() == []
    # Approvals no longer apply to a finished payout.
    with pytest.raises(PayoutConflictError, match="already settled"):
        approve(ledger, "po_medium", "root:rita", "super-admin", T0, approver_roles=ADMIN, policy=POLICY)


def test_a_stuck_payout_stays_pending_and_a_later_retrigger_settles_it(ledger, client, payout_sandbox):
    small(ledger)
    approve(ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    payout_sandbox.mark_stuck(["po_small"])

    outcome = submit_or_retrigger(ledger, "po_small", client, "ops:ana", T0 + 1, policy=POLICY)
    assert (outcome.status, outcome.provider_status) == ("pending", "pending")
    assert api_requests(payout_sandbox)[-1] == ("POST", "/payouts/po_small/settle", 202)
    view = get_payout(ledger, "po_small")
    assert view.payout.status == "pending"
    assert (view.events[-1].action, view.events[-1].detail["provider_status"]) == ("payout.settle", "pending")

    # Still stuck: re-triggering reports pending again (the create is an idempotent repeat).
    payout_sandbox.clear_requests()
    assert submit_or_retrigger(ledger, "po_small", client, "ops:ana", T0 + 2, policy=POLICY).status == "pending"
    assert api_requests(payout_sandbox) == [("POST", "/payouts", 200), ("POST", "/payouts/po_small/settle", 202)]

    payout_sandbox.mark_stuck(["po_small"], stuck=False)
    settled = submit_or_retrigger(ledger, "po_small", client, "oncall:olga", T0 + 3, policy=POLICY)
    assert (settled.status, get_payout(ledger, "po_small").payout.status) == ("settled", "settled")


def test_transient_provider_failures_are_retried(sqlite_ledger, client, payout_sandbox):
    small(sqlite_ledger)
    approve(sqlite_ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    payout_sandbox.set_faults(server_error=1, rate_limit=1)
    outcome = submit_or_retrigger(sqlite_ledger, "po_small", client, "ops:ana", T0 + 1, policy=POLICY)
    assert outcome.status == "settled"
    assert [s for _, _, s in api_requests(payout_sandbox)] == [429, 500, 201, 200]


def test_a_provider_refusal_is_audited_and_leaves_the_status(sqlite_ledger, payout_sandbox):
    small(sqlite_ledger)
    approve(sqlite_ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    with PayoutProviderClient(payout_sandbox.url, "wrong-token", RetryPolicy(max_attempts=1)) as bad:
        with pytest.raises(ProviderError, match="PAYOUT_API_TOKEN"):
            submit_or_retrigger(sqlite_ledger, "po_small", bad, "ops:ana", T0 + 1, policy=POLICY)
    view = get_payout(sqlite_ledger, "po_small")
    assert view.payout.status == "requested"
    assert (view.events[-1].action, view.events[-1].detail["provider_http_status"]) == ("payout.settle_error", 401)


def test_a_settled_payout_is_not_moved_back_by_a_stale_answer(sqlite_ledger, client, payout_sandbox):
    # Another re-trigger recorded the settlement while ours was waiting on the provider.
    small(sqlite_ledger)
    approve(sqlite_ledger, "po_small", "fin:lena", "finance-lead", T0, approver_roles=LEAD, policy=POLICY)
    payout_sandbox.mark_stuck(["po_small"])

    class RacingClient:
        def create(self, *args):
            return client.create(*args)

        def settle(self, payout_id):
            result = client.settle(payout_id)
            with sqlite_ledger.begin() as conn:
                conn.execute(payouts.update().values(status="settled"))
            return result

    outcome = submit_or_retrigger(sqlite_ledger, "po_small", RacingClient(), "ops:ana", T0 + 1, policy=POLICY)
    assert (outcome.status, outcome.provider_status) == ("settled", "pending")
    with sqlite_ledger.connect() as conn:
        assert conn.execute(sa.select(payouts.c.status)).scalar_one() == "settled"
        assert conn.execute(sa.select(sa.func.count()).select_from(payout_approvals)).scalar_one() == 1
