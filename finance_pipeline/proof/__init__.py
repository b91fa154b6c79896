"""Signed, tamper-evident proof packages (`finance-proof/1`): Merkle tree, builder, verifier.

Pure Python: no Dagster, no cloud SDKs. Signers and publishers live elsewhere and use
`package.Draft.signed_bytes` / `package.signature_entry` and `package.Package.write_dir`.
"""

from finance_pipeline.proof.inclusion import EntryNotFound, InclusionResult, prove_entry, verify_entry
from finance_pipeline.proof.keyring import Keyring, KeyringError, KeyringKey, QuorumPolicy
from finance_pipeline.proof.merkle import inclusion_path, leaf_hash, tree_head, verify_inclusion
from finance_pipeline.proof.package import (
    Draft,
    Package,
    PackageError,
    PackageLoadError,
    StatementTooLarge,
    build_statement,
    package_json,
    prepare,
    previous_link,
    signature_entry,
    statement_bytes,
)
from finance_pipeline.proof.verify import Check, VerifyResult, verify_package

__all__ = [
    "Check", "Draft", "EntryNotFound", "InclusionResult", "Keyring", "KeyringError", "KeyringKey",
    "Package", "PackageError", "PackageLoadError", "QuorumPolicy", "StatementTooLarge", "VerifyResult",
    "build_statement", "inclusion_path", "leaf_hash", "package_json", "prepare",
    "previous_link", "prove_entry", "signature_entry", "statement_bytes", "tree_head",
    "verify_entry", "verify_inclusion", "verify_package",
]
