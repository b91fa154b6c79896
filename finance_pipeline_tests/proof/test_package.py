"""Building packages: exact statement shape, determinism, proof_id, file rules."""

from __future__ import annotations

import hashlib
import json

import pytest
import rfc8785

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.proof.merkle import tree_head
from finance_pipeline.proof.package import (
    FORMAT,
    MAX_STATEMENT_BYTES,
    SPEC_FILES,
    Package,
    PackageError,
    PackageLoadError,
    StatementTooLarge,
    compute_proof_id,
    ledger_entries_bytes,
    package_json,
    previous_link,
    provider_records_bytes,
    statement_bytes,
)
from finance_pipeline_tests.proof.reference_builder import sort_leaves, statement_of_leaves
from finance_pipeline_tests.proof.helpers import (
    DAY,
    draft,
    entry,
    sample_entries,
    sample_records,
    sample_report,
    sign_all,
    signers,
)


def _statement(**overrides):
    args = dict(day=DAY, ledger_leaves=[b'{"a":1}', b'{"b":2}'], ledger_lines=4,
                totals=[{"currency": "USD", "debits_minor": 5, "credits_minor": 5},
                        {"currency": "EUR", "debits_minor": 1, "credits_minor": 1}],
                provider_records_bytes=b"", provider_records=0, report_bytes=b"{}", matched=0,
                discrepancies=0, previous=None)
    args.update(overrides)
    return statement_of_leaves(**args)


def test_statement_has_exactly_the_spec_shape():
    st = _statement()
    assert set(st) == {"format", "proof_id", "interval", "ledger", "providers", "reconciliation", "previous"}
    assert st["format"] == FORMAT
    assert st["interval"] == {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"}
    assert set(st["ledger"]) == {"entries", "lines", "file_sha256", "merkle_root", "totals"}
    assert st["ledger"]["entries"] == 2 and st["ledger"]["lines"] == 4
    assert st["ledger"]["file_sha256"] == hashlib.sha256(b'{"a":1}\n{"b":2}\n').hexdigest()
    assert st["ledger"]["merkle_root"] == tree_head([b'{"a":1}', b'{"b":2}']).hex()
    assert [t["currency"] for t in st["ledger"]["totals"]] == ["EUR", "USD"]
    assert st["providers"] == {"records": 0, "file_sha256": hashlib.sha256(b"").hexdigest()}
    assert st["reconciliation"] == {"report_sha256": hashlib.sha256(b"{}").hexdigest(),
                                    "matched": 0, "discrepancies": 0}
    assert st["previous"] is None


def test_month_and_year_boundaries():
    assert _statement(day="2026-12-31")["interval"] == {"from": "2026-12-31T00:00:00Z",
                                                        "to": "2027-01-01T00:00:00Z"}
    assert _statement(day="2028-02-28")["interval"]["to"] == "2028-02-29T00:00:00Z"


def test_proof_id_is_recomputable_from_the_documented_formula():
    st = _statement()
    rest = {k: v for k, v in st.items() if k != "proof_id"}
    expected = "fp1-20261102-" + hashlib.sha256(rfc8785.dumps(rest)).hexdigest()[:24]
    assert st["proof_id"] == expected == compute_proof_id(st)


def test_proof_id_follows_every_signed_member():
    base = _statement()["proof_id"]
    assert _statement()["proof_id"] == base
    for change in (dict(ledger_lines=5), dict(matched=1), dict(discrepancies=1), dict(day="2026-11-03"),
                   dict(report_bytes=b"{ }"), dict(provider_records_bytes=b"x\n", provider_records=1),
                   dict(previous={"proof_id": "fp1-x", "statement_sha256": "0" * 64}),
                   dict(extra={"reconciliation": {"context_sha256": "1" * 64}})):
        assert _statement(**change)["proof_id"] != base, change


def test_statement_bytes_are_rfc8785():
    st = draft().statement
    assert statement_bytes(st) == rfc8785.dumps(st)


def test_extra_members_merge_deeply_and_never_overwrite():
    st = _statement(extra={"reconciliation": {"context_sha256": "ab" * 32}, "pipeline": {"run": "r1"}})
    assert st["reconciliation"]["context_sha256"] == "ab" * 32
    assert st["reconciliation"]["matched"] == 0
    assert st["pipeline"] == {"run": "r1"}
    for bad in ({"ledger": {"entries": 3}}, {"format": "x"}, {"proof_id": "fp1-mine"},
                {"previous": {"proof_id": "x"}}, {"ledger": {"totals": {"x": 1}}}):
        with pytest.raises(PackageError, match="extra"):
            _statement(extra=bad)


def test_too_large_statement_is_refused_with_the_limit_named():
    with pytest.raises(StatementTooLarge, match=str(MAX_STATEMENT_BYTES)):
        _statement(extra={"notes": "x" * MAX_STATEMENT_BYTES})


@pytest.mark.parametrize("bad", [
    dict(ledger_lines=-1), dict(matched=1.0), dict(discrepancies=True), dict(day="2026-11-2"),
    dict(day="20261102"), dict(previous={"proof_id": "x"}),
    dict(previous={"proof_id": "x", "statement_sha256": "AB" * 32}),
    dict(totals=[{"currency": "USD", "debits_minor": 1, "credits_minor": 1}] * 2),
    dict(totals=[{"currency": "USD", "debits_minor": 1.5, "credits_minor": 1}]),
    dict(ledger_leaves=[b'{"a":\n1}']),
])
def test_bad_inputs_are_named(bad):
    with pytest.raises(PackageError):
        _statement(**bad)


def test_ledger_entries_bytes():
    assert ledger_entries_bytes([]) == b""
    assert ledger_entries_bytes([b"a", b"b"]) == b"a\nb\n"


def test_sort_leaves_by_instant_then_journal_id_code_points():
    es = [entry("b", "2026-11-02T10:00:00Z"), entry("a", "2026-11-02T10:00:00.000001Z"),
          entry("Z", "2026-11-02T10:00:00Z"), entry("é", "2026-11-02T09:00:00+00:00"),
          entry("z", "2026-11-02T11:00:00+02:00")]  # 09:00Z
    assert [e.journal_id for e in sort_leaves(es)] == ["z", "é", "Z", "b", "a"]


def test_provider_records_sorted_and_canonical():
    data = provider_records_bytes(sample_records())
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    keys = [(json.loads(x)["provider"], json.loads(x)["id"]) for x in lines[:-1]]
    assert keys == sorted(keys) == [("payout_sandbox", "po_1"), ("stripe", "txn_1"), ("stripe", "txn_2")]
    assert all(rfc8785.dumps(json.loads(x)) == x for x in lines[:-1])
    assert provider_records_bytes([]) == b""


@pytest.mark.parametrize("records, match", [
    ([{"provider": "stripe", "id": "a"}, {"provider": "stripe", "id": "a", "x": 1}], "twice"),
    ([{"provider": "stripe"}], "'id'"),
    ([{"id": "a"}], "'provider'"),
    ([{"provider": "stripe", "id": 5}], "'id'"),
    ([{"provider": "stripe", "id": "a", "amount": 1.5}], "float"),
])
def test_provider_records_errors(records, match):
    with pytest.raises(PackageError, match=match):
        provider_records_bytes(records)


def test_same_inputs_give_same_bytes_and_proof_id():
    a, b = draft(), draft(entries=list(reversed(sample_entries())), records=list(reversed(sample_records())))
    assert a == b
    assert a.proof_id == b.proof_id
    sigs = [s.sign(a.signed_bytes) for s in signers()[:2]]
    assert a.package(sigs).files() == b.package(list(reversed(sigs))).files()


def test_package_json_is_canonical_and_s_is_a_substring():
    d = draft()
    pkg = sign_all(d)
    doc = json.loads(pkg.proof_package)
    assert rfc8785.dumps(doc) == pkg.proof_package
    assert [s["key_id"] for s in doc["signatures"]] == sorted(s["key_id"] for s in doc["signatures"])
    prefix, _, rest = pkg.proof_package.partition(b'],"statement":')
    assert prefix.startswith(b'{"signatures":[')
    assert rest[:-1] == statement_bytes(d.statement) and rest.endswith(b"}")


def test_empty_day():
    d = draft(entries=[], records=[], report=sample_report(matched=0))
    assert d.ledger_entries == b"" and d.provider_records == b""
    ledger = d.statement["ledger"]
    assert ledger["entries"] == 0 and ledger["lines"] == 0 and ledger["totals"] == []
    assert ledger["merkle_root"] == hashlib.sha256(b"").hexdigest()
    assert ledger["file_sha256"] == hashlib.sha256(b"").hexdigest()


def test_prepare_refuses_entries_of_another_day_and_duplicates():
    with pytest.raises(PackageError, match="outside the interval"):
        draft(entries=[entry("j", "2026-11-03T00:00:00Z")])
    with pytest.raises(PackageError, match="outside the interval"):
        draft(entries=[entry("j", "2026-11-01T23:59:59.999999Z")])
    with pytest.raises(PackageError, match="twice"):
        draft(entries=[entry("j", "2026-11-02T01:00:00Z"), entry("j", "2026-11-02T01:00:00Z")])


def test_report_counts_feed_the_statement():
    d = draft(report=sample_report(matched=7, discrepancies={"LEDGER_MISSING": 2, "FEE_MISMATCH": 1}))
    assert d.statement["reconciliation"]["matched"] == 7
    assert d.statement["reconciliation"]["discrepancies"] == 3
    with pytest.raises(PackageError, match="summary"):
        draft(report=b'{"format":"finance-reconciliation/1"}')


def test_previous_link():
    prev = draft("2026-11-01").statement
    link = previous_link(prev)
    assert link == {"proof_id": prev["proof_id"],
                    "statement_sha256": hashlib.sha256(canonical_bytes(prev)).hexdigest()}
    assert draft(previous=link).statement["previous"] == link


def test_write_and_load_dir_round_trip(tmp_path):
    pkg = sign_all(draft())
    pkg.extra_files["README.txt"] = b"hello"
    pkg.write_dir(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted([*SPEC_FILES, "README.txt"])
    again = Package.load_dir(tmp_path / "p")
    assert again == pkg


def test_load_dir_names_missing_files(tmp_path):
    pkg = sign_all(draft())
    pkg.write_dir(tmp_path)
    (tmp_path / "provider_records.jsonl").unlink()
    with pytest.raises(PackageLoadError, match="provider_records.jsonl"):
        Package.load_dir(tmp_path)
    assert Package.load_dir(tmp_path, require_all=False).provider_records is None
    with pytest.raises(PackageLoadError, match="not a package folder"):
        Package.load_dir(tmp_path / "nope")


def test_package_json_refuses_oversized_statement():
    st = _statement()
    st["notes"] = "x" * MAX_STATEMENT_BYTES
    with pytest.raises(StatementTooLarge):
        package_json(st, [])


def test_prepare_accepts_leaf_dicts_like_the_extract_yields():
    entries = sample_entries()
    from_dicts = draft(entries=[e.to_leaf() for e in reversed(entries)])
    assert from_dicts == draft(entries=entries)
    with pytest.raises(PackageError, match="exactly the members"):
        draft(entries=[{"journal_id": "x"}])
    leaf = entries[0].to_leaf()
    with pytest.raises(PackageError, match="twice"):
        draft(entries=[leaf, dict(leaf, ts="2026-11-02T20:00:00Z")])
