"""Sealing a freshly built bundle: signed, then verified as an auditor would before anything
is published; the Merkle tree the bundle built over its ledger file is not built twice."""

from __future__ import annotations

import dataclasses

import pytest

from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.export.prove import prove_day
from finance_pipeline.export.exporter import ExportError, seal
from finance_pipeline.proof import package as pkg
from finance_pipeline.proof import verify
from finance_pipeline.proof.package import CONTEXT_FILE, LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline.signing.config import SigningConfig, build_signers, keyring_from_signers
from finance_pipeline.signing.local_keys import init_keys
from finance_pipeline_tests.perf.test_leaves_and_bundle import DAY, scenario_inputs


@pytest.fixture(scope="module")
def signing(tmp_path_factory):
    keys_dir = tmp_path_factory.mktemp("keys")
    init_keys(keys_dir)
    cfg = SigningConfig.embedded_default(keys_dir)
    return build_signers(cfg), cfg.quorum


@pytest.fixture
def bundle():
    lines, stripe, payouts = scenario_inputs(7, True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    return prove_day(DAY, lines, stripe, payouts, report, tol, None)


def _count_hashing(monkeypatch) -> dict[str, list[bytes]]:
    seen: dict[str, list[bytes]] = {"sha256": [], "tree_head": []}
    sha, tree = verify.sha256_hex, verify.tree_head_of_lines
    monkeypatch.setattr(verify, "sha256_hex", lambda data: seen["sha256"].append(data) or sha(data))
    monkeypatch.setattr(verify, "tree_head_of_lines", lambda data: seen["tree_head"].append(data) or tree(data))
    return seen


def test_a_fresh_bundle_is_verified_without_building_its_tree_again(bundle, signing, monkeypatch):
    seen = _count_hashing(monkeypatch)
    files = seal(bundle, *signing)
    assert seen["tree_head"] == []
    # File hashes are always computed (the statement's are not trusted, even from this bundle).
    assert sorted(map(len, seen["sha256"])) == sorted(
        len(files[name]) for name in (LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE, CONTEXT_FILE))
    # Every check still runs and passes, as the auditor's verifier (no shortcuts) finds too.
    result = verify.verify_package(pkg.Package.from_files(files), keyring_from_signers(*signing))
    assert result.ok and [c.name for c in result.checks] == list(verify.CHECKS)


@pytest.mark.parametrize("member", ["file_sha256", "merkle_root"])
def test_a_statement_changed_after_the_bundle_was_built_is_not_sealed(bundle, signing, member):
    """The remembered digests are compared with the statement, so a changed statement fails
    the self-check exactly as it fails an auditor's verification."""
    statement = bundle.statement
    statement["ledger"][member] = "0" * 64
    statement["proof_id"] = pkg.compute_proof_id(statement)
    changed = dataclasses.replace(bundle, statement_bytes=pkg.statement_bytes(statement))
    with pytest.raises(ExportError, match=f"ledger.{member}"):
        seal(changed, *signing)


def test_other_bytes_than_the_ones_hashed_get_their_tree_built(bundle, signing, monkeypatch):
    """A ledger file replaced after the build (even by equal bytes) is not covered by the tree
    head the bundle computed: only the very same object is."""
    changed = bundle.files[LEDGER_FILE].replace(b'"memo":"', b'"memo":"x', 1)
    with pytest.raises(ExportError, match="ledger.file_sha256"):
        seal(dataclasses.replace(bundle, files={**bundle.files, LEDGER_FILE: changed}), *signing)
    equal = bytes(bytearray(bundle.files[LEDGER_FILE]))
    assert equal is not bundle.files[LEDGER_FILE]
    seen = _count_hashing(monkeypatch)
    seal(dataclasses.replace(bundle, files={**bundle.files, LEDGER_FILE: equal}), *signing)
    assert seen["tree_head"] == [equal]
