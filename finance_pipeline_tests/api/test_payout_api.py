"""The payout endpoints: approvals by the token's actor, quorum, settlement at the payout sandbox."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from finance_pipeline.api import ApiSettings, create_app
from finance_pipeline.payouts import PayoutProviderClient, create_payout
from finance_pipeline.payouts.policy import PayoutPolicy
from finance_pipeline.providers.retry import RetryPolicy
from finance_pipeline_tests.api.helpers import Clock, bearer, serve
from finance_pipeline_tests.ledger.helpers import row_counts

T0 = 1_793_614_500_000_000  # 2026-11-02T10:15:00Z
HOUR = 3600 * 1_000_000


def fields_of(resp: httpx.Response) -> list[str]:
    return [e["field"] for e in resp.json()["errors"]]


class Api:
    """A TestClient on the app plus what the tests look at: engine, tokens, clock, sandbox."""

    def __init__(self, engine, store, tok, sandbox, *, client=True):
        self.engine, self.tok, self.sandbox = engine, tok, sandbox
        self.clock = Clock(T0)
        self.provider = PayoutProviderClient(sandbox.url, sandbox.token, RetryPolicy(max_attempts=2, sleep=lambda s: None))
        self.app = create_app(engine, tokens=store, payout_client=self.provider if client else None,
                              settings=ApiSettings(payout_policy=PayoutPolicy(), clock=self.clock))
        self.http = TestClient(self.app)

    def get(self, pid, actor="aud:alex"):
        return self.http.get(f"/payout/{pid}", headers=bearer(self.tok[actor]))

    def approve(self, pid, actor, role):
        return self.http.post(f"/payout/{pid}/approvals", content=json.dumps({"role": role}),
                              headers=bearer(self.tok[actor]))

    def settle(self, pid, actor="ops:ana", content=b""):
        return self.http.post(f"/payout/{pid}/settle", content=content, headers=bearer(self.tok[actor]))

    def close(self):
        self.http.close()
        self.provider.close()


@pytest.fixture
def api(ledger, tokens, payout_sandbox):
    api = Api(ledger, tokens[0], tokens[1], payout_sandbox)
    create_payout(ledger, "po_small", 50_000, "USD", "acct_1", "ops:oscar", now_us=T0)          # 500.00
    create_payout(ledger, "po_medium", 5_000_000, "USD", "acct_2", "ops:oscar", now_us=T0)      # 50,000.00
    create_payout(ledger, "po_by_lena", 50_000, "USD", "acct_3", "fin:lena", now_us=T0)
    yield api
    api.close()


@pytest.fixture
def sqlite_api(sqlite_api_ledger, tokens, payout_sandbox):
    api = Api(sqlite_api_ledger, tokens[0], tokens[1], payout_sandbox)
    create_payout(sqlite_api_ledger, "po_small", 50_000, "USD", "acct_1", "ops:oscar", now_us=T0)
    create_payout(sqlite_api_ledger, "po_by_lena", 50_000, "USD", "acct_3", "fin:lena", now_us=T0)
    yield api
    api.close()


def test_get_payout_shows_status_approvals_quorum_and_audit_events(sqlite_api):
    api = sqlite_api
    assert api.approve("po_small", "fin:lena", "finance-lead").status_code == 201
    resp = api.get("po_small")
    assert resp.status_code == 200
    view = resp.json()
    assert {k: view[k] for k in ("payout_id", "amount_minor", "currency", "status", "initiated_by")} == {
        "payout_id": "po_small", "amount_minor": 50_000, "currency": "USD", "status": "requested",
        "initiated_by": "ops:oscar"}
    assert view["approvals"] == [{"approver": "fin:lena", "role": "finance-lead", "approved_at": "2026-11-02T10:15:00Z",
                                  "expires_at": "2026-11-03T10:15:00Z", "valid": True}]
    assert view["quorum"] == {"met": True, "required_roles": ["finance-lead"], "missing_roles": [],
                              "as_of": "2026-11-02T10:15:00Z"}
    assert [(e["actor"], e["action"]) for e in view["audit_events"]] == [
        ("ops:oscar", "payout.create"), ("fin:lena", "payout.approve")]

    missing = api.get("po_nope")
    assert (missing.status_code, fields_of(missing)) == (404, ["payout_id"])
    assert api.http.get("/payout/po_small").status_code == 401
    assert api.http.get("/payout/bad%20id", headers=bearer(api.tok["ops:ana"])).status_code == 422


def test_approval_is_by_the_token_actor_and_a_repeat_is_200(api):
    before_events = len(api.get("po_medium").json()["audit_events"])
    first = api.approve("po_medium", "fin:lena", "finance-lead")
    assert first.status_code == 201
    assert (first.json()["outcome"], first.json()["approval"]["approver"]) == ("created", "fin:lena")
    assert first.json()["quorum"]["missing_roles"] == ["security-engineer"]
    repeat = api.approve("po_medium", "fin:lena", "finance-lead")
    assert (repeat.status_code, repeat.json()["outcome"]) == (200, "unchanged")
    second = api.approve("po_medium", "sec:sam", "security-engineer")
    assert second.status_code == 201 and second.json()["quorum"]["met"] is True
    events = api.get("po_medium").json()["audit_events"]
    assert [(e["actor"], e["action"]) for e in events[before_events:]] == [
        ("fin:lena", "payout.approve"), ("sec:sam", "payout.approve")]


@pytest.mark.parametrize(("pid", "actor", "role", "status", "field"), [
    ("po_small", "ops:ana", "finance-lead", 403, "Authorization"),       # operators do not approve
    ("po_small", "aud:alex", "finance-lead", 403, "Authorization"),      # auditors only read
    ("po_small", "sec:sam", "finance-lead", 403, "role"),                # does not hold the role
    ("po_by_lena", "fin:lena", "finance-lead", 403, "approver"),         # initiator approving
    ("po_small", "root:rita", "super-admin", 422, "role"),               # not a role this tier needs
    ("po_small", "fin:lena", "operator", 422, "role"),
    ("po_nope", "fin:lena", "finance-lead", 404, "payout_id"),
])
def test_refused_approvals_have_their_status_and_change_nothing(sqlite_api, pid, actor, role, status, field):
    api = sqlite_api
    before = row_counts(api.engine)
    resp = api.approve(pid, actor, role)
    assert resp.status_code == status, resp.text
    assert fields_of(resp) == [field]
    assert row_counts(api.engine) == before


@pytest.mark.parametrize(("content", "field"), [
    (b"", "$"), (b"not json", "$"), (b"[]", "$"), (b"{}", "role"),
    (b'{"role": "finance-lead", "approver": "fin:max"}', "approver"),   # the approver is the token's actor
    (b'{"role": 7}', "role"),
])
def test_bad_approval_bodies_are_422(sqlite_api, content, field):
    api = sqlite_api
    before = row_counts(api.engine)
    resp = api.http.post("/payout/po_small/approvals", content=content, headers=bearer(api.tok["fin:lena"]))
    assert (resp.status_code, fields_of(resp)) == (422, [field])
    assert row_counts(api.engine) == before


def test_settle_without_quorum_is_409_naming_missing_roles_and_changes_nothing(api):
    assert api.approve("po_medium", "fin:lena", "finance-lead").status_code == 201
    before = row_counts(api.engine)
    resp = api.settle("po_medium")
    assert resp.status_code == 409
    assert resp.json()["missing_roles"] == ["security-engineer"]
    assert resp.json()["required_roles"] == ["finance-lead", "security-engineer"]
    assert fields_of(resp) == ["approvals"]
    assert row_counts(api.engine) == before
    assert api.sandbox.requests() == []


def test_settle_with_quorum_settles_at_the_provider(api):
    api.approve("po_medium", "fin:lena", "finance-lead")
    api.approve("po_medium", "sec:sam", "security-engineer")
    api.clock.now_us = T0 + HOUR
    resp = api.settle("po_medium")
    assert resp.status_code == 200, resp.text
    outcome = resp.json()
    assert (outcome["status"], outcome["provider_status"]) == ("settled", "settled")
    assert [(r["method"], r["path"], r["status"]) for r in api.sandbox.requests()] == [
        ("POST", "/payouts", 201), ("POST", "/payouts/po_medium/settle", 200)]
    assert api.provider.get("po_medium")["status"] == "settled"
    view = api.get("po_medium").json()
    assert (view["status"], view["provider_reference"]) == ("settled", "po_medium")
    last = view["audit_events"][-1]
    assert (last["id"], last["actor"], last["action"]) == (outcome["audit_event_id"], "ops:ana", "payout.settle")


def test_a_stuck_payout_is_reported_pending_with_202(sqlite_api):
    api = sqlite_api
    api.approve("po_small", "fin:lena", "finance-lead")
    api.sandbox.mark_stuck(["po_small"])
    resp = api.settle("po_small", actor="fin:max")
    assert resp.status_code == 202
    assert (resp.json()["status"], resp.json()["provider_status"]) == ("pending", "pending")
    view = api.get("po_small").json()
    assert view["status"] == "pending"
    assert (view["audit_events"][-1]["actor"], view["audit_events"][-1]["detail"]["provider_status"]) == (
        "fin:max", "pending")


def test_expired_approvals_no_longer_make_the_quorum(sqlite_api):
    api = sqlite_api
    api.approve("po_small", "fin:lena", "finance-lead")
    api.clock.now_us = T0 + 24 * HOUR
    view = api.get("po_small").json()
    assert view["approvals"][0]["valid"] is False
    assert view["quorum"]["missing_roles"] == ["finance-lead"]
    resp = api.settle("po_small")
    assert (resp.status_code, resp.json()["missing_roles"]) == (409, ["finance-lead"])
    assert api.sandbox.requests() == []
    # A fresh approval by another finance lead restores it.
    assert api.approve("po_small", "fin:max", "finance-lead").status_code == 201
    assert api.settle("po_small").status_code == 200


@pytest.mark.parametrize(("actor", "content", "status", "field"), [
    ("aud:alex", b"", 403, "Authorization"),
    ("sec:sam", b"", 403, "Authorization"),
    ("ops:ana", b'{"force": true}', 422, "$"),
])
def test_refused_settle_requests_change_nothing(sqlite_api, actor, content, status, field):
    api = sqlite_api
    api.approve("po_small", "fin:lena", "finance-lead")
    before = row_counts(api.engine)
    resp = api.settle("po_small", actor=actor, content=content)
    assert (resp.status_code, fields_of(resp)) == (status, [field])
    assert row_counts(api.engine) == before
    assert api.sandbox.requests() == []


def test_settle_without_a_provider_is_503_and_a_provider_failure_502(sqlite_api_ledger, tokens, payout_sandbox):
    create_payout(sqlite_api_ledger, "po_small", 50_000, "USD", "acct_1", "ops:oscar", now_us=T0)
    no_client = Api(sqlite_api_ledger, tokens[0], tokens[1], payout_sandbox, client=False)
    no_client.approve("po_small", "fin:lena", "finance-lead")
    resp = no_client.settle("po_small")
    assert (resp.status_code, fields_of(resp)) == (503, ["provider"])
    no_client.close()

    failing = Api(sqlite_api_ledger, tokens[0], tokens[1], payout_sandbox)
    payout_sandbox.set_faults(server_error=5)
    resp = failing.settle("po_small")
    assert (resp.status_code, fields_of(resp)) == (502, ["provider"])
    assert "after 2 attempts" in resp.json()["errors"][0]["message"]
    assert failing.get("po_small").json()["audit_events"][-1]["action"] == "payout.settle_error"
    failing.close()


def test_payout_flow_over_a_real_server(sqlite_api_ledger, tokens, payout_sandbox):
    create_payout(sqlite_api_ledger, "po_real", 50_000, "USD", "acct_1", "ops:oscar")
    store, tok = tokens
    with PayoutProviderClient(payout_sandbox.url, payout_sandbox.token) as provider:
        app = create_app(sqlite_api_ledger, tokens=store, payout_client=provider,
                         settings=ApiSettings(payout_policy=PayoutPolicy()))
        with serve(app) as url, httpx.Client(base_url=url) as http:
            early = http.post("/payout/po_real/settle", headers=bearer(tok["ops:ana"]))
            assert (early.status_code, early.json()["missing_roles"]) == (409, ["finance-lead"])
            approved = http.post("/payout/po_real/approvals", json={"role": "finance-lead"},
                                 headers=bearer(tok["fin:lena"]))
            assert approved.status_code == 201
            settled = http.post("/payout/po_real/settle", json={}, headers=bearer(tok["ops:ana"]))
            assert (settled.status_code, settled.json()["status"]) == (200, "settled")
    assert payout_sandbox.requests()[-1]["path"] == "/payouts/po_real/settle"
