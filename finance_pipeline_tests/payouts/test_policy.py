"""The approval policy: default tiers at their exact boundaries, configuration and its errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.payouts.policy import PayoutPolicy, PolicyConfigError, missing_roles

LEAD = ("finance-lead",)
LEAD_SEC = ("finance-lead", "security-engineer")
ALL3 = ("finance-lead", "security-engineer", "super-admin")


@pytest.mark.parametrize(("amount_minor", "currency", "roles"), [
    (1, "USD", LEAD),
    (999_999, "USD", LEAD),              # 9,999.99
    (1_000_000, "USD", LEAD_SEC),        # 10,000.00 is no longer "under 10,000"
    (25_000_000, "USD", LEAD_SEC),       # 250,000.00 is still "up to 250,000"
    (25_000_001, "USD", ALL3),           # 250,000.01
    (9_999, "JPY", LEAD),                # no minor unit: 9,999 yen
    (10_000, "JPY", LEAD_SEC),
    (250_000, "JPY", LEAD_SEC),
    (250_001, "JPY", ALL3),
    (9_999_999, "KWD", LEAD),            # three decimals: 9,999.999
    (10_000_000, "KWD", LEAD_SEC),
    (250_000_001, "KWD", ALL3),
])
def test_default_tiers_at_their_boundaries(amount_minor, currency, roles):
    assert PayoutPolicy().required_roles(amount_minor, currency) == roles


@settings(max_examples=200, derandomize=True)
@given(st.integers(1, 10**12), st.integers(1, 10**12), st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
def test_a_larger_amount_never_needs_fewer_approvals(a, b, currency):
    small, large = sorted((a, b))
    policy = PayoutPolicy()
    assert len(policy.required_roles(small, currency)) <= len(policy.required_roles(large, currency))


def test_tiers_and_ttl_from_json_text_and_from_a_file(tmp_path):
    doc = {"tiers": [{"up_to": "500", "roles": ["finance-lead"]},
                     {"roles": ["finance-lead", "finance-lead", "super-admin"]}],
           "approval_ttl_s": 3600}
    from_text = _configured({"FP_PAYOUT_TIERS": json.dumps(doc)})
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(doc))
    from_file = _configured({"FP_PAYOUT_TIERS": str(path)})

    for policy in (from_text, from_file):
        assert policy.approval_ttl_s == 3600
        assert policy.required_roles(50_000, "USD") == ("finance-lead",)  # 500.00 inclusive
        # A role listed twice needs two approvers holding it.
        assert policy.required_roles(50_001, "USD") == ("finance-lead", "finance-lead", "super-admin")
    assert from_text.to_dict() == doc


def test_ttl_env_overrides_and_unset_env_means_defaults():
    assert _configured({}) == PayoutPolicy()
    assert _configured({}).approval_ttl_s == 24 * 3600
    assert _configured({"FP_PAYOUT_APPROVAL_TTL_S": "60"}).approval_ttl_s == 60


@pytest.mark.parametrize(("env", "says"), [
    ({"FP_PAYOUT_TIERS": '{"tiers": [{"below": 10000.5, "roles": ["finance-lead"]}, {"roles": ["super-admin"]}]}'},
     "JSON float"),
    ({"FP_PAYOUT_TIERS": '[{"below": "100", "roles": ["finance-lead"]}]'}, "last tier must have no bound"),
    ({"FP_PAYOUT_TIERS": '[{"roles": ["finance-lead"]}, {"roles": ["super-admin"]}]'}, "only the last tier"),
    ({"FP_PAYOUT_TIERS": '[{"below": "100", "roles": ["finance-lead"]}, {"below": "50", "roles": ["finance-lead"]}, {"roles": ["super-admin"]}]'},
     "bounds must increase"),
    ({"FP_PAYOUT_TIERS": '[{"roles": ["operator"]}]'}, "'operator' is not an approval role"),
    ({"FP_PAYOUT_TIERS": '[{"roles": []}]'}, "must name at least one role"),
    ({"FP_PAYOUT_TIERS": '[{"below": "-5", "roles": ["finance-lead"]}, {"roles": ["super-admin"]}]'},
     "must be a positive amount"),
    ({"FP_PAYOUT_TIERS": '{"tiers": [{"roles": ["super-admin"]}], "ttl": 5}'}, "unknown member 'ttl'"),
    ({"FP_PAYOUT_TIERS": '{"tiers": [{"roles": ["super-admin"]}], "approval_ttl_s": 0}'},
     "approval_ttl_s must be a positive integer"),
    ({"FP_PAYOUT_TIERS": "/nonexistent/tiers.json"}, "neither JSON nor a readable file"),
])
def test_bad_configuration_is_refused_with_the_member_named(env, says):
    with pytest.raises(PolicyConfigError, match="FP_PAYOUT") as exc:
        _configured(env)
    assert says in str(exc.value)


def test_a_bad_approval_ttl_is_refused_by_the_settings():
    from finance_pipeline.settings import SettingsError

    with pytest.raises(SettingsError, match="FP_PAYOUT_APPROVAL_TTL_S: must be a positive integer"):
        _configured({"FP_PAYOUT_APPROVAL_TTL_S": "1.5"})


def _configured(env: dict[str, str]) -> PayoutPolicy:
    """The policy the variables in ``env`` configure, read as the edges read them."""
    from finance_pipeline.settings import Settings

    return PayoutPolicy.from_settings(Settings.from_environ(env))


def test_missing_roles_counts_each_required_approver():
    required = ("finance-lead", "finance-lead", "security-engineer")
    assert missing_roles(required, []) == required
    assert missing_roles(required, ["finance-lead", "super-admin"]) == ("finance-lead", "security-engineer")
    assert missing_roles(required, ["finance-lead", "finance-lead", "security-engineer"]) == ()
