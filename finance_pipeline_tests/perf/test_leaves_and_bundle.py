"""The Merkle tree over a file and the proof bundle: the fast paths give the same bytes (the
leaves' own tests are in finance_pipeline_tests/columnar)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.demo.scenario import DISCREPANCY_CLASSES, build_scenario
from finance_pipeline.domain.canonical import MAX_SAFE_INT, canonical_bytes, canonical_str
from finance_pipeline.domain.journal import entry_from_leaf
from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.columnar import files as columnar_files
from finance_pipeline.columnar.files import context_bytes, provider_records_file
from finance_pipeline.export.bundle import context_document, provider_records
from finance_pipeline.export.prove import prove_day
from finance_pipeline.ledger.extract import DTYPES, entries_from_lines
from finance_pipeline.proof import package as pkg
from finance_pipeline.proof.package import CONTEXT_FILE, LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE
from finance_pipeline.proof.merkle import tree_head, tree_head_and_size_of_lines, tree_head_of_lines
from finance_pipeline.providers.payout_pull import settlements_frame
from finance_pipeline.providers.stripe_pull import balance_transactions_frame
from finance_pipeline.reconciliation import Tolerances, build_report, reconcile
from finance_pipeline.reconciliation.inputs import LINE_COLUMNS, lines_frame
from finance_pipeline.sandboxes.payout_sandbox import normalise_payout, settlement_of
from finance_pipeline_tests.columnar.test_canonical_arrow import texts
from finance_pipeline_tests.proof.reference_builder import statement_of_leaves

maybe = st.none() | texts


# --- Merkle tree over a file, statement from a file ---------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=6) | st.sampled_from([b"", b"\n", b"\n\n"]), max_size=40).map(b"".join))
def test_tree_head_of_lines_is_tree_head_of_split_lines(data):
    leaves = pkg.split_lines(data)
    assert tree_head_of_lines(data) == tree_head(leaves)
    assert tree_head_and_size_of_lines(data) == (tree_head(leaves), len(leaves))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=4) | st.sampled_from([b"", b"\n", b"\n\n"]), max_size=60).map(b"".join),
       st.sampled_from([1, 2, 4, 8, 16]))
def test_tree_head_of_lines_in_small_blocks(data, block):
    """Subtrees of a block of leaves at a time (a power of two) give the same tree at every
    block size: full blocks, a shorter last one, and one block for the whole file."""
    from finance_pipeline.proof import merkle

    leaves = pkg.split_lines(data)
    saved = merkle.BLOCK, merkle.SCAN_BYTES
    try:
        for scan in (saved[1], 1, 3):  # newlines searched for a few bytes at a time too
            merkle.BLOCK, merkle.SCAN_BYTES = block, scan
            assert tree_head_and_size_of_lines(data) == (tree_head(leaves), len(leaves))
    finally:
        merkle.BLOCK, merkle.SCAN_BYTES = saved


def test_tree_head_of_lines_in_blocks_at_every_size_up_to_four_blocks(monkeypatch):
    from finance_pipeline.proof import merkle

    for block in (1, 2, 4, 8):
        monkeypatch.setattr(merkle, "BLOCK", block)
        for n in range(1, 4 * block + 2):
            leaves = [b"leaf %d" % i for i in range(n)]
            assert tree_head_and_size_of_lines(pkg.ledger_entries_bytes(leaves)) == (tree_head(leaves), n)
    monkeypatch.setattr(merkle, "BLOCK", 6)
    with pytest.raises(ValueError, match="BLOCK must be a power of two"):
        tree_head_and_size_of_lines(b"a\nb\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\n" not in b), max_size=30))
def test_statement_for_the_written_file_is_the_statement_for_the_leaves(leaves):
    args = dict(day="2026-11-02", ledger_lines=2 * len(leaves), totals=[], provider_records_bytes=b"",
                provider_records=0, report_bytes=b"{}", matched=0, discrepancies=0, previous=None,
                extra={"reconciliation": {"context_sha256": "0" * 64}})
    data = pkg.ledger_entries_bytes(leaves)
    expected = statement_of_leaves(ledger_leaves=leaves, **args)
    assert pkg.build_statement(ledger_file=data, **args) == expected
    # With the tree head and size its caller computed, the file is not scanned again.
    root, size = tree_head_and_size_of_lines(data)
    assert pkg.build_statement(ledger_file=data, merkle_root=root, ledger_entries=size, **args) == expected


@pytest.mark.parametrize("bad", [b"a", b"\na\n", b"a\n\nb\n"])
def test_a_malformed_ledger_file_is_refused(bad):
    args = dict(day="2026-11-02", ledger_file=bad, ledger_lines=0, totals=[], provider_records_bytes=b"",
                provider_records=0, report_bytes=b"{}", matched=0, discrepancies=0, previous=None)
    with pytest.raises(pkg.PackageError):
        pkg.build_statement(**args)
    # With the count given, the checks that cost nothing still run (an empty line in the
    # middle is left to the self-verification, which reads every line).
    if bad != b"a\n\nb\n":
        with pytest.raises(pkg.PackageError):
            pkg.build_statement(**args, ledger_entries=2)
    with pytest.raises(pkg.PackageError):
        pkg.build_statement(**{**args, "ledger_file": b""}, ledger_entries=1)


# --- the bundle --------------------------------------------------------------------------------

DAY = "2026-11-02"


def reference_bundle(day, lines, stripe, payouts, report, tol, previous):
    """prove_day as it was written before the columnar paths: entry by entry, record by record."""
    lo, hi = day_bounds_us(day)
    in_day = lines[(lines["ts_us"] >= lo) & (lines["ts_us"] < hi)]
    entries = entries_from_lines(in_day)
    leaves = [canonical_bytes(e) for e in entries]
    ledger_bytes = pkg.ledger_entries_bytes(leaves)
    records = provider_records(stripe, payouts)
    provider_bytes = pkg.provider_records_bytes(records)
    report_bytes = canonical_bytes(report)
    ctx = canonical_bytes(context_document(day, lines, tol))
    summary = report["summary"]
    statement = statement_of_leaves(
        day=day, ledger_leaves=leaves, ledger_lines=len(in_day),
        totals=pkg.ledger_totals(entry_from_leaf(e) for e in entries),
        provider_records_bytes=provider_bytes, provider_records=len(records), report_bytes=report_bytes,
        matched=int(summary["matched"]), discrepancies=int(sum(summary["discrepancies"].values())),
        previous=previous, extra={"reconciliation": {"context_sha256": hashlib.sha256(ctx).hexdigest()}},
    )
    return statement, {LEDGER_FILE: ledger_bytes, PROVIDERS_FILE: provider_bytes, REPORT_FILE: report_bytes,
                       CONTEXT_FILE: ctx}


def scenario_inputs(seed: int, arrow: bool, days: int = 3, inject: int = 1):
    """A demo marketplace (every discrepancy class injected) as the pipeline's frames."""
    from datetime import date

    sc = build_scenario(date(2026, 11, 1), days, seed, inject=inject, charges_per_day=15)
    roles = {a["account_id"]: a["role"] for a in sc.accounts}
    lines = lines_frame(sc.entries, roles)
    if arrow:
        lines = lines.astype(DTYPES)[list(LINE_COLUMNS)]
    stripe = balance_transactions_frame(sc.stripe_balance_transactions)
    payouts = [normalise_payout({k: v for k, v in p.items() if k not in ("stuck", "initiated_by", "approvals")},
                                "test") for p in sc.creator_payouts]
    records = [settlement_of(p) for p in payouts if p["status"] != "pending"]
    records += [p for p in payouts if p["status"] == "pending"]
    return lines, stripe, settlements_frame(records)


@pytest.mark.parametrize("seed", [7, 11])
@pytest.mark.parametrize("arrow", [True, False])
def test_bundle_is_byte_identical_to_the_reference(seed, arrow):
    lines, stripe, payouts = scenario_inputs(seed, arrow)
    lo, hi = day_bounds_us(DAY)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, lo, hi, tol))
    assert sum(report["summary"]["discrepancies"].values()) >= len(DISCREPANCY_CLASSES) // 3
    previous = {"proof_id": "fp1-20261101-" + "a" * 24, "statement_sha256": "b" * 64}
    bundle = prove_day(DAY, lines, stripe, payouts, report, tol, previous)
    statement, files = reference_bundle(DAY, lines, stripe, payouts, report, tol, previous)
    assert bundle.statement == statement
    assert bundle.files == files


class _Source:
    """A stored frame as the proof step gets it: read on demand, these of its columns it has."""

    def __init__(self, frame: pd.DataFrame):
        self.frame, self.asked = frame, []

    def read(self, columns=None) -> pd.DataFrame:
        self.asked.append(columns)
        return self.frame if columns is None else self.frame[[c for c in columns if c in self.frame]]


def test_bundle_from_sources_is_the_bundle_from_frames():
    lines, stripe, payouts = scenario_inputs(7, True)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    expected = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    sources = [_Source(lines), _Source(stripe), _Source(_stored_before_records(payouts))]
    bundle = prove_day(DAY, *sources, report, tol, None)
    assert bundle.statement == expected.statement and bundle.files == expected.files
    # Each read once; the pulls only for what the provider file needs (`raw`: older frames).
    pulls = [("provider", "id", "record", "raw")]
    assert [s.asked for s in sources] == [[None], pulls, pulls]


@pytest.mark.parametrize("in_file_order", [False, True])
def test_bundle_from_stored_parquet_files_with_many_row_groups(tmp_path, monkeypatch, in_file_order):
    """As the proof step reads them: Parquet files, texts split over row groups (Arrow chunks);
    an extract in file order read in pieces across row groups, another one whole."""
    from finance_pipeline.defs.io_managers import StoredFrame
    from finance_pipeline.export import prove

    lines, stripe, payouts = scenario_inputs(11, True)
    if in_file_order:
        lines = lines.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort", ignore_index=True)
    monkeypatch.setattr(prove, "LEDGER_PIECE_LINES", 7)
    in_pieces, built = prove._ledger_in_pieces, []

    def spy(*args):
        out = in_pieces(*args)
        built.append(out)
        return out

    monkeypatch.setattr(prove, "_ledger_in_pieces", spy)
    tol = Tolerances()
    report = build_report(reconcile(lines, stripe, payouts, *day_bounds_us(DAY), tol))
    expected = prove_day(DAY, lines, stripe, payouts, report, tol, None)
    sources = []
    for name, frame in (("lines", lines), ("stripe", stripe), ("payouts", payouts)):
        path = tmp_path / f"{name}.parquet"
        frame.to_parquet(path, index=False, row_group_size=5)
        sources.append(StoredFrame(name, open(path, "rb")))  # noqa: SIM115
    assert len(stripe) > 10
    bundle = prove_day(DAY, *sources, report, tol, None)
    assert bundle.statement == expected.statement and bundle.files == expected.files
    assert len(built) == (1 if in_file_order else 0)  # out of order: given up, read whole


@pytest.mark.parametrize("chunk", [None, 2])
def test_context_bytes_are_the_context_documents_bytes(chunk, monkeypatch):
    if chunk:  # the boundary entries written two at a time
        monkeypatch.setattr(columnar_files, "RECORD_CHUNK", chunk)
    lines, _, _ = scenario_inputs(3, True)
    tol = Tolerances(time_s=7200, amount_minor=2, per_class_minor={"FEE_MISMATCH": 1})
    for day in ("2026-11-01", DAY, "2026-11-03", "2026-11-09"):
        assert context_bytes(day, lines, tol) == canonical_bytes(context_document(day, lines, tol))
    lo, hi = day_bounds_us(DAY)
    inside = lines[(lines["ts_us"] >= lo) & (lines["ts_us"] < hi)]
    outside = lines[~lines.index.isin(inside.index)]
    assert len(inside) and outside["provider"].notna().sum() > 1
    # No boundary entries, and exactly one.
    one = pd.concat([inside, outside[outside["journal_id"] == outside["journal_id"][outside["provider"].notna()].iloc[0]]])
    for part in (inside, one):
        assert context_bytes(DAY, part, tol) == canonical_bytes(context_document(DAY, part, tol))
    assert b'"boundary_entries":[]' in context_bytes(DAY, inside, tol)


def _stored_before_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as an earlier version stored it: the record alone (``raw``), no ``record``."""
    out = frame.drop(columns=["record"])
    raws = []
    for text in frame["record"]:
        record = json.loads(text)
        del record["provider"]
        raws.append(canonical_str(record))
    out["raw"] = pd.Series(raws, dtype=frame["record"].dtype)
    return out


def test_provider_file_from_frames_stored_by_an_earlier_version():
    _, stripe, payouts = scenario_inputs(5, True)
    whole = provider_records_file(stripe, payouts)
    records = provider_records(stripe, payouts)
    assert whole == (pkg.provider_records_bytes(records), len(records))
    old = _stored_before_records(stripe)
    assert provider_records(old, payouts) == records
    assert provider_records_file(old, payouts) == whole
    assert provider_records_file(old, _stored_before_records(payouts)) == whole


def test_provider_file_in_either_frame_order_and_out_of_order_rows():
    _, stripe, payouts = scenario_inputs(5, True)
    whole = provider_records_file(stripe, payouts)
    assert provider_records_file(payouts, stripe) == whole
    shuffled = stripe.iloc[::-1].reset_index(drop=True)
    assert provider_records_file(shuffled, payouts) == whole


def test_provider_file_written_a_few_records_at_a_time(monkeypatch):
    _, stripe, payouts = scenario_inputs(5, True)
    records = provider_records(stripe, payouts)
    expected = (pkg.provider_records_bytes(records), len(records))
    monkeypatch.setattr(columnar_files, "RECORD_CHUNK", 3)
    assert len(stripe) > 3 * 3
    assert provider_records_file(stripe, payouts) == expected  # in order: the texts as they are
    assert provider_records_file(stripe.iloc[::-1].reset_index(drop=True), payouts) == expected  # sorted
    # As a stored frame comes back: its texts in several Arrow chunks (Parquet row groups).
    half = len(stripe) // 2
    chunked = pa.concat_tables([pa.Table.from_pandas(f.reset_index(drop=True), preserve_index=False)
                                for f in (stripe.iloc[:half], stripe.iloc[half:])]).to_pandas()
    assert pa.array(chunked["record"]).num_chunks == 2
    assert provider_records_file(chunked, payouts) == expected
    assert provider_records_file(chunked.iloc[::-1].reset_index(drop=True), payouts) == expected


def test_a_record_text_that_is_not_canonical_does_not_verify():
    """The bundle takes the pulls' record texts as they are; a stored frame altered to hold
    one that is not canonical gives a file the verifier refuses, so it is never published."""
    from finance_pipeline.columnar.verify import try_providers

    _, stripe, payouts = scenario_inputs(5, True)
    assert try_providers(provider_records_file(stripe, payouts)[0]) == len(stripe) + len(payouts)
    odd = stripe.copy()
    odd["record"] = pd.Series([json.dumps(json.loads(r), indent=1).replace("\n", "") if i == 2 else r
                               for i, r in enumerate(stripe["record"])], dtype=stripe["record"].dtype)
    data, count = provider_records_file(odd, payouts)
    assert try_providers(data) is None
    # The full check, as the verifier runs it when the fast path declines: the line is refused.
    from finance_pipeline.proof.verify import _provider_checks, _Run

    run = _Run()
    _provider_checks(run, data, {"providers": {"file_sha256": pkg.sha256_hex(data), "records": count}}, True)
    order = next(c for c in run.checks if c.name == "providers.order")
    assert not order.ok and "not RFC 8785 canonical JSON" in order.detail


def test_provider_file_errors_are_the_reference_errors():
    _, stripe, payouts = scenario_inputs(5, True)
    old = _stored_before_records(stripe)
    old["raw"] = pd.Series([r[:-1] + ',"provider":"x"}' if i == 4 else r for i, r in enumerate(old["raw"])],
                           dtype=old["raw"].dtype)
    with pytest.raises(ValueError, match="already has a 'provider' member"):
        provider_records_file(old, payouts)
    twice = pd.concat([stripe, stripe.iloc[:1]], ignore_index=True)
    with pytest.raises(pkg.PackageError, match="appears twice"):
        provider_records_file(twice, payouts)
    assert provider_records_file(stripe.iloc[0:0], payouts.iloc[0:0]) == (b"", 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=6), "n": st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
     "t": texts, "d": st.none() | st.lists(st.fixed_dictionaries({"a": st.integers(0, 9), "b": maybe}), max_size=2)},
    optional={"o": maybe}), min_size=1, max_size=12, unique_by=lambda r: r["id"]))
def test_provider_file_on_random_records(records):
    records = sorted(records, key=lambda r: r["id"])
    frame = pd.DataFrame({"provider": pd.Series(["stripe"] * len(records), dtype="str"),
                          "id": pd.Series([r["id"] for r in records], dtype="str"),
                          "record": pd.Series([canonical_str({**r, "provider": "stripe"}) for r in records],
                                              dtype="str")})
    empty = frame.iloc[0:0]
    expected = [{**r, "provider": "stripe"} for r in records]
    assert provider_records(frame, empty) == expected
    assert provider_records_file(frame, empty) == (pkg.provider_records_bytes(expected), len(expected))
    assert provider_records_file(_stored_before_records(frame), empty) == provider_records_file(frame, empty)


def test_arrow_and_object_frames_agree():
    a = scenario_inputs(9, True)
    b = scenario_inputs(9, False)
    tol = Tolerances()
    ra = build_report(reconcile(*a, *day_bounds_us(DAY), tol))
    rb = build_report(reconcile(*b, *day_bounds_us(DAY), tol))
    assert ra == rb
    assert prove_day(DAY, *a, ra, tol, None).files == prove_day(DAY, *b, rb, tol, None).files
    assert pa.array(a[0]["journal_id"]).type in (pa.large_string(), pa.string())




def _streamed(stripe: pd.DataFrame, payouts: pd.DataFrame, *more: pd.DataFrame, rows: int = 4, texts=None):
    """The provider file by ``streamed_file_plan`` and ``write_streamed_file``, the Stripe
    pull's texts ``rows`` at a time (or ``texts``), as the proof step writes it."""
    if texts is None:
        texts = (stripe["record"].iloc[at:at + rows] for at in range(0, len(stripe), rows))
    plan = columnar_files.streamed_file_plan(stripe[["provider", "id"]], payouts, *more)
    return None if plan is None else columnar_files.write_streamed_file(plan, texts)


@pytest.mark.parametrize("rows", [1, 4, 1000])
def test_provider_file_from_the_stripe_pull_in_pieces(rows):
    _, stripe, payouts = scenario_inputs(5, True)
    stripe = stripe.sort_values("id", ignore_index=True)  # as the pull stores it
    whole = provider_records_file(stripe, payouts)
    assert _streamed(stripe, payouts, rows=rows) == whole
    # Balance transactions fetched for payouts, after the pull's ids: still in order.
    late = stripe.iloc[-2:].assign(id=lambda f: "zz" + f["id"])
    assert _streamed(stripe, payouts, late, rows=rows) == provider_records_file(stripe, payouts, late)
    assert _streamed(stripe.iloc[0:0], payouts, rows=rows) == provider_records_file(stripe.iloc[0:0], payouts)


def test_a_stripe_pull_it_cannot_stream_is_left_to_the_whole_frame():
    _, stripe, payouts = scenario_inputs(5, True)
    stripe = stripe.sort_values("id", ignore_index=True)
    # Out of order, a fetched record among the pull's ids, a text missing, texts short of the ids.
    assert _streamed(stripe.iloc[::-1].reset_index(drop=True), payouts) is None
    assert _streamed(stripe, payouts, stripe.iloc[1:2].assign(id=lambda f: f["id"] + "0")) is None
    gap = stripe.copy()
    gap.loc[3, "record"] = None
    assert _streamed(gap, payouts) is None
    assert _streamed(stripe, payouts, texts=iter([stripe["record"].iloc[:-1]])) is None
