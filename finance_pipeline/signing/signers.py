"""Signers of the proof statement `S`: a local P-256 key file or an AWS KMS key.

Every signature is ECDSA P-256 over SHA-256 of the RAW message, DER-encoded, exactly what
`openssl dgst -sha256 -verify pub.pem -signature sig.der S.bin` checks (spec "Signed bytes").
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ALGORITHM = "ECDSA_P256_SHA256"
KMS_SIGNING_ALGORITHM = "ECDSA_SHA_256"
KMS_KEY_SPEC = "ECC_NIST_P256"
KMS_KEY_USAGE = "SIGN_VERIFY"
MAX_MESSAGE_BYTES = 4096  # KMS RAW limit; the spec caps S at this size


class SigningError(Exception):
    """A signer could not produce (or the self-check rejected) a signature; the message is the diagnosis."""

    def __init__(self, diagnosis: str, *, key_id: str | None = None, role: str | None = None):
        super().__init__(diagnosis)
        self.diagnosis = diagnosis
        self.key_id = key_id
        self.role = role


@runtime_checkable
class Signer(Protocol):
    key_id: str
    role: str

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA P-256/SHA-256 signature over the raw message."""

    def public_key_pem(self) -> str:
        """SubjectPublicKeyInfo PEM of the signing key."""


def _check_size(message: bytes, key_id: str, role: str | None = None) -> None:
    if len(message) > MAX_MESSAGE_BYTES:
        raise SigningError(
            f"statement is {len(message)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit of "
            "finance-proof/1 (KMS signs at most 4096 bytes RAW): keep extra statement members small",
            key_id=key_id, role=role)


def public_key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """First 16 hex digits of SHA-256 over the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def local_key_id(role: str, public_key: ec.EllipticCurvePublicKey) -> str:
    return f"local:{role}:{public_key_fingerprint(public_key)}"


def public_key_to_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def der_public_key_to_pem(der: bytes) -> str:
    """KMS GetPublicKey returns DER SubjectPublicKeyInfo; keyrings and openssl want PEM."""
    key = serialization.load_der_public_key(der)
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def verify_signature(public_key_pem: str, signature: bytes, message: bytes) -> bool:
    """True when `signature` (DER) is a valid ECDSA P-256/SHA-256 signature of `message`."""
    key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return False
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# -- local key files ---------------------------------------------------------------------------

def check_private_key_file(path: Path) -> None:
    """Refuse a missing key file or one readable by group/others (it must be mode 0600 or stricter)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SigningError(
            f"private key file {path} does not exist: run `finance-pipeline keys init` "
            "(or fix the path in FP_SIGNING_KEYS)") from None
    if not stat.S_ISREG(st.st_mode):
        raise SigningError(f"private key path {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SigningError(
            f"private key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, readable by group or "
            f"others: run `chmod 600 {path}` (and rotate the key if others may have read it)")


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM P-256 private key after the permission check."""
    check_private_key_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"private key file {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(
            f"private key file {path} is not an EC P-256 key; finance-proof/1 signs with ECDSA "
            "P-256 only: create one with `finance-pipeline keys init`")
    return key


class LocalSigner:
    """Signs with a P-256 private key in a PEM file (the embedded default; KMS for production)."""

    def __init__(self, key_id: str | None, role: str, private_key_pem_path: str | os.PathLike):
        self.path = Path(private_key_pem_path)
        self.role = role
        try:
            self._key = load_private_key(self.path)
        except SigningError as exc:
            exc.key_id, exc.role = key_id, role
            raise
        derived = local_key_id(role, self._key.public_key())
        if key_id is None:
            key_id = derived
        elif key_id.startswith("local:") and key_id != derived:
            # A local key id names its key's fingerprint; a mismatch means keyring and file diverged.
            raise SigningError(
                f"key file {self.path} holds key {derived}, not the configured {key_id}: the key "
                "file was replaced or the configuration is stale; update FP_SIGNING_KEYS/keyring.json",
                key_id=key_id, role=role)
        self.key_id = key_id

    def sign(self, message: bytes) -> bytes:
        _check_size(message, self.key_id, self.role)
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))

    def public_key_pem(self) -> str:
        return public_key_to_pem(self._key.public_key())

    def __repr__(self) -> str:
        return f"LocalSigner(key_id={self.key_id!r}, role={self.role!r}, path={str(self.path)!r})"


# -- AWS KMS -----------------------------------------------------------------------------------

_PERMISSION = {"Sign": "kms:Sign", "GetPublicKey": "kms:GetPublicKey", "DescribeKey": "kms:DescribeKey"}


def diagnose_kms_error(exc: BaseException, key_id: str, operation: str) -> str:
    """Turn a botocore error from a KMS call into a sentence naming what is wrong and the fix."""
    from botocore.exceptions import (  # local import: boto3 is only needed for KMS keys
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    permission = _PERMISSION.get(operation, f"kms:{operation}")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return (f"KMS endpoint unreachable for {operation} on {key_id} ({exc}): check network access "
                "to KMS and AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL / AWS_REGION")
    if isinstance(exc, ReadTimeoutError):
        return f"KMS {operation} on {key_id} timed out ({exc}): KMS is slow or throttled, retry later"
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (f"no AWS credentials for KMS {operation} on {key_id}: set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an IAM role is attached")
    if isinstance(exc, NoRegionError):
        return (f"no AWS region for KMS key {key_id}: set AWS_REGION (or use the key's full ARN, "
                "which names its region)")
    if not isinstance(exc, ClientError):
        return f"KMS {operation} on {key_id} failed: {type(exc).__name__}: {exc}"

    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", "")
    if code in ("AccessDeniedException", "AccessDenied"):
        return (f"the signer lacks {permission} on {key_id}: add a grant or key-policy statement "
                f"allowing {permission} for this principal ({message})")
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                "IncompleteSignature", "SignatureDoesNotMatch"):
        return f"AWS rejected the credentials for KMS {operation} ({code}: {message}): refresh or fix them"
    if code == "NotFoundException":
        return (f"KMS key {key_id} does not exist in this account/region ({message}): check the key "
                "id or ARN and AWS_REGION")
    if code == "DisabledException":
        return f"KMS key {key_id} is disabled: enable it (`aws kms enable-key --key-id {key_id}`)"
    if code == "KMSInvalidStateException":
        return (f"KMS key {key_id} is not usable in its current state ({message}): it may be "
                "pending deletion (cancel with `aws kms cancel-key-deletion`) or pending import")
    if code == "KeyUnavailableException":
        return f"KMS key {key_id} is temporarily unavailable ({message}): retry later"
    if code == "InvalidKeyUsageException" or (
            code == "ValidationException" and ("usage" in message or "SigningAlgorithm" in message)):
        return (f"KMS key {key_id} cannot sign with {KMS_SIGNING_ALGORITHM}: it must be a "
                f"{KMS_KEY_USAGE} key of spec {KMS_KEY_SPEC} ({code}: {message}); create one with "
                f"`aws kms create-key --key-spec {KMS_KEY_SPEC} --key-usage {KMS_KEY_USAGE}`")
    if code in ("ThrottlingException", "LimitExceededException"):
        return f"KMS throttled {operation} on {key_id} ({message}): retry later or raise the quota"
    if code == "KMSInternalException" or code.startswith("5"):
        return f"KMS internal error on {operation} for {key_id} ({message}): retry later"
    return f"KMS {operation} on {key_id} failed: {code}: {message}"


class KmsSigner:
    """Signs through AWS KMS `Sign` (RAW message, ECDSA_SHA_256); the private key never leaves KMS."""

    def __init__(self, key_id: str, role: str, client: Any):
        self.key_id = key_id
        self.role = role
        self.client = client
        self._public_key_pem: str | None = None

    def _call(self, operation: str, **kwargs: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, _snake(operation))(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise SigningError(diagnose_kms_error(exc, self.key_id, operation),
                               key_id=self.key_id, role=self.role) from exc

    def sign(self, message: bytes) -> bytes:
        _check_size(message, self.key_id, self.role)
        # RAW, not DIGEST: KMS hashes the message itself, so what we sign is exactly S.
        response = self._call("Sign", KeyId=self.key_id, Message=message, MessageType="RAW",
                              SigningAlgorithm=KMS_SIGNING_ALGORITHM)
        return response["Signature"]

    def public_key_pem(self) -> str:
        if self._public_key_pem is None:
            response = self._call("GetPublicKey", KeyId=self.key_id)
            spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
            usage = response.get("KeyUsage")
            if spec != KMS_KEY_SPEC or usage != KMS_KEY_USAGE:
                raise SigningError(
                    f"KMS key {self.key_id} is {spec}/{usage}; finance-proof/1 needs "
                    f"{KMS_KEY_SPEC}/{KMS_KEY_USAGE}: create one with `aws kms create-key --key-spec "
                    f"{KMS_KEY_SPEC} --key-usage {KMS_KEY_USAGE}`", key_id=self.key_id, role=self.role)
            self._public_key_pem = der_public_key_to_pem(response["PublicKey"])
        return self._public_key_pem

    def describe(self) -> dict:
        """DescribeKey metadata (state, usage, spec) for health checks."""
        return self._call("DescribeKey", KeyId=self.key_id)["KeyMetadata"]

    def __repr__(self) -> str:
        return f"KmsSigner(key_id={self.key_id!r}, role={self.role!r})"


def _snake(operation: str) -> str:
    return {"Sign": "sign", "GetPublicKey": "get_public_key", "DescribeKey": "describe_key"}[operation]


# -- statement signing ------------------------------------------------------------------------

def sign_statement(statement_bytes: bytes, signers: Sequence[Signer]) -> list[dict]:
    """Sign `S` with every signer, returning the spec's signature entries, or raise SigningError.

    All or nothing: the first failure raises and no partial list escapes, so a package is
    never published with fewer signatures than configured.
    """
    if not signers:
        raise SigningError("no signers configured: set FP_SIGNING_KEYS or KMS_KEY_ID, or run "
                           "`finance-pipeline keys init` for the local default")
    seen: set[str] = set()
    entries = []
    for signer in signers:
        if signer.key_id in seen:
            raise SigningError(f"key {signer.key_id} is configured twice; a quorum needs distinct keys",
                               key_id=signer.key_id, role=signer.role)
        seen.add(signer.key_id)
        _check_size(statement_bytes, signer.key_id, signer.role)
        try:
            der = signer.sign(statement_bytes)
        except SigningError:
            raise
        except Exception as exc:  # a custom Signer: keep the diagnosis contract
            raise SigningError(f"signer {signer.key_id} ({signer.role}) failed: "
                               f"{type(exc).__name__}: {exc}", key_id=signer.key_id,
                               role=signer.role) from exc
        entries.append({"key_id": signer.key_id, "role": signer.role, "algorithm": ALGORITHM,
                        "signature": base64.b64encode(der).decode("ascii")})
    return entries


def self_check(signatures: Iterable[dict], statement_bytes: bytes, signers: Sequence[Signer]) -> None:
    """Verify each signature against its signer's public key before anything is published.

    Catches a KMS key that signs with something other than what the keyring will say (wrong
    key, wrong algorithm, a DIGEST/RAW mix-up) while the package can still be fixed.
    """
    by_id = {signer.key_id: signer for signer in signers}
    checked = set()
    for entry in signatures:
        signer = by_id.get(entry.get("key_id"))
        if signer is None:
            raise SigningError(f"signature by {entry.get('key_id')!r} has no configured signer")
        if entry.get("algorithm") != ALGORITHM or entry.get("role") != signer.role:
            raise SigningError(f"signature entry for {signer.key_id} has algorithm "
                               f"{entry.get('algorithm')!r} / role {entry.get('role')!r}, expected "
                               f"{ALGORITHM!r} / {signer.role!r}", key_id=signer.key_id, role=signer.role)
        try:
            der = base64.b64decode(entry["signature"], validate=True)
        except (KeyError, ValueError):
            raise SigningError(f"signature by {signer.key_id} is not valid base64",
                               key_id=signer.key_id, role=signer.role) from None
        if not verify_signature(signer.public_key_pem(), der, statement_bytes):
            raise SigningError(
                f"signature by {signer.key_id} ({signer.role}) does not verify against the key's "
                "public key: the key signs with a different key or algorithm than expected (for KMS "
                f"it must be {KMS_KEY_SPEC}, signing RAW with {KMS_SIGNING_ALGORITHM}); do not publish",
                key_id=signer.key_id, role=signer.role)
        checked.add(signer.key_id)
    missing = set(by_id) - checked
    if missing:
        raise SigningError(f"no signature from configured key(s) {sorted(missing)}")
