"""Signing health checks and the `keys` / `signing` CLI, KMS keys on a moto server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from finance_pipeline.cli.signing import COMMANDS
from finance_pipeline.proof.keyring import Keyring, QuorumPolicy
from finance_pipeline.signing.config import KeySpec, SigningConfig
from finance_pipeline.signing.health import check_signers, format_table
from finance_pipeline.signing.local_keys import init_keys

COMMAND = {c.name: c for c in COMMANDS}


def kms_config(*specs: tuple[str, str], min_signatures: int = 2) -> SigningConfig:
    return SigningConfig(keys=tuple(KeySpec(role=role, source="kms", key_id=key) for key, role in specs),
                         quorum=QuorumPolicy(min_signatures=min_signatures, distinct_roles=True))


def test_two_healthy_kms_keys(kms_client, kms_keys):
    config = kms_config((kms_keys[0]["Arn"], "finance-lead"), (kms_keys[1]["Arn"], "security-engineer"))
    report = check_signers(config, kms_client_factory=lambda: kms_client)
    assert report.healthy and report.quorum_reachable
    for key in report.keys:
        assert key.ok and key.diagnosis == ""
        assert key.checks == {"key_loaded": True, "reachable": True, "enabled": True,
                              "key_usage": True, "key_spec": True, "public_key": True,
                              "sign": True, "verify": True}
    assert "signing: healthy" in format_table(report)


def test_disabled_key_breaks_the_quorum(kms_client, kms_keys):
    kms_client.disable_key(KeyId=kms_keys[1]["KeyId"])
    config = kms_config((kms_keys[0]["Arn"], "finance-lead"), (kms_keys[1]["Arn"], "security-engineer"))
    report = check_signers(config, kms_client_factory=lambda: kms_client)
    ok, broken = report.keys
    assert ok.ok and not broken.ok
    assert "is Disabled: enable it" in broken.diagnosis
    assert broken.checks["enabled"] is False
    assert not report.quorum_reachable and not report.healthy
    assert kms_keys[1]["Arn"] in report.quorum_diagnosis
    table = format_table(report)
    assert "FAIL" in table and "UNHEALTHY" in table


def test_one_of_two_quorum_survives_a_broken_key(kms_client, kms_keys):
    encrypt_key = kms_client.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    config = kms_config((kms_keys[0]["Arn"], "finance-lead"), (encrypt_key, "security-engineer"),
                        min_signatures=1)
    report = check_signers(config, kms_client_factory=lambda: kms_client)
    assert report.quorum_reachable and not report.healthy  # the broken key is still reported
    assert "SYMMETRIC_DEFAULT/ENCRYPT_DECRYPT" in report.keys[1].diagnosis
    assert report.keys[1].checks["key_usage"] is False


def test_unknown_kms_key(kms_client):
    config = kms_config(("alias/nope", "finance-lead"), min_signatures=1)
    report = check_signers(config, kms_client_factory=lambda: kms_client)
    assert not report.healthy
    assert "does not exist" in report.keys[0].diagnosis


def test_local_default_missing_keys_then_healthy(tmp_path):
    config = SigningConfig.embedded_default(tmp_path / "keys")
    report = check_signers(config)
    assert not report.healthy
    assert all("finance-pipeline keys init" in k.diagnosis for k in report.keys)
    init_keys(tmp_path / "keys")
    report = check_signers(config)
    assert report.healthy, format_table(report)
    assert all(k.key_id.startswith("local:") for k in report.keys)


# -- CLI ------------------------------------------------------------------------------------------

def test_keys_init_cli_is_idempotent(tmp_path):
    runner = CliRunner()
    first = runner.invoke(COMMAND["keys"], ["init", "--dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert first.output.count("created") == 2
    second = runner.invoke(COMMAND["keys"], ["init", "--dir", str(tmp_path)])
    assert second.exit_code == 0 and second.output.count("kept") == 2
    assert len(Keyring.load(tmp_path / "keyring.json").keys) == 2
    bad = runner.invoke(COMMAND["keys"], ["init", "--dir", str(tmp_path), "--roles", "Bad Role"])
    assert bad.exit_code == 1 and "is not valid" in bad.output


def _aws_env(moto_server: str, **extra: str) -> dict[str, str | None]:
    # Plain environment, as in production: boto3 finds endpoint, region and credentials itself.
    return {"AWS_ENDPOINT_URL": moto_server, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "FP_SIGNING_KEYS": None, "KMS_KEY_ID": None, "FP_SIGNING_QUORUM": None, **extra}


def test_signing_health_cli_exit_status(moto_server, kms_client, kms_keys):
    keys = json.dumps([{"key_id": kms_keys[0]["Arn"], "role": "finance-lead", "source": "kms"},
                       {"key_id": kms_keys[1]["KeyId"], "role": "security-engineer", "source": "kms"}])
    runner = CliRunner()
    healthy = runner.invoke(COMMAND["signing"], ["health", "--json"],
                            env=_aws_env(moto_server, FP_SIGNING_KEYS=keys))
    assert healthy.exit_code == 0, healthy.output
    data = json.loads(healthy.output)
    assert data["healthy"] and [k["ok"] for k in data["keys"]] == [True, True]

    keyring = runner.invoke(COMMAND["signing"], ["keyring"], env=_aws_env(moto_server, FP_SIGNING_KEYS=keys))
    assert keyring.exit_code == 0, keyring.output
    assert Keyring.load(json.loads(keyring.output)).quorum.min_signatures == 2

    kms_client.disable_key(KeyId=kms_keys[0]["KeyId"])
    unhealthy = runner.invoke(COMMAND["signing"], ["health"], env=_aws_env(moto_server, FP_SIGNING_KEYS=keys))
    assert unhealthy.exit_code == 1
    assert "FAIL" in unhealthy.output and "enable it" in unhealthy.output


def test_signing_health_cli_bad_config_is_unhealthy(moto_server):
    result = CliRunner().invoke(COMMAND["signing"], ["health", "--json"],
                                env=_aws_env(moto_server, FP_SIGNING_KEYS="not json"))
    assert result.exit_code == 1
    assert "FP_SIGNING_KEYS is not valid JSON" in json.loads(result.output)["error"]
    # Any unusable variable: still the JSON verdict, naming the variable.
    other = CliRunner().invoke(COMMAND["signing"], ["health", "--json"],
                               env=_aws_env(moto_server, FP_ENTRY_FUTURE_SKEW_S="soon"))
    assert other.exit_code == 1
    assert "FP_ENTRY_FUTURE_SKEW_S" in json.loads(other.output)["error"]


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_signing_health_cli_local_default(tmp_path, flag):
    runner = CliRunner()
    env = {"FP_VAR_DIR": str(tmp_path), "FP_SIGNING_KEYS": None, "KMS_KEY_ID": None}
    missing = runner.invoke(COMMAND["signing"], ["health", *flag], env=env)
    assert missing.exit_code == 1 and "keys init" in missing.output
    assert runner.invoke(COMMAND["keys"], ["init"], env=env).exit_code == 0
    assert (tmp_path / "keys" / "finance-lead.pem").exists()
    ok = runner.invoke(COMMAND["signing"], ["health", *flag], env=env)
    assert ok.exit_code == 0, ok.output
