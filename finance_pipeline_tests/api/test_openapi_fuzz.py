"""Schemathesis against the OpenAPI document the running server serves.

Every operation gets schema-valid and schema-violating requests (derandomized, bounded, so CI
sees the same cases every run): no request may produce a 5xx, every response must have a
documented status, content type and shape, invalid input must be rejected, and the operations
that declare bearer auth must refuse requests without it.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from finance_pipeline.api import ApiSettings, create_app
from finance_pipeline.api.app import EXAMPLE_PAYOUT_ID, EXAMPLE_PROOF_ID
from finance_pipeline.api.schemas import EXAMPLE_ENTRY
from finance_pipeline.export import registry
from finance_pipeline.ledger.accounts import create_account
from finance_pipeline.payouts import PayoutProviderClient, approve, create_payout
from finance_pipeline.payouts.policy import PayoutPolicy
from finance_pipeline.providers.retry import RetryPolicy
from finance_pipeline_tests.api.helpers import bearer, serve
from finance_pipeline_tests.ledger.helpers import entry, row_counts

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection, ignored_auth]
FUZZ_ACTOR = EXAMPLE_ENTRY["posted_by"]  # so the documented example posts
FUZZ_ROLES = ["operator", "finance-lead", "security-engineer", "super-admin"]


@pytest.fixture
def fuzz_target(sqlite_api_ledger, tokens, payout_sandbox):
    """A served app with data the documented examples name: the example entry's accounts,
    a published proof, a payout whose quorum holds; the token's actor is the example's poster."""
    store, _ = tokens
    token, _ = store.add(FUZZ_ACTOR, FUZZ_ROLES)
    engine = sqlite_api_ledger
    for account_id, kind in (("stripe_clearing_usd", "asset"), ("revenue_usd", "revenue")):
        create_account(engine, account_id, account_id, kind, "USD")
    registry.register(engine, proof_id=EXAMPLE_PROOF_ID, day="2026-11-01", merkle_root="0" * 64,
                      statement_sha256="1" * 64, location="file:///proofs/2026-11-01", fmt="finance-proof/1",
                      actor="system:test")
    create_payout(engine, EXAMPLE_PAYOUT_ID, 50_000, "USD", "acct_1", "ops:oscar")
    approve(engine, EXAMPLE_PAYOUT_ID, "fin:lena", "finance-lead", approver_roles={"finance-lead"},
            policy=PayoutPolicy())
    with PayoutProviderClient(payout_sandbox.url, payout_sandbox.token,
                              RetryPolicy(max_attempts=1)) as provider:
        app = create_app(engine, tokens=store, payout_client=provider,
                         settings=ApiSettings(payout_policy=PayoutPolicy()))
        with serve(app) as url:
            seeded = httpx.post(f"{url}/finance/journal", headers=bearer(token),
                                json=entry("J-seed", posted_by=FUZZ_ACTOR))
            assert seeded.status_code == 202, seeded.text  # a person's entry: pending review
            yield url, token, engine


class _NoTokens:
    def authenticate(self, token):
        return None

    def actor_roles(self, actor):
        return frozenset()


def _document() -> dict:
    # The document depends on the code only (no database is touched building it), so the
    # operations can be collected before any server runs; the test below checks that the
    # running server serves exactly this document.
    app = create_app(sa.create_engine("sqlite://"), tokens=_NoTokens(),
                     settings=ApiSettings(payout_policy=PayoutPolicy()))
    return app.openapi()


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_document(case, fuzz_target):
    url, token, _ = fuzz_target
    case.call_and_validate(base_url=url, headers=bearer(token), checks=CHECKS)


def test_the_server_serves_the_fuzzed_document(fuzz_target):
    url, _, _ = fuzz_target
    assert httpx.get(f"{url}/openapi.json").json() == DOCUMENT


def test_the_fuzz_target_is_reachable_and_guarded(fuzz_target):
    # The fuzzing above only means something if its token works and others do not.
    url, token, engine = fuzz_target
    before = row_counts(engine)
    assert httpx.get(f"{url}/payout/{EXAMPLE_PAYOUT_ID}", headers=bearer(token)).json()["quorum"]["met"] is True
    assert httpx.get(f"{url}/payout/{EXAMPLE_PAYOUT_ID}").status_code == 401
    assert row_counts(engine) == before
