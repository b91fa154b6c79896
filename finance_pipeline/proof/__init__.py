"""Signed, tamper-evident proof packages (`finance-proof/1`): Merkle tree, builder, verifier.

Pure Python: no Dagster, no cloud SDKs. The pipeline builds a day's package in
export/prove.py; signers sign ``package.statement_bytes`` and publishers write ``Package`` files.
"""

from finance_pipeline.proof.inclusion import EntryNotFound, InclusionResult, prove_entry, verify_entry
from finance_pipeline.proof.keyring import Keyring, KeyringError, KeyringKey, QuorumPolicy
from finance_pipeline.proof.merkle import inclusion_path, leaf_hash, tree_head, verify_inclusion
from finance_pipeline.proof.package import (
    Package,
    PackageError,
    PackageLoadError,
    StatementTooLarge,
    build_statement,
    package_json,
    previous_link,
    signature_entry,
    statement_bytes,
)
from finance_pipeline.proof.verify import Check, VerifyResult, verify_package

__all__ = [
    "Check", "EntryNotFound", "InclusionResult", "Keyring", "KeyringError", "KeyringKey",
    "Package", "PackageError", "PackageLoadError", "QuorumPolicy", "StatementTooLarge", "VerifyResult",
    "build_statement", "inclusion_path", "leaf_hash", "package_json",
    "previous_link", "prove_entry", "signature_entry", "statement_bytes", "tree_head",
    "verify_entry", "verify_inclusion", "verify_package",
]
