"""The ledger leaves written column-wise (columnar/leaves.py) are the per-entry encoder's bytes:
``canonical_str`` of each entry ``entries_from_lines`` builds, whatever the frame's order."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar import leaves
from finance_pipeline.columnar.leaves import entry_leaves, entry_leaves_jsonl, format_ts_arrow
from finance_pipeline.domain.canonical import MAX_SAFE_INT, CanonicalJSONError, canonical_str
from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.ledger.extract import DTYPES, entries_from_lines
from finance_pipeline_tests.columnar.test_canonical_arrow import texts as text
from finance_pipeline_tests.perf.test_leaves_and_bundle import scenario_inputs

# --- timestamps --------------------------------------------------------------------------------

MIN_US, MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1 .. 9999


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(MIN_US, MAX_US) | st.integers(-10**15, 10**16)
                | st.integers(-62_135_596_800, 253_402_300_799).map(lambda s: s * 1_000_000), max_size=20))
def test_format_ts_arrow_is_format_ts_us(values):
    assert format_ts_arrow(np.array(values, dtype=np.int64)).to_pylist() == [format_ts_us(v) for v in values]


# --- leaves ------------------------------------------------------------------------------------

ids = st.text(alphabet=st.sampled_from("aB9-_é\U0001F600\"\\ \n") | st.characters(codec="utf-8"),
              min_size=1, max_size=10)
maybe = st.none() | text
line_st = st.fixed_dictionaries({
    "account_id": text, "direction": st.sampled_from(["debit", "credit"]),
    "amount_minor": st.integers(1, MAX_SAFE_INT), "currency": st.sampled_from(["USD", "EUR", "JPY", "KWD"]),
    "role": st.none() | st.sampled_from(["stripe_clearing", "stripe_fees", "payout_clearing", "revenue"]),
})
entry_st = st.fixed_dictionaries({
    "ts_us": st.integers(MIN_US, MAX_US) | st.integers(1_793_577_600_000_000, 1_793_577_600_000_100),
    "kind": st.sampled_from(["standard", "adjustment", "reversal"]), "memo": text, "batch_id": maybe,
    "provider": st.none() | st.sampled_from(["stripe", "payout_sandbox"]), "provider_reference": maybe,
    "reverses": maybe, "posted_by": text, "reviewed_by": maybe, "lines": st.lists(line_st, min_size=1, max_size=4),
})


def _frame(entries: list[tuple[str, dict]], seed: int, arrow: bool) -> pd.DataFrame:
    rows = []
    for jid, e in entries:
        for no, ln in enumerate(e["lines"]):
            rows.append({"journal_id": jid, "ts_us": e["ts_us"], "kind": e["kind"], "memo": e["memo"],
                         "batch_id": e["batch_id"], "provider": e["provider"],
                         "provider_reference": e["provider_reference"], "reverses": e["reverses"],
                         "posted_by": e["posted_by"], "reviewed_by": e["reviewed_by"], "line_no": no,
                         "account_id": ln["account_id"], "direction": ln["direction"],
                         "amount_minor": ln["amount_minor"], "currency": ln["currency"], "account_role": ln["role"]})
    random.Random(seed).shuffle(rows)  # the frame's row order must not matter
    frame = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in DTYPES})
    for c in ("ts_us", "line_no", "amount_minor"):
        frame[c] = frame[c].astype(np.int64)
    return frame.astype(DTYPES) if arrow else frame


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(ids, entry_st, min_size=1, max_size=8), st.integers(0, 999), st.booleans())
def test_entry_leaves_equal_the_per_entry_encoder(entries, seed, arrow):
    frame = _frame(list(entries.items()), seed, arrow)
    expected = [canonical_str(e) for e in entries_from_lines(frame)]
    assert entry_leaves(frame).to_pylist() == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(ids, entry_st, min_size=1, max_size=8), st.integers(0, 999), st.booleans(), st.data())
def test_the_ledger_file_of_a_subset_without_copying_it(entries, seed, arrow, data):
    frame = _frame(list(entries.items()), seed, arrow)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(frame), max_size=len(frame))), dtype=bool)
    expected = "".join(canonical_str(e) + "\n" for e in entries_from_lines(frame[mask])).encode()
    assert entry_leaves_jsonl(frame, mask) == expected
    assert entry_leaves_jsonl(frame) == "".join(leaf + "\n" for leaf in entry_leaves(frame).to_pylist()).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(ids, entry_st, min_size=1, max_size=8), st.booleans(), st.data())
def test_frames_already_in_file_order(entries, arrow, data):
    """The extract's own order (ts_us, journal_id, line_no): entries are runs of rows. Also with
    entries whose lines disagree on ts, repeated line numbers and a contiguous part of the frame."""
    items = list(entries.items())
    if data.draw(st.booleans()) and items:  # an entry whose second line has another instant
        jid, e = items[0]
        items.append((jid + "x", {**e, "lines": e["lines"][:1]}))
    frame = _frame(items, 0, arrow)
    if data.draw(st.booleans()):
        moved = int(frame["ts_us"].iloc[-1]) + data.draw(st.integers(-5, 5))
        frame.loc[frame.index[-1], "ts_us"] = min(max(moved, MIN_US), MAX_US)  # still a timestamp
    if data.draw(st.booleans()) and len(frame) > 1:
        frame.loc[frame.index[1], "line_no"] = frame["line_no"].iloc[0]
    frame = frame.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort").reset_index(drop=True)
    expected = [canonical_str(e) for e in entries_from_lines(frame)]
    assert entry_leaves(frame).to_pylist() == expected
    lo = data.draw(st.integers(0, len(frame) - 1))
    hi = data.draw(st.integers(lo + 1, len(frame)))
    mask = np.zeros(len(frame), dtype=bool)
    mask[lo:hi] = True
    sub = "".join(canonical_str(e) + "\n" for e in entries_from_lines(frame[mask])).encode()
    assert entry_leaves_jsonl(frame, mask) == sub


def test_leaves_are_written_in_chunks_on_two_threads(monkeypatch):
    lines, _, _ = scenario_inputs(4, True)
    in_order = lines.sort_values(["ts_us", "journal_id", "line_no"]).reset_index(drop=True)
    for frame in (lines, in_order):
        whole = entry_leaves_jsonl(frame)
        assert whole == "".join(canonical_str(e) + "\n" for e in entries_from_lines(frame)).encode()
        monkeypatch.setattr(leaves, "LEAF_CHUNK", 7)
        assert entry_leaves_jsonl(frame) == whole
        assert entry_leaves(frame).num_chunks > 2
        monkeypatch.setattr(leaves, "THREADS", 1)
        assert entry_leaves_jsonl(frame) == whole
        monkeypatch.undo()
    assert entry_leaves_jsonl(in_order) == entry_leaves_jsonl(lines)


def test_entry_leaves_refuse_amounts_beyond_2_pow_53_like_the_encoder():
    e = {"ts_us": 0, "kind": "standard", "memo": "", "batch_id": None, "provider": None,
         "provider_reference": None, "reverses": None, "posted_by": "a", "reviewed_by": None,
         "lines": [{"account_id": "x", "direction": "debit", "amount_minor": MAX_SAFE_INT + 1, "currency": "USD",
                    "role": None}]}
    frame = _frame([("j", e)], 0, True)
    with pytest.raises(CanonicalJSONError):
        [canonical_str(x) for x in entries_from_lines(frame)]
    with pytest.raises(CanonicalJSONError):
        entry_leaves(frame)


def test_entry_leaves_of_nothing():
    assert entry_leaves(_frame([], 0, True).iloc[0:0]).to_pylist() == []
