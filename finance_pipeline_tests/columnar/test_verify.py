"""The verifier's columnar path (columnar/verify.py): on every package, valid or tampered with,
the verdict and every check's detail are those of the per-leaf path (proof/verify.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar import verify as columnar
from finance_pipeline.domain.timeutil import TimestampError, day_bounds_us, format_ts_us, parse_ts_us
from finance_pipeline.export.prove import prove_day
from finance_pipeline.proof import verify
from finance_pipeline.proof.package import Package, package_json, statement_bytes
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline_tests.proof.helpers import keyring, signers

from finance_pipeline_tests.perf.test_leaves_and_bundle import DAY, scenario_inputs

LO, HI = day_bounds_us(DAY)


def _package(seed: int = 7) -> Package:
    lines, stripe, payouts = scenario_inputs(seed, True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, LO, HI, tol))
    bundle = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    s = statement_bytes(bundle.statement)
    doc = package_json(bundle.statement, [w.sign(s) for w in signers()[:2]])
    return Package(bundle.files["ledger_entries.jsonl"], bundle.files["provider_records.jsonl"],
                   bundle.files["reconciliation_report.json"], doc,
                   extra_files={"reconciliation_context.json": bundle.files["reconciliation_context.json"]})


@pytest.fixture(scope="module")
def good() -> Package:
    return _package()


def both_ways(pkg: Package, monkeypatch) -> tuple[dict, dict]:
    """(columnar, per-leaf) results; an exception counts as a result too. The columnar path
    runs twice: on whole files and cut in small pieces (so piece boundaries are crossed)."""
    out = []
    for enabled, piece in ((True, columnar.PIECE_BYTES), (True, 777), (False, columnar.PIECE_BYTES)):
        monkeypatch.setattr(columnar, "ENABLED", enabled)
        monkeypatch.setattr(columnar, "PIECE_BYTES", piece)
        try:
            out.append(verify.verify_package(pkg, keyring()).to_dict())
        except Exception as exc:  # noqa: BLE001 - the per-leaf path may raise; so must the other
            out.append({"raised": type(exc).__name__})
    monkeypatch.undo()
    assert out[0] == out[1]
    return out[0], out[2]


def test_a_valid_package_takes_the_columnar_path_and_passes(good, monkeypatch):
    whole = columnar.try_ledger(good.ledger_entries, LO, HI), columnar.try_providers(good.provider_records)
    assert None not in whole
    monkeypatch.setattr(columnar, "PIECE_BYTES", 777)  # the same result, piece by piece
    assert len(columnar._pieces(good.ledger_entries)) > 2 and len(columnar._pieces(good.provider_records)) > 2
    assert (columnar.try_ledger(good.ledger_entries, LO, HI), columnar.try_providers(good.provider_records)) == whole
    monkeypatch.undo()
    fast, slow = both_ways(good, monkeypatch)
    assert fast["ok"] and fast == slow


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _edit(obj_edit):
    """A mutation that parses a leaf, edits the object and writes it canonically again."""
    def apply(line: bytes) -> bytes:
        obj = json.loads(line)
        obj_edit(obj)
        # written the canonical way even where the result is no longer a valid entry
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    return apply


LEAF_EDITS = {
    "space": lambda b: b.replace(b":", b": ", 1),
    "reordered": lambda b: json.dumps(dict(reversed(list(json.loads(b).items()))), separators=(",", ":"),
                                      ensure_ascii=False).encode(),
    "ascii_escapes": lambda b: json.dumps(json.loads(b), separators=(",", ":"), sort_keys=True).encode(),
    "invalid_utf8": lambda b: b[:-2] + b"\xff" + b[-2:],
    "crlf": lambda b: b + b"\r",
    "not_json": lambda b: b[:-1],
    "extra_member": _edit(lambda o: o.__setitem__("zz", 1)),
    "missing_member": _edit(lambda o: o.pop("reviewed_by")),
    "ts_zero_digits": _edit(lambda o: o.update(ts=o["ts"][:-1] + ("000Z" if "." in o["ts"] else ".000000Z"))),
    "ts_offset": _edit(lambda o: o.__setitem__("ts", o["ts"].replace("Z", "+00:00"))),
    "ts_outside": _edit(lambda o: o.__setitem__("ts", "2026-11-03T00:00:00Z")),
    "ts_invalid_date": _edit(lambda o: o.__setitem__("ts", "2026-02-30T00:00:00Z")),
    "kind": _edit(lambda o: o.__setitem__("kind", "other")),
    "reversal_without_target": _edit(lambda o: o.update(kind="reversal", reverses=None)),
    "reverses_itself": _edit(lambda o: o.update(kind="reversal", reverses=o["journal_id"])),
    "standard_with_target": _edit(lambda o: o.update(reverses="x")),
    "adjustment_unreviewed": _edit(lambda o: o.update(kind="adjustment", reviewed_by=None)),
    "adjustment_self_reviewed": _edit(lambda o: o.update(kind="adjustment", reviewed_by=o["posted_by"])),
    "adjustment_reviewed": _edit(lambda o: o.update(kind="adjustment", reviewed_by="someone else")),
    "empty_reviewer": _edit(lambda o: o.update(reviewed_by="")),
    "empty_memo": _edit(lambda o: o.update(memo="")),
    "empty_batch": _edit(lambda o: o.update(batch_id="")),
    "long_id": _edit(lambda o: o.update(journal_id="j" * 65)),
    "id_64": _edit(lambda o: o.update(journal_id="\U0001F600" * 64)),
    "provider": _edit(lambda o: o.update(provider="paypal")),
    "ref_without_provider": _edit(lambda o: o.update(provider=None, provider_reference="x")),
    "empty_ref": _edit(lambda o: o.update(provider_reference="")),
    "empty_poster": _edit(lambda o: o.update(posted_by="")),
    "one_line": _edit(lambda o: o.update(lines=o["lines"][:1])),
    "no_lines": _edit(lambda o: o.update(lines=None)),
    "null_line": _edit(lambda o: o["lines"].__setitem__(0, None)),
    "unbalanced": _edit(lambda o: o["lines"][0].update(amount_minor=o["lines"][0]["amount_minor"] + 1)),
    "zero_amount": _edit(lambda o: [ln.update(amount_minor=0) for ln in o["lines"]]),
    "huge_amount": _edit(lambda o: o["lines"][0].update(amount_minor=2**53)),
    "float_amount": lambda b: b.replace(b'"amount_minor":', b'"amount_minor":0.5e1+', 1),
    "bool_amount": _edit(lambda o: o["lines"][0].update(amount_minor=True)),
    "lower_currency": _edit(lambda o: [ln.update(currency=ln["currency"].lower()) for ln in o["lines"]]),
    "unknown_currency": _edit(lambda o: [ln.update(currency="XXX") for ln in o["lines"]]),
    "direction": _edit(lambda o: o["lines"][0].update(direction="up")),
    "empty_account": _edit(lambda o: o["lines"][0].update(account_id="")),
    "line_member": _edit(lambda o: o["lines"][0].update(memo="x")),
    "memo_number": _edit(lambda o: o.update(memo=5)),
    "top_level_array": lambda b: b"[" + b + b"]",
}
FILE_EDITS = {
    "swap": lambda ls, i: ls[:i] + ls[i + 1:i + 2] + ls[i:i + 1] + ls[i + 2:],
    "duplicate": lambda ls, i: ls[:i + 1] + ls[i:],
    "drop": lambda ls, i: ls[:i] + ls[i + 1:],
    "blank": lambda ls, i: ls[:i] + [b""] + ls[i:],
}


@pytest.mark.parametrize("name", sorted(LEAF_EDITS))
def test_each_leaf_edit_gets_the_same_verdict(good, monkeypatch, name):
    lines = _lines(good.ledger_entries)
    for i in (0, len(lines) // 2, len(lines) - 1):
        edited = list(lines)
        edited[i] = LEAF_EDITS[name](edited[i])
        fast, slow = both_ways(Package(_join(edited), good.provider_records, good.reconciliation_report,
                                       good.proof_package), monkeypatch)
        assert fast == slow, (name, i)


@pytest.mark.parametrize("name", sorted(FILE_EDITS))
def test_each_file_edit_gets_the_same_verdict(good, monkeypatch, name):
    lines = _lines(good.ledger_entries)
    for i in (0, 3, len(lines) - 2):
        data = _join(FILE_EDITS[name](list(lines), i))
        fast, slow = both_ways(Package(data, good.provider_records, good.reconciliation_report,
                                       good.proof_package), monkeypatch)
        assert fast == slow, (name, i)
        data = _join(FILE_EDITS[name](_lines(good.provider_records), i))
        fast, slow = both_ways(Package(good.ledger_entries, data, good.reconciliation_report,
                                       good.proof_package), monkeypatch)
        assert fast == slow, (name, i)


def test_an_id_used_again_at_a_later_instant_gets_the_same_verdict(good, monkeypatch):
    """Not next to each other, so the order check cannot see it: only the ids' count can."""
    lines = _lines(good.ledger_entries)
    first = json.loads(lines[0])["journal_id"]
    for i in (3, len(lines) - 1):
        edited = list(lines)
        edited[i] = _edit(lambda o: o.update(journal_id=first))(edited[i])
        assert json.loads(edited[i])["ts"] > json.loads(lines[0])["ts"]
        data = _join(edited)
        assert columnar.try_ledger(data, LO, HI) is None
        fast, slow = both_ways(Package(data, good.provider_records, good.reconciliation_report,
                                       good.proof_package), monkeypatch)
        assert fast == slow and not fast["ok"]


def test_ids_whose_hashes_collide_are_left_to_the_per_leaf_path(good, monkeypatch):
    """Every id given the same hash: the columnar path does not decide, and the per-leaf path
    gives the verdict (the package passes; a repeated id is found)."""
    import numpy as np

    from finance_pipeline.columnar import hashing

    assert columnar.try_ledger(good.ledger_entries, LO, HI) is not None
    monkeypatch.setattr(hashing, "text_hashes", lambda texts: np.zeros(len(texts), dtype=np.uint64))
    assert columnar.try_ledger(good.ledger_entries, LO, HI) is None
    assert verify.verify_package(good, keyring()).ok
    lines = _lines(good.ledger_entries)
    lines[3] = _edit(lambda o: o.update(journal_id=json.loads(lines[0])["journal_id"]))(lines[3])
    result = verify.verify_package(Package(_join(lines), good.provider_records, good.reconciliation_report,
                                           good.proof_package), keyring())
    assert not result.ok


def test_truncated_files_get_the_same_verdict(good, monkeypatch):
    for cut in (1, 2, 17):
        for attr in ("ledger_entries", "provider_records"):
            data = getattr(good, attr)[:-cut]
            changed = Package(**{**good.__dict__, attr: data})
            fast, slow = both_ways(changed, monkeypatch)
            assert fast == slow


PROVIDER_EDITS = {
    "space": lambda b: b.replace(b":", b": ", 1),
    "no_provider": _edit(lambda o: o.pop("provider")),
    "numeric_id": _edit(lambda o: o.update(id=5)),
    "float": lambda b: b[:-1] + b',"zz":1.5}',
    "huge": _edit(lambda o: o.update(zz=2**60)),
    "nested_dup": lambda b: b[:-1] + b',"zz":{"a":1,"a":1}}',
    "invalid_utf8": lambda b: b[:-2] + b"\xff" + b[-2:],
    "timestamp_like": _edit(lambda o: o.update(zz="2026-11-02T10:00:00Z")),
    "missing_optional": _edit(lambda o: o.pop("exchange_rate", None) if "exchange_rate" in o else o.pop("status")),
}


@pytest.mark.parametrize("name", sorted(PROVIDER_EDITS))
def test_each_provider_record_edit_gets_the_same_verdict(good, monkeypatch, name):
    lines = _lines(good.provider_records)
    for i in (0, len(lines) // 2, len(lines) - 1):
        edited = list(lines)
        edited[i] = PROVIDER_EDITS[name](edited[i])
        fast, slow = both_ways(Package(good.ledger_entries, _join(edited), good.reconciliation_report,
                                       good.proof_package), monkeypatch)
        assert fast == slow, (name, i)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_combinations_of_edits(good, monkeypatch, data):
    lines = _lines(good.ledger_entries)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()):
            try:
                lines[i] = LEAF_EDITS[data.draw(st.sampled_from(sorted(LEAF_EDITS)))](lines[i])
            except (ValueError, TypeError, AttributeError, KeyError, IndexError):
                pass  # an edit that needs a JSON object, on a line an earlier edit mangled
        else:
            lines = FILE_EDITS[data.draw(st.sampled_from(sorted(FILE_EDITS)))](lines, min(i, len(lines) - 2))
    fast, slow = both_ways(Package(_join(lines), good.provider_records, good.reconciliation_report,
                                   good.proof_package), monkeypatch)
    assert fast == slow


def test_other_days_and_seeds_pass_both_ways(monkeypatch):
    for seed in (1, 2, 3):
        pkg = _package(seed)
        fast, slow = both_ways(pkg, monkeypatch)
        assert fast["ok"] and fast == slow


# --- the ts column ------------------------------------------------------------------------------

YEAR_1000, YEAR_9999 = parse_ts_us("1000-01-01T00:00:00Z"), parse_ts_us("9999-12-31T23:59:59.999999Z")


def _reference_ts(text: str) -> int | None:
    """The instant when ``text`` is exactly ``format_ts_us`` of it (years 1000 on, the ones the
    columnar reader takes); else None."""
    try:
        value = parse_ts_us(text)
    except (TimestampError, OverflowError):
        return None
    return value if format_ts_us(value) == text and text[:4] >= "1000" else None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(YEAR_1000, YEAR_9999) | st.integers(YEAR_1000, YEAR_9999).map(lambda v: v // 10**6 * 10**6),
                max_size=8),
       st.lists(st.tuples(st.integers(0, 26), st.sampled_from("0123456789-:TZ.+ 5"), st.sampled_from("sid")),
                max_size=2),
       st.booleans(), st.data())
def test_the_canonical_ts_reader_is_format_ts_us_read_back(values, edits, large, data):
    texts = [format_ts_us(v) for v in values]
    for at, char, how in edits if texts else ():
        i = data.draw(st.integers(0, len(texts) - 1))
        s = texts[i]
        texts[i] = {"s": s[:at] + char + s[at + 1:], "i": s[:at] + char + s[at:], "d": s[:at] + s[at + 1:]}[how]
    got = columnar._canonical_ts_us(pa.array(texts, pa.large_string() if large else pa.string()))
    expected = [_reference_ts(s) for s in texts]
    assert (None if got is None else got.tolist()) == (None if None in expected else expected)
