"""Signing health: can every configured key sign, and can the quorum be reached?

Used by `finance-pipeline signing health` and reusable from a sensor: `check_signers(config)`
never raises for a key problem, it reports it with a diagnosis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from finance_pipeline.proof.keyring import QuorumPolicy
from finance_pipeline.signing.config import (
    KeySpec,
    KmsClientFactory,
    SigningConfig,
    build_signers,
)
from finance_pipeline.signing.signers import (
    KMS_KEY_SPEC,
    KMS_KEY_USAGE,
    KmsSigner,
    SigningError,
    verify_signature,
)

# Fixed so a probe signature can never be mistaken for a statement (statements are JSON objects).
PROBE_MESSAGE = b"finance-pipeline signing health probe v1"


@dataclass
class KeyHealth:
    key_id: str
    role: str
    source: str
    ok: bool
    checks: dict[str, bool] = field(default_factory=dict)
    diagnosis: str = ""


@dataclass
class HealthReport:
    keys: list[KeyHealth]
    min_signatures: int
    distinct_roles: bool
    quorum_reachable: bool
    quorum_diagnosis: str
    config: str

    @property
    def healthy(self) -> bool:
        return self.quorum_reachable and all(k.ok for k in self.keys)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["healthy"] = self.healthy
        return data


def _check_kms(signer: KmsSigner, result: KeyHealth) -> None:
    metadata = signer.describe()
    result.checks["reachable"] = True
    state, usage = metadata.get("KeyState"), metadata.get("KeyUsage")
    spec = metadata.get("KeySpec") or metadata.get("CustomerMasterKeySpec")
    result.checks["enabled"] = state == "Enabled"
    result.checks["key_usage"] = usage == KMS_KEY_USAGE
    result.checks["key_spec"] = spec == KMS_KEY_SPEC
    if state != "Enabled":
        hint = ("enable it (`aws kms enable-key`)" if state == "Disabled"
                else "cancel deletion (`aws kms cancel-key-deletion`)" if state == "PendingDeletion"
                else "it must be Enabled to sign")
        raise SigningError(f"KMS key {signer.key_id} is {state}: {hint}")
    if usage != KMS_KEY_USAGE or spec != KMS_KEY_SPEC:
        raise SigningError(f"KMS key {signer.key_id} is {spec}/{usage}; finance-proof/1 needs "
                           f"{KMS_KEY_SPEC}/{KMS_KEY_USAGE}: create a new key with `aws kms create-key "
                           f"--key-spec {KMS_KEY_SPEC} --key-usage {KMS_KEY_USAGE}`")


def _check_one(spec: KeySpec, config: SigningConfig, factory: KmsClientFactory | None) -> KeyHealth:
    result = KeyHealth(key_id=spec.key_id or spec.label(), role=spec.role, source=spec.source, ok=False)
    try:
        # build_signers on one key: the same code path (and diagnoses) as a real export.
        single = SigningConfig(keys=(spec,), quorum=QuorumPolicy(min_signatures=1, distinct_roles=False),
                               origin=config.origin, kms_endpoint_url=config.kms_endpoint_url,
                               region=config.region)
        signer = build_signers(single, factory)[0]
        result.key_id = signer.key_id
        result.checks["key_loaded"] = True
        if isinstance(signer, KmsSigner):
            _check_kms(signer, result)
        public_pem = signer.public_key_pem()
        result.checks["public_key"] = True
        signature = signer.sign(PROBE_MESSAGE)
        result.checks["sign"] = True
        verified = verify_signature(public_pem, signature, PROBE_MESSAGE)
        result.checks["verify"] = verified
        if not verified:
            raise SigningError(f"probe signature by {signer.key_id} does not verify against its public "
                               f"key: the key must be {KMS_KEY_SPEC} signing RAW messages with "
                               "ECDSA_SHA_256; do not use it until fixed")
        result.ok = True
    except SigningError as exc:
        result.diagnosis = exc.diagnosis
        if type(exc.__cause__).__name__ in ("EndpointConnectionError", "ConnectTimeoutError"):
            result.checks["reachable"] = False
    except Exception as exc:  # a health check reports, it does not crash the sensor
        result.diagnosis = f"unexpected {type(exc).__name__}: {exc}"
    return result


def _quorum(keys: Sequence[KeyHealth], min_signatures: int, distinct_roles: bool) -> tuple[bool, str]:
    healthy = [k for k in keys if k.ok]
    count = len({k.role for k in healthy}) if distinct_roles else len(healthy)
    what = "distinct roles" if distinct_roles else "keys"
    if count >= min_signatures:
        return True, f"{count} healthy {what}, quorum needs {min_signatures}"
    broken = ", ".join(f"{k.key_id} ({k.role})" for k in keys if not k.ok) or "none"
    return False, (f"quorum unreachable: {count} healthy {what}, needs {min_signatures}; "
                   f"fix the failing key(s): {broken}")


def check_signers(config: SigningConfig,
                  kms_client_factory: KmsClientFactory | None = None) -> HealthReport:
    """Check every configured key (reachable, usage/spec, probe sign+verify) and the quorum."""
    results = [_check_one(spec, config, kms_client_factory) for spec in config.keys]
    reachable, diagnosis = _quorum(results, config.quorum.min_signatures, config.quorum.distinct_roles)
    return HealthReport(keys=results, min_signatures=config.quorum.min_signatures,
                        distinct_roles=config.quorum.distinct_roles, quorum_reachable=reachable,
                        quorum_diagnosis=diagnosis, config=config.describe())


def format_table(report: HealthReport) -> str:
    """Plain-text table: one row per key, then the quorum verdict."""
    rows = [("KEY", "ROLE", "SOURCE", "STATUS", "DIAGNOSIS")]
    for k in report.keys:
        rows.append((k.key_id, k.role, k.source, "ok" if k.ok else "FAIL", k.diagnosis or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.append("")
    lines.append(f"quorum: {'ok' if report.quorum_reachable else 'FAIL'} - {report.quorum_diagnosis}")
    lines.append(f"signing: {'healthy' if report.healthy else 'UNHEALTHY'} ({report.config})")
    return "\n".join(lines)
