"""Inclusion proofs (`finance-inclusion/1`): one journal entry against a signed tree head.

```
{"format": "finance-inclusion/1", "proof_id": ..., "leaf_index": i, "tree_size": n,
 "leaf": "<the canonical line>", "audit_path": ["<hex>", ...]}
```
Checked against ``statement.ledger.merkle_root`` as in RFC 9162 section 2.1.3.2. A proof only
means something next to a statement whose signatures were verified; see `verify-entry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.proof.merkle import path_and_root, verify_inclusion
from finance_pipeline.proof.package import Package, loads_strict, split_lines

FORMAT = "finance-inclusion/1"
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")


class InclusionError(ValueError):
    """A proof cannot be made from this package."""


class EntryNotFound(InclusionError, LookupError):
    """The journal id is not in the package's ledger."""


def prove_entry(pkg: Package, journal_id: str) -> dict[str, Any]:
    """The inclusion proof of ``journal_id`` in ``pkg``'s ledger."""
    statement = pkg.statement()
    if pkg.ledger_entries is None:
        raise InclusionError("ledger_entries.jsonl is missing from the package")
    leaves = split_lines(pkg.ledger_entries)
    # In canonical JSON a quote inside a string is escaped, so this needle only matches the
    # member itself; the parse below confirms it.
    needle = b'"journal_id":' + canonical_bytes(journal_id)
    index = None
    for i, leaf in enumerate(leaves):
        if needle in leaf:
            try:
                obj = loads_strict(leaf)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict) and obj.get("journal_id") == journal_id:
                index = i
                break
    if index is None:
        raise EntryNotFound(f"journal_id {journal_id!r} is not in this package's ledger "
                            f"({len(leaves)} entries in {statement.get('proof_id')}); "
                            "look in the package of the UTC day the entry's ts falls in")
    path, root = path_and_root(leaves, index)
    ledger = statement.get("ledger")
    claimed = ledger.get("merkle_root") if isinstance(ledger, dict) else None
    if root.hex() != claimed:
        raise InclusionError("ledger_entries.jsonl does not match statement.ledger.merkle_root; "
                             "run `finance-pipeline verify` on the package")
    return {
        "format": FORMAT,
        "proof_id": statement["proof_id"],
        "leaf_index": index,
        "tree_size": len(leaves),
        "leaf": leaves[index].decode("utf-8"),
        "audit_path": [p.hex() for p in path],
    }


@dataclass(frozen=True)
class InclusionResult:
    ok: bool
    detail: str
    journal_id: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify_entry(proof: Any, statement: Mapping[str, Any]) -> InclusionResult:
    """Check ``proof`` against a (verified) statement's ``ledger.merkle_root``."""
    if not isinstance(proof, Mapping):
        return InclusionResult(False, "proof must be a JSON object")
    if proof.get("format") != FORMAT:
        return InclusionResult(False, f"proof format is {proof.get('format')!r}, expected {FORMAT!r}")
    if proof.get("proof_id") != statement.get("proof_id"):
        return InclusionResult(False, f"proof is for {proof.get('proof_id')!r}, the package is "
                                      f"{statement.get('proof_id')!r}")
    index, size, leaf, path = (proof.get(k) for k in ("leaf_index", "tree_size", "leaf", "audit_path"))
    if not (_int(index) and _int(size) and 0 <= index < size):
        return InclusionResult(False, "leaf_index and tree_size must be integers with 0 <= leaf_index < tree_size")
    ledger = statement.get("ledger") if isinstance(statement.get("ledger"), Mapping) else {}
    if size != ledger.get("entries"):
        return InclusionResult(False, f"tree_size {size} differs from statement.ledger.entries "
                                      f"{ledger.get('entries')!r}")
    root = ledger.get("merkle_root")
    if not isinstance(root, str) or not _HEX64.match(root):
        return InclusionResult(False, "statement.ledger.merkle_root is not 64 lowercase hex digits")
    if not isinstance(leaf, str):
        return InclusionResult(False, "leaf must be the canonical ledger line as a string")
    try:
        leaf_bytes = leaf.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800"): no canonical line holds one
        return InclusionResult(False, "leaf is not valid Unicode text (it holds a lone surrogate escape), "
                                      "so it cannot be a canonical ledger line")
    if not isinstance(path, list) or not all(isinstance(p, str) and _HEX64.match(p) for p in path):
        return InclusionResult(False, "audit_path must be a list of 64-digit lowercase hex hashes")
    try:
        journal_id = loads_strict(leaf).get("journal_id")
    except (ValueError, AttributeError):
        journal_id = None
    if not verify_inclusion(leaf_bytes, index, size, [bytes.fromhex(p) for p in path],
                            bytes.fromhex(root)):
        return InclusionResult(False, "the audit path does not lead from this leaf to "
                                      "statement.ledger.merkle_root", journal_id if isinstance(journal_id, str) else None)
    jid = journal_id if isinstance(journal_id, str) else None
    return InclusionResult(True, f"entry {jid or '?'} is leaf {index} of {size} under merkle_root {root}", jid)


__all__ = ["EntryNotFound", "FORMAT", "InclusionError", "InclusionResult", "prove_entry", "verify_entry"]
