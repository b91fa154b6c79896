"""The verifier: every check, tampering with every file, trust and quorum, the CLI, the guide."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from finance_pipeline_tests.fixtures import skip_unless_ci
from click.testing import CliRunner

from finance_pipeline.cli.proofs import COMMANDS
from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.proof.keyring import Keyring, KeyringError
from finance_pipeline.proof.package import (
    Package,
    compute_proof_id,
    ledger_entries_bytes,
    package_json,
    previous_link,
    statement_bytes,
)
from finance_pipeline.proof.verify import CHECKS, verify_package
from finance_pipeline_tests.proof.reference_builder import statement_of_leaves
from finance_pipeline_tests.proof.helpers import (
    DAY,
    build,
    draft,
    entry,
    keyring,
    sample_entries,
    sample_report,
    sign_all,
    signers,
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "auditor-guide.md"
FILES = ("ledger_entries", "provider_records", "reconciliation_report", "proof_package")
EXPECTED = {
    "ledger_entries": {"ledger.file_sha256"},
    "provider_records": {"providers.file_sha256"},
    "reconciliation_report": {"reconciliation.report_sha256"},
    # a changed statement breaks its signatures; a changed signature breaks itself or the quorum
    "proof_package": {"proof_package.parse", "signatures", "quorum"},
}


@pytest.fixture(scope="module")
def pkg() -> Package:
    return build()


def _flip(pkg: Package, attr: str, pos: int, mask: int = 0x01) -> Package:
    data = bytearray(getattr(pkg, attr))
    data[pos] ^= mask
    return replace(pkg, **{attr: bytes(data)})


def _signed(statement: dict, ledger: bytes, providers: bytes, report: bytes, *who) -> Package:
    s = statement_bytes(statement)
    return Package(ledger, providers, report,
                   package_json(statement, [w.sign(s) for w in (who or signers()[:2])]))


# --- a good package -----------------------------------------------------------------------------

def test_valid_package_passes_every_check_in_order(pkg):
    result = verify_package(pkg, keyring())
    assert result.ok, result.text()
    assert [c.name for c in result.checks] == list(CHECKS)
    assert result.failed == []
    assert result.proof_id == pkg.statement()["proof_id"]
    assert "VALID" in result.text()
    assert result.to_dict()["ok"] is True


def test_empty_day_verifies():
    d = draft(entries=[], records=[], report=sample_report(matched=0))
    result = verify_package(sign_all(d), keyring())
    assert result.ok, result.text()


# --- tampering ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attr", FILES)
@pytest.mark.parametrize("where", ["first", "second", "middle", "last-but-one", "last"])
@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_flipping_a_byte_fails_the_right_check(pkg, attr, where, mask):
    size = len(getattr(pkg, attr))
    pos = {"first": 0, "second": 1, "middle": size // 2, "last-but-one": size - 2, "last": size - 1}[where]
    result = verify_package(_flip(pkg, attr, pos, mask), keyring())
    assert not result.ok
    assert set(result.failed) & EXPECTED[attr], result.text()


@pytest.mark.parametrize("attr", FILES)
def test_flipping_any_single_byte_is_detected(pkg, attr):
    ring = keyring()
    for pos in range(len(getattr(pkg, attr))):
        result = verify_package(_flip(pkg, attr, pos), ring)
        assert set(result.failed) & EXPECTED[attr], (pos, result.text())


def test_a_statement_change_fails_signatures_and_names_the_member(pkg):
    doc = json.loads(pkg.proof_package)
    doc["statement"]["ledger"]["entries"] = 6
    result = verify_package(replace(pkg, proof_package=canonical_bytes(doc)), keyring())
    assert {"ledger.entries", "proof_id", "signatures", "quorum"} <= set(result.failed)


def test_missing_or_extra_line_is_counted(pkg):
    lines = pkg.ledger_entries.split(b"\n")
    result = verify_package(replace(pkg, ledger_entries=b"\n".join(lines[1:])), keyring())
    assert {"ledger.file_sha256", "ledger.entries", "ledger.lines", "ledger.merkle_root"} <= set(result.failed)
    extra = pkg.provider_records + pkg.provider_records.split(b"\n")[0] + b"\n"
    result = verify_package(replace(pkg, provider_records=extra), keyring())
    assert {"providers.file_sha256", "providers.records", "providers.order"} <= set(result.failed)


# --- trust and quorum ------------------------------------------------------------------------

def test_signature_by_unknown_key_does_not_count():
    lead, _, outsider = signers()
    result = verify_package(sign_all(draft(), lead, outsider), keyring())
    assert result.failed == ["quorum"]
    assert "ignored (not in keyring): local:outsider" in result.check("signatures").detail


def test_below_quorum_fails():
    lead, controller, _ = signers()
    assert verify_package(sign_all(draft(), lead), keyring()).failed == ["quorum"]
    assert verify_package(sign_all(draft()), keyring(min_signatures=1)).ok
    assert verify_package(sign_all(draft(), controller), keyring(min_signatures=1)).ok
    assert verify_package(sign_all(draft(), lead, lead), keyring()).failed == ["quorum"]


def test_distinct_roles_are_counted_when_required():
    lead, _, outsider = signers()
    # two keys with the same role: enough keys, not enough roles
    same_role = Keyring.load({"keys": [{"key_id": s.key_id, "role": s.role, "public_key_pem": s.public_key_pem}
                                       for s in (lead, outsider)],
                              "quorum": {"min_signatures": 2, "distinct_roles": False}})
    pkg = sign_all(draft(), lead, outsider)
    assert verify_package(pkg, same_role).ok
    with pytest.raises(KeyringError, match="never be met"):
        Keyring.load({**same_role.to_dict(), "quorum": {"min_signatures": 2, "distinct_roles": True}})


def test_wrong_signature_by_a_keyring_key_is_a_failure_not_a_skip():
    lead, controller, outsider = signers()
    d = draft()
    forged = outsider.sign(d.signed_bytes) | {"key_id": lead.key_id, "role": lead.role}
    pkg = d.package([forged, controller.sign(d.signed_bytes)])
    result = verify_package(pkg, keyring(min_signatures=1))
    assert result.failed == ["signatures"]
    assert "does not verify" in result.check("signatures").detail
    # a signature over other bytes is just as wrong
    other = lead.sign(d.signed_bytes + b" ")
    pkg = d.package([other, controller.sign(d.signed_bytes)])
    assert "signatures" in verify_package(pkg, keyring()).failed


def test_declared_role_and_algorithm_must_match_the_keyring():
    lead, controller, _ = signers()
    d = draft()
    good = [lead.sign(d.signed_bytes), controller.sign(d.signed_bytes)]
    for change in ({"role": "controller"}, {"algorithm": "ECDSA_P384_SHA384"}, {"signature": None}):
        pkg = d.package([good[0] | change, good[1]])
        assert "signatures" in verify_package(pkg, keyring()).failed, change


def test_non_canonical_base64_is_rejected():
    lead, controller, _ = signers()
    d = draft()
    sig = lead.sign(d.signed_bytes)
    while not sig["signature"].endswith("="):  # DER lengths vary; we need one with padding
        sig = lead.sign(d.signed_bytes)
    text = sig["signature"]
    pad = len(text) - len(text.rstrip("="))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # set an unused low bit of the last data character: lenient decoders give the same DER
    sloppy = text[:-pad - 1] + alphabet[alphabet.index(text[-pad - 1]) | 1] + "=" * pad
    assert sloppy != text and base64.b64decode(sloppy) == base64.b64decode(text)
    for bad in (sloppy, text + "\n", text.rstrip("=")):
        pkg = d.package([sig | {"signature": bad}, controller.sign(d.signed_bytes)])
        assert "signatures" in verify_package(pkg, keyring()).failed, bad


def test_keys_named_in_the_package_are_not_trusted():
    _, _, outsider = signers()
    d = draft()
    sig = outsider.sign(d.signed_bytes) | {"public_key_pem": outsider.public_key_pem}
    doc = json.loads(d.package([sig]).proof_package)
    doc["keys"] = [{"key_id": outsider.key_id, "public_key_pem": outsider.public_key_pem}]
    pkg = replace(d.package([]), proof_package=canonical_bytes(doc))
    assert verify_package(pkg, keyring()).failed == ["quorum"]


# --- content checks -----------------------------------------------------------------------------

def test_unparseable_package_skips_the_rest(pkg):
    result = verify_package(replace(pkg, proof_package=b"{not json"), keyring())
    assert result.failed == ["proof_package.parse"]
    assert [c.name for c in result.checks] == list(CHECKS)
    assert all(c.skipped for c in result.checks[1:])
    assert not result.ok


@pytest.mark.parametrize("doc, match", [
    (b'{"signatures":[]}', "no statement"),
    (b'{"statement":{"format":"finance-proof/2"}}', "finance-proof/1"),
    (b'{"statement":{"format":"finance-proof/1","x":1.5}}', "canonical"),
    (b'{"statement":{"format":"finance-proof/1"},"statement":{}}', "twice"),
    (b'{"statement":{"format":"finance-proof/1","interval":{"from":"2026-11-02T00:00:00Z",'
     b'"to":"2026-11-02T12:00:00Z"}}}', "one UTC day"),
    (b"\xff", "not valid JSON"),
])
def test_parse_failures_say_why(pkg, doc, match):
    result = verify_package(replace(pkg, proof_package=doc), keyring())
    assert result.failed == ["proof_package.parse"]
    assert re.search(match, result.checks[0].detail)


def test_missing_files(pkg):
    partial = replace(pkg, ledger_entries=None, reconciliation_report=None)
    strict = verify_package(partial, keyring())
    assert set(strict.failed) == {"ledger.file_sha256", "ledger.entries", "ledger.lines",
                                  "ledger.merkle_root", "ledger.leaves", "ledger.totals",
                                  "reconciliation.report_sha256", "reconciliation.summary"}
    lenient = verify_package(partial, keyring(), require_files=False)
    assert lenient.ok
    assert lenient.check("ledger.merkle_root").skipped


def _resigned_ledger(leaves: list[bytes], lines: int = 10, totals=None):
    """A package whose statement honestly describes ``leaves`` and is validly signed."""
    d = draft()
    st = statement_of_leaves(day=DAY, ledger_leaves=leaves, ledger_lines=lines,
                         totals=d.statement["ledger"]["totals"] if totals is None else totals,
                         provider_records_bytes=d.provider_records, provider_records=3,
                         report_bytes=d.reconciliation_report, matched=2, discrepancies=0, previous=None)
    return _signed(st, ledger_entries_bytes(leaves), d.provider_records, d.reconciliation_report)


def test_signed_but_unordered_ledger_fails_leaves():
    leaves = [e.leaf_bytes() for e in sample_entries()]  # not sorted
    result = verify_package(_resigned_ledger(leaves), keyring())
    assert result.failed == ["ledger.leaves"]
    assert "out of order" in result.check("ledger.leaves").detail


def test_signed_but_non_canonical_or_foreign_leaves_fail():
    ok_leaves = sorted((e.leaf_bytes() for e in sample_entries()),
                       key=lambda b: (json.loads(b)["ts"], json.loads(b)["journal_id"]))
    # same entry, members in another order: valid JSON, not canonical
    loose = json.dumps(json.loads(ok_leaves[0]), separators=(",", ":"), sort_keys=False)
    obj = json.loads(ok_leaves[0])
    reordered = json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode()
    assert reordered != ok_leaves[0] and loose
    result = verify_package(_resigned_ledger([reordered] + ok_leaves[1:]), keyring())
    assert result.failed == ["ledger.leaves"] and "canonical" in result.check("ledger.leaves").detail
    # a leaf that omits its null members is not the eleven-member form
    short = canonical_bytes({k: v for k, v in obj.items() if v is not None})
    result = verify_package(_resigned_ledger([short] + ok_leaves[1:]), keyring())
    assert result.failed == ["ledger.leaves"]
    # an entry of another day
    other_day = entry("j-000", "2026-11-01T23:00:00Z").leaf_bytes()
    result = verify_package(_resigned_ledger([other_day] + ok_leaves[1:], totals=None), keyring())
    assert "ledger.leaves" in result.failed and "outside the interval" in result.check("ledger.leaves").detail
    # not JSON at all
    result = verify_package(_resigned_ledger([b"hello"] + ok_leaves[1:]), keyring())
    assert {"ledger.leaves", "ledger.lines", "ledger.totals"} <= set(result.failed)


def test_signed_but_wrong_totals_fail():
    leaves = [e.leaf_bytes() for e in sorted(sample_entries(), key=lambda e: (e.ts_us, e.journal_id))]
    result = verify_package(_resigned_ledger(leaves, totals=[{"currency": "USD", "debits_minor": 1,
                                                                "credits_minor": 1}]), keyring())
    assert result.failed == ["ledger.totals"]


def test_signed_but_unordered_or_non_canonical_provider_records_fail():
    d = draft()
    lines = d.provider_records.split(b"\n")[:-1]
    for bad in (b"\n".join(reversed(lines)) + b"\n",
                d.provider_records + lines[-1] + b"\n",
                b'{"id": "a", "provider": "stripe"}\n',
                b'{"provider":"stripe"}\n',
                d.provider_records[:-1]):
        st = statement_of_leaves(day=DAY, ledger_leaves=d.ledger_entries.split(b"\n")[:-1], ledger_lines=10,
                             totals=d.statement["ledger"]["totals"], provider_records_bytes=bad,
                             provider_records=len(bad.split(b"\n")) - (1 if bad.endswith(b"\n") else 0),
                             report_bytes=d.reconciliation_report, matched=2, discrepancies=0, previous=None)
        result = verify_package(_signed(st, d.ledger_entries, bad, d.reconciliation_report), keyring())
        assert result.failed == ["providers.order"], (bad, result.text())


def test_signed_but_inconsistent_summary_fails():
    d = draft()
    for matched, disc, report in ((3, 0, d.reconciliation_report), (2, 1, d.reconciliation_report),
                                  (2, 0, sample_report("2026-11-03"))):
        st = statement_of_leaves(day=DAY, ledger_leaves=d.ledger_entries.split(b"\n")[:-1], ledger_lines=10,
                             totals=d.statement["ledger"]["totals"], provider_records_bytes=d.provider_records,
                             provider_records=3, report_bytes=report, matched=matched,
                             discrepancies=disc, previous=None)
        result = verify_package(_signed(st, d.ledger_entries, d.provider_records, report), keyring())
        assert result.failed == ["reconciliation.summary"], result.text()


def test_statement_size_limit_is_checked(pkg):
    st = {k: v for k, v in draft().statement.items() if k != "proof_id"}
    st["notes"] = "x" * 5000  # an unsigned-by-KMS-able statement, signed locally
    st["proof_id"] = compute_proof_id(st)
    s = canonical_bytes(st)
    doc = canonical_bytes({"signatures": [w.sign(s) for w in signers()[:2]], "statement": st})
    result = verify_package(replace(pkg, proof_package=doc), keyring())
    assert result.failed == ["statement.size"]


# --- the chain --------------------------------------------------------------------------------

def test_previous_link_check():
    day1 = build("2026-11-01")
    day2 = build(previous=previous_link(day1.statement()))
    assert verify_package(day2, keyring(), previous_package=day1).ok
    assert verify_package(day2, keyring(), previous_package=day1).checks[-1].name == "previous"
    other = build("2026-11-01", entries=[entry("x", "2026-11-01T01:00:00Z")])
    assert verify_package(day2, keyring(), previous_package=other).failed == ["previous"]
    day0 = build("2026-10-31")
    skipped_day = build(previous=previous_link(day0.statement()))
    assert verify_package(skipped_day, keyring(), previous_package=day0).failed == ["previous"]
    assert verify_package(build(), keyring(), previous_package=day1).failed == ["previous"]


# --- keyring ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate, match", [
    (lambda k: k.pop("quorum"), "quorum"),
    (lambda k: k["quorum"].update(min_signatures=0), "min_signatures"),
    (lambda k: k["quorum"].update(min_signature=2), "unknown"),
    (lambda k: k["quorum"].update(distinct_roles="yes"), "distinct_roles"),
    (lambda k: k["keys"].append(dict(k["keys"][0])), "twice"),
    (lambda k: k["keys"][0].update(public_key_pem="-----BEGIN PUBLIC KEY-----\nnope"), "PEM"),
    (lambda k: k["keys"][0].pop("role"), "role"),
    (lambda k: k.update(keys=[]), "non-empty"),
])
def test_keyring_validation(mutate, match):
    data = json.loads(keyring().to_json())
    mutate(data)
    with pytest.raises(KeyringError, match=match):
        Keyring.load(data)


def test_keyring_rejects_other_curves(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    data = json.loads(keyring().to_json())
    data["keys"][0]["public_key_pem"] = pem
    with pytest.raises(KeyringError, match="P-256"):
        Keyring.load(data)


def test_keyring_file_round_trip(tmp_path):
    ring = keyring()
    ring.dump(tmp_path / "k.json")
    assert Keyring.load(tmp_path / "k.json") == ring
    assert Keyring.load(str(tmp_path / "k.json")).to_json() == ring.to_json()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(KeyringError, match="not JSON"):
        Keyring.load(tmp_path / "bad.json")
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.load(tmp_path / "missing.json")


# --- CLI ---------------------------------------------------------------------------------------

def _cli():
    import click

    group = click.Group(commands={c.name: c for c in COMMANDS})
    return lambda *args: CliRunner().invoke(group, list(args))


@pytest.fixture()
def published(tmp_path):
    day1 = build("2026-11-01")
    day2 = build(previous=previous_link(day1.statement()))
    day1.write_dir(tmp_path / "d1")
    day2.write_dir(tmp_path / "d2")
    (tmp_path / "keyring.json").write_text(keyring().to_json())
    return tmp_path


def test_cli_verify_valid(published):
    run = _cli()
    res = run("verify", str(published / "d2"), "--keyring", str(published / "keyring.json"),
              "--previous", str(published / "d1"))
    assert res.exit_code == 0, res.output
    assert "VALID" in res.output and "previous" in res.output
    res = run("verify", str(published / "d2"), "--keyring", str(published / "keyring.json"), "--json")
    assert res.exit_code == 0
    assert json.loads(res.output)["ok"] is True


def test_cli_verify_invalid_names_the_check(published):
    path = published / "d2" / "reconciliation_report.json"
    path.write_bytes(path.read_bytes().replace(b'"matched":2', b'"matched":3'))
    res = _cli()("verify", str(published / "d2"), "--keyring", str(published / "keyring.json"))
    assert res.exit_code == 1
    assert "reconciliation.report_sha256" in res.output and "INVALID" in res.output
    res = _cli()("verify", str(published / "d2"), "--keyring", str(published / "keyring.json"), "--json")
    assert res.exit_code == 1
    assert "reconciliation.report_sha256" in json.loads(res.output)["failed"]


def test_cli_verify_broken_chain_is_invalid(published):
    res = _cli()("verify", str(published / "d1"), "--keyring", str(published / "keyring.json"),
                 "--previous", str(published / "d2"))
    assert res.exit_code == 1 and "previous" in res.output


@pytest.mark.parametrize("case", ["no-keyring-option", "missing-keyring", "bad-keyring", "missing-dir",
                                  "missing-file", "s3", "missing-previous"])
def test_cli_verify_could_not_run(published, case):
    keyring_path = str(published / "keyring.json")
    args = ["verify", str(published / "d2"), "--keyring", keyring_path]
    if case == "no-keyring-option":
        args = args[:2]
    elif case == "missing-keyring":
        args[3] = str(published / "nope.json")
    elif case == "bad-keyring":
        (published / "bad.json").write_text('{"keys": [], "quorum": {}}')
        args[3] = str(published / "bad.json")
    elif case == "missing-dir":
        args[1] = str(published / "nowhere")
    elif case == "missing-file":
        (published / "d2" / "ledger_entries.jsonl").unlink()
    elif case == "s3":
        args[1] = "s3://bucket/proofs/x/"
    elif case == "missing-previous":
        args += ["--previous", str(published / "nowhere")]
    res = _cli()(*args)
    assert res.exit_code == 2, (case, res.output)


# --- the auditor guide, run for real -------------------------------------------------------------

def _blocks(prefix: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if b.startswith(prefix)]


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_unless_ci(f"the auditor guide test needs {', '.join(missing)}")


def _write_trusted(tmp: Path, who=None) -> Path:
    (tmp / "keys").mkdir(exist_ok=True)
    lines = []
    for i, s in enumerate(who or signers()[:2]):
        (tmp / "keys" / f"{i}.pem").write_text(s.public_key_pem)
        lines.append(f"{s.key_id} {s.role} {tmp / 'keys' / f'{i}.pem'}")
    (tmp / "trusted.txt").write_text("\n".join(lines) + "\n")
    return tmp / "trusted.txt"


def _run_guide(tmp: Path, pkg_dir: Path, prev: Path | None = None, trusted: Path | None = None):
    script = "\n".join(_blocks("# step"))
    env = {**os.environ, "PKG": str(pkg_dir), "TRUSTED": str(trusted or _write_trusted(tmp)),
           "QUORUM": "2", "DISTINCT_ROLES": "yes", "PREV": str(prev) if prev else ""}
    return subprocess.run(["bash", "-c", script], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=120)


def test_guide_has_the_script_steps():
    steps = _blocks("# step")
    assert [int(re.match(r"# step (\d+)", b).group(1)) for b in steps] == list(range(9))


def test_guide_script_accepts_a_valid_chained_package(tmp_path):
    _need("bash", "openssl", "sha256sum")
    day1 = build("2026-11-01")
    day2 = build(previous=previous_link(day1.statement()))
    day1.write_dir(tmp_path / "d1")
    day2.write_dir(tmp_path / "d2")
    out = _run_guide(tmp_path, tmp_path / "d2", prev=tmp_path / "d1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert f"PACKAGE VALID {day2.statement()['proof_id']}" in out.stdout
    for name in ("proof_id", "ledger.file_sha256", "ledger.entries", "ledger.lines", "ledger.merkle_root",
                 "providers.file_sha256", "providers.records", "reconciliation.report_sha256",
                 "quorum 2 of 2", "previous.statement_sha256", "previous.proof_id", "reconciliation.matched"):
        assert f"ok    {name}" in out.stdout, name


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7])
def test_guide_script_on_ledger_sizes(tmp_path, n):
    _need("bash", "openssl", "sha256sum")
    entries = [entry(f"j-{i:02d}", f"{DAY}T{i:02d}:00:00Z", 100 + i) for i in range(n)]
    build(entries=entries).write_dir(tmp_path / "p")
    out = _run_guide(tmp_path, tmp_path / "p")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok    ledger.merkle_root" in out.stdout


@pytest.mark.parametrize("tamper, expected", [
    ("ledger", "FAIL  ledger.file_sha256"),
    ("ledger-line", "FAIL  ledger.entries"),
    ("providers", "FAIL  providers.file_sha256"),
    ("report", "FAIL  reconciliation.report_sha256"),
    ("statement", "does not verify over S"),
    ("signature", "FAIL  signature by local:"),
    ("role", "claims role"),
    ("outsider", "FAIL  quorum"),
    ("chain", "FAIL  previous.statement_sha256"),
    ("context", "FAIL  reconciliation.context_sha256"),
    ("unsigned-context", "FAIL  reconciliation.context_sha256"),
    ("extra-file", "FAIL  package.files"),
    ("symlink", "FAIL  package.files"),
])
def test_guide_script_catches_tampering(tmp_path, tamper, expected):
    _need("bash", "openssl", "sha256sum")
    lead, controller, outsider = signers()
    day1 = build("2026-11-01")
    d = draft(previous=previous_link(day1.statement()))
    pkg = sign_all(d)
    prev = day1
    if tamper == "ledger":
        pkg = _flip(pkg, "ledger_entries", 40)
    elif tamper == "ledger-line":
        pkg = replace(pkg, ledger_entries=pkg.ledger_entries + pkg.ledger_entries.split(b"\n")[0] + b"\n")
    elif tamper == "providers":
        pkg = _flip(pkg, "provider_records", len(pkg.provider_records) // 2)
    elif tamper == "report":
        pkg = _flip(pkg, "reconciliation_report", 5)
    elif tamper == "statement":
        pkg = replace(pkg, proof_package=pkg.proof_package.replace(b'"matched":2', b'"matched":3'))
    elif tamper == "signature":
        doc = json.loads(pkg.proof_package)
        sig = doc["signatures"][0]
        sig["signature"] = outsider.sign(d.signed_bytes)["signature"]  # valid DER, wrong key
        pkg = replace(pkg, proof_package=canonical_bytes(doc))
    elif tamper == "role":
        doc = json.loads(pkg.proof_package)
        doc["signatures"][0]["role"] = "auditor"
        pkg = replace(pkg, proof_package=canonical_bytes(doc))
    elif tamper == "outsider":
        pkg = sign_all(d, lead, outsider)
    elif tamper == "chain":
        prev = build("2026-11-01", entries=[entry("x", "2026-11-01T01:00:00Z")])
    elif tamper in ("context", "unsigned-context"):
        context = b'{"tolerances":{"time_s":3600}}'
        signed = draft(previous=previous_link(day1.statement()),
                       extra={"reconciliation": {"context_sha256": hashlib.sha256(context).hexdigest()}})
        if tamper == "context":
            pkg = signed.package([w.sign(signed.signed_bytes) for w in (lead, controller)],
                                 extra_files={"reconciliation_context.json": context.replace(b"3600", b"7200")})
        else:
            pkg.extra_files["reconciliation_context.json"] = context
    pkg.write_dir(tmp_path / "p")
    if tamper == "extra-file":
        (tmp_path / "p" / "NOTICE.txt").write_text("not signed")
    elif tamper == "symlink":
        os.symlink("/etc/hostname", tmp_path / "p" / "hostname")
    prev.write_dir(tmp_path / "prev")
    out = _run_guide(tmp_path, tmp_path / "p", prev=tmp_path / "prev")
    assert out.returncode == 1, out.stdout + out.stderr
    assert expected in out.stdout, out.stdout
    assert "PACKAGE INVALID" in out.stdout
    # and the project's verifier agrees
    assert not verify_package(Package.load_dir(tmp_path / "p"), keyring(), previous_package=prev).ok


def test_guide_optional_keyring_to_trusted_txt(tmp_path):
    _need("bash", "openssl", "sha256sum", "jq")
    (tmp_path / "keyring.json").write_text(keyring().to_json())
    [block] = [b for b in _blocks("# optional (jq): trusted.txt")]
    out = subprocess.run(["bash", "-c", block], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "QUORUM=2 DISTINCT_ROLES=yes"
    build().write_dir(tmp_path / "p")
    res = _run_guide(tmp_path, tmp_path / "p", trusted=tmp_path / "trusted.txt")
    assert res.returncode == 0, res.stdout + res.stderr


def test_guide_optional_python_merkle_and_jq_totals(tmp_path):
    _need("bash", "python3", "jq")
    for entries in (None, []):
        pkg = build(entries=entries) if entries is None else \
            sign_all(draft(entries=entries, records=[], report=sample_report(matched=0)))
        pkg.write_dir(tmp_path / "p")
        st = pkg.statement()
        env = {**os.environ, "PKG": str(tmp_path / "p")}
        [py] = _blocks("# optional (python3)")
        out = subprocess.run(["bash", "-c", py], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == st["ledger"]["merkle_root"]
        [extract] = _blocks("# optional: S.bin")
        subprocess.run(["bash", "-c", extract], cwd=tmp_path, env=env, check=True)
        assert (tmp_path / "S.bin").read_bytes() == statement_bytes(st)
        [jq] = _blocks("# optional (jq): ledger totals")
        out = subprocess.run(["bash", "-c", jq], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
        computed, from_s = out.stdout.split("\n", 1)
        assert computed == from_s.strip() == canonical_bytes(st["ledger"]["totals"]).decode()


def test_guide_optional_inclusion_check(tmp_path):
    _need("bash", "sha256sum", "jq")
    from finance_pipeline.proof.inclusion import prove_entry

    entries = [entry(f"j-{i:02d}", f"{DAY}T{i:02d}:00:00Z", 100 + i) for i in range(6)]
    pkg = build(entries=entries)
    pkg.write_dir(tmp_path / "p")
    [extract] = _blocks("# optional: S.bin")
    subprocess.run(["bash", "-c", extract], cwd=tmp_path, env={**os.environ, "PKG": str(tmp_path / "p")},
                   check=True)
    [block] = _blocks("# optional (jq): check proof.json")
    for jid in ("j-00", "j-03", "j-05"):
        proof = prove_entry(pkg, jid)
        (tmp_path / "proof.json").write_text(json.dumps(proof))
        out = subprocess.run(["bash", "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert out.stdout.strip() == f"INCLUDED: leaf {proof['leaf_index']} of 6", out.stdout + out.stderr
        bad = proof | {"leaf": proof["leaf"].replace('"memo":"sale"', '"memo":"sold"')}
        (tmp_path / "proof.json").write_text(json.dumps(bad))
        out = subprocess.run(["bash", "-c", block], cwd=tmp_path, capture_output=True, text=True)
        assert out.stdout.strip() == "NOT INCLUDED"
