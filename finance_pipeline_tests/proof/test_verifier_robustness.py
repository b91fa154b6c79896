"""The verifier ends every input as a named verdict: exit 0, 1 or 2 and, with --json, a JSON
verdict; never a traceback (and never a crash of the columnar parser on deep nesting)."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.cli.proofs import COMMANDS
from finance_pipeline.proof.package import PROOF_FILE, Package
from finance_pipeline.proof.verify import CHECKS, verify_package
from finance_pipeline_tests.proof.helpers import build, keyring

GROUP = click.Group(commands={c.name: c for c in COMMANDS})
DEEP = 100_000


@pytest.fixture(scope="module")
def pkg() -> Package:
    return build()


def _cli(*args: str):
    result = CliRunner().invoke(GROUP, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"the verifier raised {type(result.exception).__name__}: {result.exception}")
    return result


def _statement_text(pkg: Package, old: bytes, new: bytes) -> bytes:
    assert old in pkg.proof_package
    return pkg.proof_package.replace(old, new, 1)


CASES = {
    "impossible date in the interval": lambda p: {PROOF_FILE: _statement_text(
        p, b'"from":"2026-11-02T00:00:00Z"', b'"from":"2026-02-30T00:00:00Z"')},
    "non-UTF-8 member name in a provider record": lambda p: {
        "provider_records.jsonl": p.provider_records.replace(b'"id"', b'"\xff\xfeid"', 1)},
    "lone surrogate escape in the statement": lambda p: {PROOF_FILE: _statement_text(
        p, b'"format":"finance-proof/1"', b'"format":"finance-proof/1","x":"\\ud800"')},
    "100,000-deep statement": lambda p: {PROOF_FILE: b"[" * DEEP + b"]" * DEEP},
    "100,000-deep provider record": lambda p: {
        "provider_records.jsonl": b'{"a":' + b"[" * DEEP + b"]" * DEEP + b',"id":"x","provider":"p"}\n'},
    "100,000-deep ledger line": lambda p: {"ledger_entries.jsonl": b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}\n"},
    "100,000-deep report": lambda p: {"reconciliation_report.json": b"[" * DEEP + b"]" * DEEP},
    "100,000-deep ledger line of a valid-looking entry": lambda p: {
        "ledger_entries.jsonl": b'{"batch_id":null,"journal_id":"j-x","kind":"standard","lines":'
        + b"[" * DEEP + b"]" * DEEP + b"}\n"},
    # A bare `null` line crashes pyarrow 26.0.1's JSON reader (a segfault), so it must never get one.
    "a ledger line that is null": lambda p: {"ledger_entries.jsonl": b"null\n" + p.ledger_entries},
    "a provider line that is null": lambda p: {"provider_records.jsonl": b"null\n" + p.provider_records},
    "deep nesting through strings with brackets": lambda p: {
        "provider_records.jsonl": b'{"a":' + b'["]",' * 20_000 + b"0" + b"]" * 20_000 + b"}\n"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_files_give_a_named_invalid_verdict(pkg, tmp_path, case):
    files = {**pkg.files(), **CASES[case](pkg)}
    folder = tmp_path / "p"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (tmp_path / "keyring.json").write_text(keyring().to_json())
    res = _cli("verify", str(folder), "--keyring", str(tmp_path / "keyring.json"), "--json")
    assert res.exit_code == 1, res.output
    verdict = json.loads(res.output)
    assert verdict["ok"] is False and verdict["failed"], verdict
    assert set(verdict["failed"]) <= set(CHECKS)
    plain = _cli("verify", str(folder), "--keyring", str(tmp_path / "keyring.json"))
    assert plain.exit_code == 1 and "INVALID (failed: " in plain.output


def test_verify_entry_with_a_lone_surrogate_leaf_fails_by_name(pkg, tmp_path):
    pkg.write_dir(tmp_path / "p")
    (tmp_path / "keyring.json").write_text(keyring().to_json())
    proof = _cli("prove-entry", "--package", str(tmp_path / "p"), "--journal-id", "j-001")
    assert proof.exit_code == 0, proof.output
    doc = json.loads(proof.output)
    text = json.dumps(doc).replace(json.dumps(doc["leaf"]), '"\\ud800 not a line"')
    (tmp_path / "proof.json").write_text(text)
    for extra in ([], ["--json"]):
        res = _cli("verify-entry", "--package", str(tmp_path / "p"), "--proof", str(tmp_path / "proof.json"),
                   "--keyring", str(tmp_path / "keyring.json"), *extra)
        assert res.exit_code == 1, res.output
        assert "lone surrogate" in res.output
    assert json.loads(res.output)["inclusion"]["ok"] is False


_FILES = ("ledger_entries.jsonl", "provider_records.jsonl", "reconciliation_report.json", PROOF_FILE)


@st.composite
def mutations(draw):
    """A few edits of the package's bytes: flips, cuts, insertions of arbitrary or JSON-ish bytes."""
    edits = draw(st.lists(st.tuples(
        st.sampled_from(_FILES),
        st.sampled_from(["flip", "cut", "insert", "replace", "drop"]),
        st.floats(0, 1),
        st.one_of(st.binary(max_size=40),
                  st.sampled_from([b"[", b"{", b"]", b"}", b'"', b"\\", b"\\ud800", b"\xff", b"\n", b"1e400",
                                   b"-0", b"NaN", b'"id":', b"null", b"9007199254740993"])),
    ), min_size=1, max_size=4))
    return edits


def _apply(files: dict[str, bytes], edits) -> dict[str, bytes]:
    out = dict(files)
    for name, kind, where, data in edits:
        body = out.get(name, b"")
        at = int(where * len(body))
        if kind == "drop":
            out.pop(name, None)
        elif kind == "flip" and body:
            at = min(at, len(body) - 1)
            out[name] = body[:at] + bytes([body[at] ^ 0x20]) + body[at + 1:]
        elif kind == "cut":
            out[name] = body[:at]
        elif kind == "insert":
            out[name] = body[:at] + data + body[at:]
        else:
            out[name] = body[:at] + data + body[at + len(data):]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=mutations())
def test_fuzzed_packages_never_raise_and_only_the_intact_one_is_valid(pkg, edits):
    files = _apply(pkg.files(), edits)
    result = verify_package(Package.from_files(files), keyring())
    assert [c.name for c in result.checks] == list(CHECKS)
    json.dumps(result.to_dict(), ensure_ascii=True)  # a verdict that can always be written
    if files != pkg.files():
        assert not result.ok, edits

