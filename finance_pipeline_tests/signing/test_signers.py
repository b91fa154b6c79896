"""Signers (local files and KMS over a moto server), statement signing, config resolution."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess

import pytest

from finance_pipeline_tests.fixtures import skip_unless_ci
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.proof.keyring import Keyring, QuorumPolicy
from finance_pipeline.signing.config import (
    KeySpec,
    SigningConfig,
    SigningConfigError,
    build_signers,
    keyring_from_signers,
)
from finance_pipeline.signing.local_keys import init_keys
from finance_pipeline.signing.signers import (
    ALGORITHM,
    KmsSigner,
    LocalSigner,
    SigningError,
    diagnose_kms_error,
    self_check,
    sign_statement,
)
from finance_pipeline_tests.fixtures.aws import boto3_client

STATEMENT = canonical_bytes({
    "format": "finance-proof/1", "proof_id": "p-test",
    "interval": {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"},
    "previous": None,
})


def verify_outside(public_key_pem: str, der_signature: bytes, message: bytes) -> None:
    """Independent check with `cryptography` (raises InvalidSignature when wrong)."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    assert isinstance(key.curve, ec.SECP256R1)
    key.verify(der_signature, message, ec.ECDSA(hashes.SHA256()))


def kms_pem(kms_client, key_id: str) -> str:
    der = kms_client.get_public_key(KeyId=key_id)["PublicKey"]
    return serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


# -- local keys --------------------------------------------------------------------------------

def test_keys_init_creates_private_0600_keys_and_public_keyring(tmp_path):
    keys, keyring_path = init_keys(tmp_path / "keys")
    assert [k.role for k in keys] == ["finance-lead", "security-engineer"]
    for key in keys:
        assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
        assert key.key_id.startswith(f"local:{key.role}:") and len(key.key_id.split(":")[2]) == 16
        assert key.created
    keyring = Keyring.load(keyring_path)
    assert keyring.quorum == QuorumPolicy(min_signatures=2, distinct_roles=True)
    assert {k.key_id for k in keyring.keys} == {k.key_id for k in keys}
    assert "PRIVATE" not in keyring_path.read_text()


def test_keys_init_is_idempotent_and_never_overwrites(tmp_path):
    first, _ = init_keys(tmp_path)
    before = {k.path: k.path.read_bytes() for k in first}
    second, keyring_path = init_keys(tmp_path)
    assert not any(k.created for k in second)
    assert [k.key_id for k in second] == [k.key_id for k in first]
    assert {k.path: k.path.read_bytes() for k in second} == before
    assert len(Keyring.load(keyring_path).keys) == 2


def test_local_signer_signs_raw_statement_verifiable_outside(tmp_path):
    keys, _ = init_keys(tmp_path)
    signer = LocalSigner(None, "finance-lead", keys[0].path)
    assert signer.key_id == keys[0].key_id
    verify_outside(signer.public_key_pem(), signer.sign(STATEMENT), STATEMENT)


def test_local_signer_refuses_key_readable_by_others(tmp_path):
    keys, _ = init_keys(tmp_path)
    os.chmod(keys[0].path, 0o644)
    with pytest.raises(SigningError, match=r"mode 0644.*chmod 600"):
        LocalSigner(None, "finance-lead", keys[0].path)


def test_local_signer_refuses_non_p256_key(tmp_path):
    path = tmp_path / "p384.pem"
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, pem)
    os.close(fd)
    with pytest.raises(SigningError, match="not an EC P-256 key"):
        LocalSigner(None, "finance-lead", path)


def test_local_signer_detects_key_file_swapped_under_its_key_id(tmp_path):
    keys, _ = init_keys(tmp_path)
    other = keys[1].key_id.replace("security-engineer", "finance-lead")
    with pytest.raises(SigningError, match="holds key local:finance-lead:.*not the configured"):
        LocalSigner(other, "finance-lead", keys[0].path)


def test_local_signatures_verify_with_openssl(tmp_path):
    """The spec's auditor recipe: openssl dgst -sha256 -verify pub.pem -signature sig.der S.bin."""
    if shutil.which("openssl") is None:
        skip_unless_ci("openssl not installed")
    keys, _ = init_keys(tmp_path / "keys")
    signer = LocalSigner(None, "finance-lead", keys[0].path)
    (tmp_path / "pub.pem").write_text(signer.public_key_pem())
    (tmp_path / "S.bin").write_bytes(STATEMENT)
    entry = sign_statement(STATEMENT, [signer])[0]
    (tmp_path / "sig.der").write_bytes(base64.b64decode(entry["signature"]))
    result = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature",
                             "sig.der", "S.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- KMS over the moto server ----------------------------------------------------------------------

def test_kms_signatures_verify_outside_moto_and_build_a_keyring(kms_client, kms_keys):
    signers = [KmsSigner(kms_keys[0]["Arn"], "finance-lead", kms_client),
               KmsSigner(kms_keys[1]["KeyId"], "security-engineer", kms_client)]
    entries = sign_statement(STATEMENT, signers)
    assert [e["key_id"] for e in entries] == [kms_keys[0]["Arn"], kms_keys[1]["KeyId"]]
    assert all(set(e) == {"key_id", "role", "algorithm", "signature"} for e in entries)
    assert all(e["algorithm"] == ALGORITHM == "ECDSA_P256_SHA256" for e in entries)
    for entry, meta in zip(entries, kms_keys):
        # Independent of our code: GetPublicKey DER -> PEM -> cryptography verify.
        verify_outside(kms_pem(kms_client, meta["KeyId"]), base64.b64decode(entry["signature"]),
                       STATEMENT)
    self_check(entries, STATEMENT, signers)

    keyring = keyring_from_signers(signers, QuorumPolicy(min_signatures=2, distinct_roles=True))
    reloaded = Keyring.load(json.loads(keyring.to_json()))
    assert [k.role for k in reloaded.keys] == ["finance-lead", "security-engineer"]
    for entry in entries:
        verify_outside(reloaded.get(entry["key_id"]).public_key_pem,
                       base64.b64decode(entry["signature"]), STATEMENT)


def test_mixed_local_and_kms_quorum(tmp_path, kms_client, kms_keys):
    keys, _ = init_keys(tmp_path, ["security-engineer"])
    config = SigningConfig(keys=(KeySpec(role="finance-lead", source="kms", key_id=kms_keys[0]["Arn"]),
                                 KeySpec(role="security-engineer", source="local",
                                         path=str(keys[0].path))),
                           quorum=QuorumPolicy(min_signatures=2, distinct_roles=True))
    signers = build_signers(config, kms_client_factory=lambda: kms_client)
    entries = sign_statement(STATEMENT, signers)
    self_check(entries, STATEMENT, signers)
    assert {e["role"] for e in entries} == {"finance-lead", "security-engineer"}


def test_unknown_kms_key_is_diagnosed(kms_client):
    signer = KmsSigner("11111111-2222-3333-4444-555555555555", "finance-lead", kms_client)
    with pytest.raises(SigningError, match="does not exist in this account/region"):
        sign_statement(STATEMENT, [signer])


def test_encrypt_decrypt_key_is_diagnosed(kms_client):
    key_id = kms_client.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(SigningError, match="must be a SIGN_VERIFY key of spec ECC_NIST_P256") as info:
        KmsSigner(key_id, "finance-lead", kms_client).sign(STATEMENT)
    assert info.value.key_id == key_id


def test_rsa_key_is_diagnosed_on_sign_and_public_key(kms_client):
    key_id = kms_client.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signer = KmsSigner(key_id, "finance-lead", kms_client)
    with pytest.raises(SigningError, match="ECC_NIST_P256"):
        signer.sign(STATEMENT)
    with pytest.raises(SigningError, match="is RSA_2048/SIGN_VERIFY"):
        signer.public_key_pem()


def test_failure_returns_nothing_partial(kms_client, kms_keys):
    good = KmsSigner(kms_keys[0]["KeyId"], "finance-lead", kms_client)
    bad = KmsSigner("alias/does-not-exist", "security-engineer", kms_client)
    result = None
    with pytest.raises(SigningError) as info:
        result = sign_statement(STATEMENT, [good, bad])
    assert result is None and info.value.key_id == "alias/does-not-exist"


def test_oversized_statement_refused_before_calling_kms(kms_client, kms_keys):
    calls = []
    kms_client.meta.events.register("before-call.kms.Sign", lambda **kw: calls.append(kw))
    with pytest.raises(SigningError, match="4097 bytes, over the 4096-byte limit"):
        sign_statement(b"x" * 4097, [KmsSigner(kms_keys[0]["KeyId"], "finance-lead", kms_client)])
    assert calls == []


def test_unreachable_endpoint_is_diagnosed():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3_client("kms", f"http://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(SigningError, match="KMS endpoint unreachable.*AWS_ENDPOINT_URL_KMS"):
        KmsSigner("k", "finance-lead", client).sign(STATEMENT)


@pytest.mark.parametrize(("code", "expected"), [
    ("AccessDeniedException", "the signer lacks kms:Sign on key-1: add a grant or key-policy"),
    ("DisabledException", "key-1 is disabled: enable it"),
    ("KMSInvalidStateException", "pending deletion"),
    ("InvalidKeyUsageException", "must be a SIGN_VERIFY key of spec ECC_NIST_P256"),
])
def test_error_codes_moto_cannot_produce_map_to_diagnoses(code, expected):
    # moto 5.2.5 neither enforces IAM nor refuses Sign on a disabled key, so these real-AWS
    # error shapes are checked on the mapping itself.
    error = ClientError({"Error": {"Code": code, "Message": "denied"}}, "Sign")
    assert expected in diagnose_kms_error(error, "key-1", "Sign")


def test_self_check_rejects_signature_by_a_different_key(tmp_path, kms_client, kms_keys):
    class WrongPublicKey(KmsSigner):
        def public_key_pem(self):  # what a misconfigured keyring would claim
            return kms_pem(kms_client, kms_keys[1]["KeyId"])

    signer = WrongPublicKey(kms_keys[0]["KeyId"], "finance-lead", kms_client)
    entries = sign_statement(STATEMENT, [signer])
    with pytest.raises(SigningError, match="does not verify against the key's public key"):
        self_check(entries, STATEMENT, [signer])


# -- configuration -----------------------------------------------------------------------------

def test_config_fp_signing_keys_wins_with_all_keys_quorum():
    env = {"FP_SIGNING_KEYS": json.dumps([
        {"key_id": "arn:aws:kms:eu-west-1:1:key/a", "role": "finance-lead", "source": "kms"},
        {"key_id": "arn:aws:kms:eu-west-1:1:key/b", "role": "security-engineer", "source": "kms"}]),
        "KMS_KEY_ID": "ignored", "AWS_ENDPOINT_URL": "http://global", "AWS_ENDPOINT_URL_KMS": "http://kms"}
    config = _configured(env)
    assert config.origin == "fp_signing_keys" and len(config.keys) == 2
    assert config.quorum == QuorumPolicy(min_signatures=2, distinct_roles=True)
    assert config.kms_endpoint_url == "http://kms"  # service-specific beats global, like botocore


def test_config_kms_key_id_alone_is_one_key_quorum_one():
    config = _configured({"KMS_KEY_ID": "alias/proofs", "AWS_ENDPOINT_URL": "http://x"})
    assert config.keys == (KeySpec(role="finance-lead", source="kms", key_id="alias/proofs"),)
    assert config.quorum == QuorumPolicy(min_signatures=1, distinct_roles=False)
    assert config.kms_endpoint_url == "http://x"
    config = _configured({"KMS_KEY_ID": "k", "KMS_KEY_ROLE": "controller"})
    assert config.keys[0].role == "controller"


def test_config_quorum_override_and_unreachable_quorum():
    keys = json.dumps([{"key_id": "a", "role": "r1"}, {"key_id": "b", "role": "r1"}])
    config = _configured({"FP_SIGNING_KEYS": keys,
                                     "FP_SIGNING_QUORUM": '{"min_signatures": 1}'})
    assert config.quorum == QuorumPolicy(min_signatures=1, distinct_roles=False)
    with pytest.raises(SigningConfigError, match="only 1 distinct roles are configured"):
        _configured({"FP_SIGNING_KEYS": keys,
                                "FP_SIGNING_QUORUM": '{"min_signatures": 2, "distinct_roles": true}'})


@pytest.mark.parametrize(("env", "message"), [
    ({"FP_SIGNING_KEYS": "[{"}, "FP_SIGNING_KEYS is not valid JSON"),
    ({"FP_SIGNING_KEYS": '[{"role": "r", "source": "kms"}]'}, "a kms key needs key_id"),
    ({"FP_SIGNING_KEYS": '[{"role": "r", "source": "local"}]'}, "a local key needs path"),
    ({"FP_SIGNING_KEYS": '[{"key_id": "k", "role": "r", "source": "hsm"}]'}, "use \"kms\" or \"local\""),
    ({"KMS_KEY_ID": "k", "FP_SIGNING_QUORUM": "2"}, "FP_SIGNING_QUORUM must look like"),
])
def test_config_errors_are_diagnosed(env, message):
    with pytest.raises(SigningConfigError, match=message):
        _configured(env)


def test_embedded_default_needs_keys_init(tmp_path):
    config = _configured({"FP_VAR_DIR": str(tmp_path)})
    assert config.origin == "embedded_default"
    assert [k.role for k in config.keys] == ["finance-lead", "security-engineer"]
    assert config.quorum == QuorumPolicy(min_signatures=2, distinct_roles=True)
    with pytest.raises(SigningConfigError, match="missing .*run `finance-pipeline keys init"):
        build_signers(config)
    init_keys(tmp_path / "keys")
    signers = build_signers(config)
    self_check(sign_statement(STATEMENT, signers), STATEMENT, signers)


def _configured(env: dict[str, str]) -> SigningConfig:
    """The signing configuration the variables in ``env`` configure, read as the edges read them."""
    from finance_pipeline.settings import Settings

    return SigningConfig.from_settings(Settings.from_environ(env))
