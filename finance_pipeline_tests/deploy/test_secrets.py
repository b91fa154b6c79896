"""aws-sm:// secret references against a real Secrets Manager API (moto server over HTTP)."""

from __future__ import annotations

import functools
import json
import uuid

import pytest

from finance_pipeline.secrets import SecretResolutionError, parse_reference, resolve_secret
from finance_pipeline_tests.fixtures.aws import DUMMY_CREDENTIALS, REGION, boto3_client


@pytest.fixture
def sm(moto_server, monkeypatch):
    """A Secrets Manager client. Credentials come from boto3's chain (the environment); the
    endpoint and region are handed to resolve_secret (``resolve``), as a run's resources hand
    it theirs, so none is left in the environment for boto3 to find by itself."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_CREDENTIALS["aws_secret_access_key"])
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return boto3_client("secretsmanager", moto_server)


@pytest.fixture
def resolve(sm, moto_server):
    return functools.partial(resolve_secret, endpoint_url=moto_server, region=REGION)


def _name(prefix: str) -> str:
    return f"finance/{prefix}-{uuid.uuid4().hex[:8]}"


def test_plain_values_pass_through_unchanged():
    for value in ("postgresql://u:p@h/db", "", "sk_test_sandbox", None, 3, "AWS-SM://not-a-ref"):
        assert resolve_secret(value) == value


def test_whole_string_and_json_key(sm, resolve):
    plain = _name("stripe")
    sm.create_secret(Name=plain, SecretString="sk_live_abc")
    doc = _name("ledger")
    arn = sm.create_secret(Name=doc, SecretString=json.dumps(
        {"url": "postgresql://ledger:pw@db:5432/ledger", "port": 5432}))["ARN"]
    assert resolve(f"aws-sm://{plain}") == "sk_live_abc"
    assert resolve(f"aws-sm://{doc}#url") == "postgresql://ledger:pw@db:5432/ledger"
    assert resolve(f"aws-sm://{arn}#url") == "postgresql://ledger:pw@db:5432/ledger"  # ARNs contain ':'
    assert resolve(f"aws-sm://{doc}#port") == "5432"


def test_rotation_is_picked_up_by_the_next_resolution(sm, resolve):
    name = _name("payout")
    sm.create_secret(Name=name, SecretString=json.dumps({"token": "tok-v1"}))
    ref = f"aws-sm://{name}#token"
    assert resolve(ref) == "tok-v1"
    # Rotation writes a new AWSCURRENT version; nothing is cached, nothing is redeployed.
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"token": "tok-v2"}))
    assert resolve(ref) == "tok-v2"
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"token": "tok-v3"}))
    assert resolve(ref) == "tok-v3"


def test_errors_name_the_secret_and_key_but_never_a_value(sm, resolve):
    name = _name("ledger")
    sm.create_secret(Name=name, SecretString=json.dumps({"url": "postgresql://u:hunter2@h/db"}))
    with pytest.raises(SecretResolutionError, match=r"has no key 'password' \(keys: url\)") as exc:
        resolve(f"aws-sm://{name}#password")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(SecretResolutionError, match="ResourceNotFoundException"):
        resolve(f"aws-sm://{_name('missing')}")
    plain = _name("plain")
    sm.create_secret(Name=plain, SecretString="not json")
    with pytest.raises(SecretResolutionError, match="not a JSON object"):
        resolve(f"aws-sm://{plain}#url")


def test_malformed_references():
    with pytest.raises(SecretResolutionError, match="secret id is empty"):
        parse_reference("aws-sm://")
    with pytest.raises(SecretResolutionError, match="JSON key after '#' is empty"):
        parse_reference("aws-sm://finance/x#")
    assert str(parse_reference("aws-sm://a/b#k")) == "aws-sm://a/b#k"


def test_resources_resolve_references_when_a_run_builds_them(sm, moto_server):
    from finance_pipeline.defs import resources

    aws = {"aws_endpoint_url": moto_server, "aws_region": REGION}
    name = _name("ledger")
    sm.create_secret(Name=name, SecretString=json.dumps({"url": "sqlite:///v1.sqlite3"}))
    ledger = resources.LedgerResource(database_url=f"aws-sm://{name}#url", **aws)
    assert ledger.url == "sqlite:///v1.sqlite3"
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({"url": "sqlite:///v2.sqlite3"}))
    assert resources.LedgerResource(database_url=f"aws-sm://{name}#url", **aws).url == "sqlite:///v2.sqlite3"
    assert resources.LedgerResource(database_url="sqlite:///plain.sqlite3").url == "sqlite:///plain.sqlite3"
