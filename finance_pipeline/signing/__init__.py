"""Signing of proof statements: local key files or AWS KMS, a quorum policy, health checks."""

from __future__ import annotations

from finance_pipeline.signing.config import (
    KeySpec,
    SigningConfig,
    SigningConfigError,
    build_signers,
    keyring_from_signers,
)
from finance_pipeline.signing.health import HealthReport, KeyHealth, check_signers
from finance_pipeline.signing.signers import (
    ALGORITHM,
    KmsSigner,
    LocalSigner,
    Signer,
    SigningError,
    self_check,
    sign_statement,
)

__all__ = [
    "ALGORITHM", "HealthReport", "KeyHealth", "KeySpec", "KmsSigner", "LocalSigner", "Signer",
    "SigningConfig", "SigningConfigError", "SigningError", "build_signers", "check_signers",
    "keyring_from_signers", "self_check", "sign_statement",
]
