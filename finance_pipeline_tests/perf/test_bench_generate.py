"""The bench's day built in parts (`make bench-large`) is one valid day: ids unique across parts,
the expected ledger file in the proof's order, and the bench's own stages find exactly the
injected discrepancies in it. Built whole, the day is the one earlier results were measured on."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

import bench.generate as generate  # the benchmark lives next to the package (repo root on sys.path)
from finance_pipeline.columnar.leaves import entry_leaves_jsonl
from finance_pipeline.domain.timeutil import day_bounds_us
from finance_pipeline.export.prove import extract_day
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.reconciliation import Tolerances

DAY = "2026-11-02"
ROOT = Path(generate.__file__).resolve().parent.parent


def test_a_day_built_whole_is_the_day_earlier_results_measured():
    ds = generate.build(2000, DAY, seed=3)
    leaves = [generate.leaf_text({k: v for k, v in e.items() if k != "_ts_us"}) for e in ds.entries]
    text = "\n".join(leaves) + json.dumps(ds.stripe_txns) + json.dumps(ds.creator_payouts) + json.dumps(
        ds.stripe_payouts)
    # The digest of `build` before days could be built in parts (commit bb2616d).
    assert hashlib.sha256(text.encode()).hexdigest() == \
        "40a6e166e847f712d52b5a41650dbd8084e3bec66d89c4da1474eb345fdcc918"


def _stage(stage: str, work: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.stages", stage, str(work)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((work / f"{stage}.result.json").read_text())


def test_a_day_built_in_parts_is_one_valid_day(pg_url, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"database_url": pg_url, "n": 6000, "day": DAY, "seed": 5,
                                                  "parts": 3}))
    manifest = _stage("generate", work)["manifest"]
    assert manifest["parts"] == 3 and manifest["n"] == 6000
    assert [p.name for p in generate.part_files(work, "stripe.json")] == [
        f"stripe.part-0{k}.json" for k in range(3)]
    assert not (work / "stripe.json").exists() and not list(work.glob("*.keyed"))

    # Ids are unique across the parts, in the ledger and at both providers.
    engine = create_ledger_engine(pg_url)
    try:
        lines = extract_day(engine, DAY, Tolerances(time_s=3600))
        entries = pd.read_sql("SELECT journal_id, batch_id FROM journal_entries", engine)
    finally:
        engine.dispose()
    assert len(entries) == manifest["entries_total"] == entries["journal_id"].nunique()
    assert entries["batch_id"].str.contains("-p02-").any()
    txns = [t["id"] for f in generate.part_files(work, "stripe.json")
            for t in json.loads(f.read_text())["balance_transactions"]]
    payouts = [p["payout_id"] for f in generate.part_files(work, "payouts.json")
               for p in json.loads(f.read_text())["payouts"]]
    assert len(txns) == len(set(txns)) == manifest["stripe_balance_transactions"]
    assert len(payouts) == len(set(payouts)) == manifest["creator_payouts"]

    # The merged expected file is what the proof's own encoder writes from the database.
    lo, hi = day_bounds_us(DAY)
    ts = lines["ts_us"].to_numpy()
    expected = (work / "expected_ledger_entries.jsonl").read_bytes()
    assert entry_leaves_jsonl(lines, (ts >= lo) & (ts < hi)) == expected
    assert expected.count(b"\n") == manifest["entries_in_day"]

    # The stages the bench runs find exactly the injected discrepancies, three parts' worth.
    assert set(manifest["expected_discrepancies"].values()) == {3}
    _stage("extract", work)
    providers = _stage("providers", work)
    assert providers["stripe_payouts"] > 0
    core = _stage("core", work)
    assert core["discrepancies_as_injected"] and core["ledger_file_identical"], core
    assert _stage("verify", work)["ok"]
