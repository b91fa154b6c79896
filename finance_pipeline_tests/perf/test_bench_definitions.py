"""The bench's Dagster stage builds the code location's assets and resources as the code
location does, with the parity policy tolerating the injected discrepancies."""

from __future__ import annotations

from bench.stages import _definitions


def test_the_bench_definitions_load_with_the_tolerated_discrepancies(tmp_path, monkeypatch):
    monkeypatch.setenv("FP_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FP_PARTITIONS_START", "2026-11-02")
    defs = _definitions("2026-11-02", {"LEDGER_MISSING": 3})
    job = defs.resolve_implicit_global_asset_job_def()
    assert {"ledger_extract", "reconcile_day", "proof_package"} <= {n.name for n in job.graph.nodes}
    assert defs.resources["recon"].max_allowed == {"LEDGER_MISSING": 3}
