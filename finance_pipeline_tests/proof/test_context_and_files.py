"""`reconciliation_context.json` is checked wherever it is used (verify, replay), and a package
holds the format's files and nothing else (proof-package.md, "A package is valid when")."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.export.prove import prove_day
from finance_pipeline.export.replay import ReplayError, UnsignedInputError, replay_files
from finance_pipeline.proof.package import CONTEXT_FILE, Package, package_json, statement_bytes
from finance_pipeline.proof.verify import verify_package
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline_tests.perf.test_leaves_and_bundle import DAY, scenario_inputs
from finance_pipeline_tests.proof.helpers import keyring, signers


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    lines, stripe, payouts = scenario_inputs(7, True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    bundle = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    s = statement_bytes(bundle.statement)
    out = dict(bundle.files)
    out["proof_package.json"] = package_json(bundle.statement, [w.sign(s) for w in signers()[:2]])
    return out


def _verify(files: dict[str, bytes]):
    return verify_package(Package.from_files(files), keyring())


def _widened(context: bytes) -> bytes:
    doc = json.loads(context)
    doc["tolerances"]["time_s"] = 86400
    return canonical_bytes(doc)


def test_the_published_package_verifies_and_replays_identically(files):
    result = _verify(files)
    assert result.ok, result.text()
    assert result.check("reconciliation.context_sha256").ok and result.check("package.files").ok
    assert replay_files(files).identical


@pytest.mark.parametrize("change", ["flip-first", "flip-middle", "flip-last", "widened", "garbage", "empty"])
def test_any_change_to_the_context_is_invalid_and_is_not_replayed(files, change):
    context = files[CONTEXT_FILE]
    if change.startswith("flip"):
        at = {"flip-first": 0, "flip-middle": len(context) // 2, "flip-last": len(context) - 1}[change]
        changed = context[:at] + bytes([context[at] ^ 0x01]) + context[at + 1:]
    else:
        changed = {"widened": _widened(context), "garbage": b"\x00\xffnot json", "empty": b""}[change]
    tampered = {**files, CONTEXT_FILE: changed}
    result = _verify(tampered)
    assert not result.ok and result.failed == ["reconciliation.context_sha256"], result.text()
    with pytest.raises(UnsignedInputError, match=f"{CONTEXT_FILE} hashes to .* but the statement signs"):
        replay_files(tampered)


def test_a_missing_context_or_one_the_statement_does_not_sign_is_invalid(files):
    missing = {k: v for k, v in files.items() if k != CONTEXT_FILE}
    result = _verify(missing)
    assert result.failed == ["reconciliation.context_sha256"]
    assert "reconciliation_context.json is missing" in result.check("reconciliation.context_sha256").detail
    with pytest.raises(ReplayError, match="lacks reconciliation_context.json"):
        replay_files(missing)


@pytest.mark.parametrize("name", ["ledger_entries.jsonl", "provider_records.jsonl", "reconciliation_report.json"])
def test_replay_refuses_data_files_the_statement_does_not_sign(files, name):
    data = files[name]
    with pytest.raises(UnsignedInputError, match=f"{name} hashes to"):
        replay_files({**files, name: data + b"\n" if not data.endswith(b"\n\n") else data[:-1]})


def test_extra_files_a_symlink_or_a_subfolder_make_the_folder_invalid(files, tmp_path):
    from finance_pipeline.cli.proofs import COMMANDS

    (tmp_path / "keyring.json").write_text(keyring().to_json())
    group = __import__("click").Group(commands={c.name: c for c in COMMANDS})

    def verify_folder(name: str, extra) -> tuple[int, dict]:
        folder = tmp_path / name
        Package.from_files(files).write_dir(folder)
        extra(folder)
        res = CliRunner().invoke(group, ["verify", str(folder), "--keyring", str(tmp_path / "keyring.json"),
                                         "--json"])
        return res.exit_code, json.loads(res.output)

    code, verdict = verify_folder("clean", lambda f: None)
    assert code == 0 and verdict["ok"], verdict
    for name, extra in [
        ("notice", lambda f: (f / "NOTICE.txt").write_text("unsigned")),
        ("hidden", lambda f: (f / ".notes").write_text("unsigned")),
        ("symlink", lambda f: os.symlink("/etc/hostname", f / "hostname")),
        ("subfolder", lambda f: (f / "more").mkdir()),
    ]:
        code, verdict = verify_folder(name, extra)
        assert code == 1 and verdict["failed"] == ["package.files"], (name, verdict)
