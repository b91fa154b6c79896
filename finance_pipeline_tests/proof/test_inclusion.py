"""Inclusion proofs: build, check, tamper, and the prove-entry / verify-entry commands."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from finance_pipeline.cli.proofs import COMMANDS
from finance_pipeline.proof.inclusion import EntryNotFound, prove_entry, verify_entry
from finance_pipeline.proof.merkle import tree_head
from finance_pipeline_tests.proof.helpers import DAY, build, entry, keyring


def _entries(n: int):
    return [entry(f"j-{i:03d}", f"{DAY}T{i // 60:02d}:{i % 60:02d}:00Z", 100 + i) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 37])
def test_every_entry_proves_and_verifies(n):
    pkg = build(entries=_entries(n))
    st = pkg.statement()
    for i in range(n):
        proof = prove_entry(pkg, f"j-{i:03d}")
        assert list(proof) == ["format", "proof_id", "leaf_index", "tree_size", "leaf", "audit_path"]
        assert proof["format"] == "finance-inclusion/1"
        assert proof["proof_id"] == st["proof_id"]
        assert proof["leaf_index"] == i and proof["tree_size"] == n
        assert proof["leaf"].encode() == pkg.ledger_entries.split(b"\n")[i]
        assert all(len(h) == 64 and h == h.lower() for h in proof["audit_path"])
        result = verify_entry(json.loads(json.dumps(proof)), st)
        assert result.ok and result.journal_id == f"j-{i:03d}", result.detail


def test_tampered_proofs_fail():
    pkg = build(entries=_entries(9))
    st = pkg.statement()
    proof = prove_entry(pkg, "j-004")
    other = prove_entry(pkg, "j-005")
    bad_hash = ("0" if proof["audit_path"][0][0] != "0" else "1") + proof["audit_path"][0][1:]
    for change in (
        {"leaf": proof["leaf"].replace('"amount_minor":104', '"amount_minor":105')},
        {"leaf": other["leaf"]},
        {"leaf_index": 5},
        {"tree_size": 10},
        {"audit_path": proof["audit_path"][:-1]},
        {"audit_path": [bad_hash] + proof["audit_path"][1:]},
        {"audit_path": [h.upper() for h in proof["audit_path"]]},
        {"proof_id": "fp1-20261102-000000000000000000000000"},
        {"format": "finance-inclusion/2"},
        {"leaf_index": True},
    ):
        result = verify_entry(proof | change, st)
        assert not result.ok, change
        assert result.detail
    assert not verify_entry("nope", st)
    wrong_root = st | {"ledger": st["ledger"] | {"merkle_root": tree_head([b"x"]).hex()}}
    assert not verify_entry(proof, wrong_root)


def test_unknown_entry_and_tampered_ledger():
    pkg = build()
    with pytest.raises(EntryNotFound, match="j-999"):
        prove_entry(pkg, "j-999")
    # a memo mentioning another id does not fool the search
    pkg = build(entries=[entry("a", f"{DAY}T01:00:00Z", memo='"journal_id":"b"'),
                         entry("b", f"{DAY}T02:00:00Z")])
    assert prove_entry(pkg, "b")["leaf_index"] == 1
    from dataclasses import replace

    broken = replace(pkg, ledger_entries=pkg.ledger_entries.replace(b'"amount_minor":1250', b'"amount_minor":1251'))
    with pytest.raises(ValueError, match="merkle_root"):
        prove_entry(broken, "b")


# --- CLI -------------------------------------------------------------------------------------

def _run(*args):
    group = click.Group(commands={c.name: c for c in COMMANDS})
    return CliRunner().invoke(group, list(args))


@pytest.fixture()
def folder(tmp_path):
    build(entries=_entries(7)).write_dir(tmp_path / "p")
    (tmp_path / "keyring.json").write_text(keyring().to_json())
    return tmp_path


def test_cli_prove_then_verify_entry(folder):
    res = _run("prove-entry", "--package", str(folder / "p"), "--journal-id", "j-003")
    assert res.exit_code == 0, res.output
    proof = json.loads(res.output)
    assert proof["leaf_index"] == 3
    (folder / "proof.json").write_text(res.output)
    res = _run("verify-entry", "--package", str(folder / "p"), "--proof", str(folder / "proof.json"),
               "--keyring", str(folder / "keyring.json"))
    assert res.exit_code == 0, res.output
    assert "entry j-003 is leaf 3 of 7" in res.output
    res = _run("verify-entry", "--package", str(folder / "p"), "--proof", str(folder / "proof.json"),
               "--keyring", str(folder / "keyring.json"), "--json")
    assert res.exit_code == 0 and json.loads(res.output)["inclusion"]["journal_id"] == "j-003"


def test_cli_verify_entry_failures(folder):
    proof = json.loads(_run("prove-entry", "--package", str(folder / "p"), "--journal-id", "j-003").output)
    base = ["verify-entry", "--package", str(folder / "p"), "--proof", str(folder / "proof.json"),
            "--keyring", str(folder / "keyring.json")]
    # a proof that does not lead to the signed root
    (folder / "proof.json").write_text(json.dumps(proof | {"leaf_index": 2}))
    res = _run(*base)
    assert res.exit_code == 1 and "FAIL" in res.output
    # unreadable proof
    (folder / "proof.json").write_text("{")
    assert _run(*base).exit_code == 2
    (folder / "proof.json").unlink()
    assert _run(*base).exit_code == 2
    # an invalid package: the proof is not even looked at
    (folder / "proof.json").write_text(json.dumps(proof))
    ledger = folder / "p" / "ledger_entries.jsonl"
    ledger.write_bytes(ledger.read_bytes().replace(b'"memo":"sale"', b'"memo":"sold"', 1))
    res = _run(*base)
    assert res.exit_code == 1 and "ledger.file_sha256" in res.output and "not checked" in res.output


def test_cli_prove_entry_failures(folder):
    res = _run("prove-entry", "--package", str(folder / "p"), "--journal-id", "nope")
    assert res.exit_code == 1 and "not found" in res.output
    assert _run("prove-entry", "--package", str(folder / "missing"), "--journal-id", "j-001").exit_code == 2
    assert _run("prove-entry", "--package", str(folder / "p")).exit_code == 2
