"""Which keys sign, and how many signatures a package needs.

Resolution (first match wins):

1. `FP_SIGNING_KEYS`: a JSON list of `{"key_id", "role", "source": "kms"|"local", "path"?}`.
   Quorum: `FP_SIGNING_QUORUM` if set, else every listed key, distinct roles when the roles differ.
2. `KMS_KEY_ID`: one KMS key, role `KMS_KEY_ROLE` (default finance-lead), quorum 1 unless
   `FP_SIGNING_QUORUM` says otherwise.
3. Embedded default: the local keys `$FP_VAR_DIR/keys/finance-lead.pem` and
   `$FP_VAR_DIR/keys/security-engineer.pem` (`finance-pipeline keys init`), 2 of 2 distinct roles.

`FP_SIGNING_QUORUM` is JSON such as `{"min_signatures": 2, "distinct_roles": true}`.
The KMS client honours `AWS_ENDPOINT_URL_KMS`, then `AWS_ENDPOINT_URL` (same order as
botocore) and `AWS_REGION` / `AWS_DEFAULT_REGION`. The variables are read by
`finance_pipeline.settings`; `SigningConfig.resolve` takes their values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from finance_pipeline.proof.keyring import Keyring, KeyringKey, QuorumPolicy
from finance_pipeline.signing.local_keys import DEFAULT_ROLES, key_path
from finance_pipeline.signing.signers import KmsSigner, LocalSigner, Signer, SigningError

if TYPE_CHECKING:
    from finance_pipeline.settings import Settings

SOURCES = ("kms", "local")
DEFAULT_KMS_ROLE = "finance-lead"


class SigningConfigError(SigningError):
    """The signing configuration is invalid or incomplete."""


@dataclass(frozen=True)
class KeySpec:
    """One configured key. A local key may omit key_id: it is derived from the key file."""

    role: str
    source: str
    key_id: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SigningConfigError(f"key source {self.source!r} is not one of {SOURCES}")
        if self.source == "kms" and not self.key_id:
            raise SigningConfigError(f"KMS key for role {self.role} needs a key_id (id, ARN or alias)")
        if self.source == "local" and not self.path:
            raise SigningConfigError(f"local key for role {self.role} needs a path")

    def label(self) -> str:
        return self.key_id or (f"local:{self.role} ({self.path})" if self.path else self.role)


@dataclass(frozen=True)
class SigningConfig:
    keys: tuple[KeySpec, ...]
    quorum: QuorumPolicy
    origin: str = "explicit"  # fp_signing_keys | kms_key_id | embedded_default | explicit
    kms_endpoint_url: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if not self.keys:
            raise SigningConfigError("no signing keys configured: set FP_SIGNING_KEYS or KMS_KEY_ID, "
                                     "or run `finance-pipeline keys init` for the local default")
        _check_quorum_reachable(self.keys, self.quorum)

    @classmethod
    def resolve(cls, *, keys_json: str = "", kms_key_id: str = "", kms_key_role: str = "",
                quorum_json: str = "", kms_endpoint_url: str | None = None, region: str | None = None,
                keys_dir: Path | str) -> "SigningConfig":
        """The configuration the module docstring describes, from its values: ``keys_json``
        (FP_SIGNING_KEYS), ``kms_key_id``/``kms_key_role`` (KMS_KEY_ID/KMS_KEY_ROLE),
        ``quorum_json`` (FP_SIGNING_QUORUM), else the local keys in ``keys_dir``."""
        common = {"kms_endpoint_url": kms_endpoint_url or None, "region": region or None}
        if keys_json:
            keys = _parse_keys(keys_json)
            quorum = _parse_quorum(quorum_json) if quorum_json else _all_keys_quorum(keys)
            return cls(keys=keys, quorum=quorum, origin="fp_signing_keys", **common)
        if kms_key_id:
            keys = (KeySpec(role=kms_key_role or DEFAULT_KMS_ROLE, source="kms", key_id=kms_key_id),)
            quorum = (_parse_quorum(quorum_json) if quorum_json
                      else QuorumPolicy(min_signatures=1, distinct_roles=False))
            return cls(keys=keys, quorum=quorum, origin="kms_key_id", **common)
        return cls.embedded_default(keys_dir, **common)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "SigningConfig":
        """``resolve`` on the configured values; the KMS endpoint and region fall back like
        botocore's (``AWS_ENDPOINT_URL_KMS`` then ``AWS_ENDPOINT_URL``; ``AWS_REGION`` then
        ``AWS_DEFAULT_REGION``)."""
        return cls.resolve(
            keys_json=settings.signing_keys_json, kms_key_id=settings.kms_key_id,
            kms_key_role=settings.kms_key_role, quorum_json=settings.signing_quorum_json,
            kms_endpoint_url=settings.aws_endpoint_url_kms or settings.aws_endpoint_url,
            region=settings.aws_region or settings.aws_default_region, keys_dir=settings.keys_dir)

    @classmethod
    def embedded_default(cls, keys_dir: Path | str, **kwargs: Any) -> "SigningConfig":
        keys_dir = Path(keys_dir)
        keys = tuple(KeySpec(role=role, source="local", path=str(key_path(keys_dir, role)))
                     for role in DEFAULT_ROLES)
        return cls(keys=keys, quorum=QuorumPolicy(min_signatures=len(keys), distinct_roles=True),
                   origin="embedded_default", **kwargs)

    def describe(self) -> str:
        return (f"{len(self.keys)} key(s) from {self.origin}, quorum {self.quorum.min_signatures}"
                f"{' distinct roles' if self.quorum.distinct_roles else ''}")


def _all_keys_quorum(keys: Sequence[KeySpec]) -> QuorumPolicy:
    roles = [k.role for k in keys]
    return QuorumPolicy(min_signatures=len(keys), distinct_roles=len(set(roles)) == len(roles))


def _check_quorum_reachable(keys: Sequence[KeySpec], quorum: QuorumPolicy) -> None:
    if quorum.min_signatures < 1:
        raise SigningConfigError("quorum min_signatures must be at least 1")
    reachable = len({k.role for k in keys}) if quorum.distinct_roles else len(keys)
    if reachable < quorum.min_signatures:
        what = "distinct roles" if quorum.distinct_roles else "keys"
        raise SigningConfigError(
            f"quorum needs {quorum.min_signatures} signatures"
            f"{' by distinct roles' if quorum.distinct_roles else ''} but only {reachable} {what} "
            "are configured: add keys to FP_SIGNING_KEYS or lower FP_SIGNING_QUORUM")


def _parse_keys(raw: str) -> tuple[KeySpec, ...]:
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SigningConfigError(f"FP_SIGNING_KEYS is not valid JSON ({exc}): expected a list like "
                                 '[{"key_id": "arn:aws:kms:...", "role": "finance-lead", "source": "kms"}]'
                                 ) from None
    if not isinstance(items, list) or not items:
        raise SigningConfigError("FP_SIGNING_KEYS must be a non-empty JSON list of key objects")
    keys = []
    for index, item in enumerate(items):
        where = f"FP_SIGNING_KEYS[{index}]"
        if not isinstance(item, dict):
            raise SigningConfigError(f"{where} must be an object with key_id, role, source")
        unknown = set(item) - {"key_id", "role", "source", "path"}
        if unknown:
            raise SigningConfigError(f"{where} has unknown member(s) {sorted(unknown)}; allowed: "
                                     "key_id, role, source, path")
        role, source = item.get("role"), item.get("source", "kms")
        if not isinstance(role, str) or not role:
            raise SigningConfigError(f"{where} needs a non-empty string role")
        if source not in SOURCES:
            raise SigningConfigError(f"{where}.source is {source!r}; use \"kms\" or \"local\"")
        key_id, path = item.get("key_id"), item.get("path")
        if source == "kms" and not (isinstance(key_id, str) and key_id):
            raise SigningConfigError(f"{where}: a kms key needs key_id (key id, ARN or alias)")
        if source == "local" and not (isinstance(path, str) and path):
            raise SigningConfigError(f"{where}: a local key needs path (the private key PEM file)")
        keys.append(KeySpec(role=role, source=source, key_id=key_id, path=path))
    ids = [k.key_id for k in keys if k.key_id]
    if len(ids) != len(set(ids)):
        raise SigningConfigError("FP_SIGNING_KEYS lists the same key_id twice")
    return tuple(keys)


def _parse_quorum(raw: str) -> QuorumPolicy:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SigningConfigError(f"FP_SIGNING_QUORUM is not valid JSON ({exc}): expected "
                                 '{"min_signatures": 2, "distinct_roles": true}') from None
    if not isinstance(data, dict) or not isinstance(data.get("min_signatures"), int) \
            or isinstance(data.get("min_signatures"), bool) \
            or not isinstance(data.get("distinct_roles", False), bool) \
            or set(data) - {"min_signatures", "distinct_roles"}:
        raise SigningConfigError('FP_SIGNING_QUORUM must look like {"min_signatures": 2, '
                                 '"distinct_roles": true}')
    return QuorumPolicy(min_signatures=data["min_signatures"],
                        distinct_roles=data.get("distinct_roles", False))


def _region_from_arn(key_id: str) -> str | None:
    # arn:aws:kms:<region>:<account>:key/<id> names its region; use it when none is configured.
    parts = key_id.split(":")
    return parts[3] if key_id.startswith("arn:") and len(parts) > 4 and parts[3] else None


def default_kms_client(config: SigningConfig, key_id: str | None = None) -> Any:
    """A boto3 KMS client with bounded retries/timeouts, so an outage fails fast with a diagnosis."""
    import boto3
    from botocore.config import Config

    region = config.region or (_region_from_arn(key_id) if key_id else None)
    return boto3.client(
        "kms", endpoint_url=config.kms_endpoint_url, region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                      read_timeout=15),
    )


KmsClientFactory = Callable[[], Any]


def build_signers(config: SigningConfig,
                  kms_client_factory: KmsClientFactory | None = None) -> list[Signer]:
    """One Signer per configured key; a missing/unsafe local key raises SigningConfigError/SigningError."""
    signers: list[Signer] = []
    clients: dict[str | None, Any] = {}
    for spec in config.keys:
        if spec.source == "kms":
            region = None if kms_client_factory else (config.region or _region_from_arn(spec.key_id))
            if region not in clients:
                clients[region] = (kms_client_factory() if kms_client_factory
                                   else default_kms_client(config, spec.key_id))
            signers.append(KmsSigner(spec.key_id, spec.role, clients[region]))
        else:
            path = Path(spec.path)
            if not path.exists():
                hint = (f"run `finance-pipeline keys init --dir {path.parent}`"
                        if config.origin == "embedded_default"
                        else "run `finance-pipeline keys init` or fix the path in FP_SIGNING_KEYS")
                raise SigningConfigError(
                    f"local signing key for role {spec.role} is missing ({path}): {hint}",
                    key_id=spec.key_id, role=spec.role)
            signers.append(LocalSigner(spec.key_id, spec.role, path))
    return signers


def keyring_from_signers(signers: Sequence[Signer], quorum: QuorumPolicy) -> Keyring:
    """The public keyring an auditor needs for these signers (KMS public keys via GetPublicKey)."""
    return Keyring(
        keys=[KeyringKey(key_id=s.key_id, role=s.role, public_key_pem=s.public_key_pem())
              for s in signers],
        quorum=quorum,
    )
