"""The bench marks issue 19's targets on its results: at 1M, the 100k Dagster ratio, and the 5M day."""

from __future__ import annotations

from bench.run import targets


def _result(**summary) -> dict:
    return {"summary": summary}


def test_the_bench_marks_issue_19s_targets():
    big = _result(core_s=20.0, verify_s=10.5, peak_rss_max_mib=3000.0, extract_lines_per_s=400_000,
                  materialize_over_floor=5.0, pipeline_total_s=80.0, materialize_s=100.0)
    small = _result(materialize_over_floor=8.1, pipeline_total_s=8.0, materialize_s=10.0)
    rows = {name: ok for name, _, ok in targets({100_000: small, 1_000_000: big})}
    assert rows["1M: recon+checks+proof+signing+publication <= 20 s"] is True
    assert rows["1M: verification <= 10 s"] is False
    assert rows["1M: peak RSS < 3 GiB"] is True
    assert rows["1M: Dagster partition <= 5x floor"] is True
    assert rows["100k: Dagster partition <= 8x floor"] is False
    # Without a Dagster run the ratios are not judged.
    rows = {name: ok for name, _, ok in targets({1_000_000: _result(
        core_s=1.0, verify_s=1.0, peak_rss_max_mib=1.0, extract_lines_per_s=1, materialize_over_floor=None)})}
    assert rows["1M: Dagster partition <= 5x floor"] is None


def test_the_large_bench_marks_completion_and_its_memory_bound():
    checks = {"ledger_file_identical": True, "discrepancies_as_injected": True, "verify_ok": True,
              "http_same_as_direct": None, "dagster_success": None}
    done = _result(core_s=300.0, verify_s=60.0, peak_rss_max_mib=6 * 1024.0, checks_ok=checks)
    rows = {name: ok for name, _, ok in targets({5_000_000: done})}
    assert rows == {"5M: completes with every correctness check": True, "5M: peak RSS <= 6 GiB": True}
    over = _result(core_s=300.0, verify_s=None, peak_rss_max_mib=6 * 1024.0 + 1,
                   checks_ok={**checks, "ledger_file_identical": False})
    rows = {name: (value, ok) for name, value, ok in targets({5_000_000: over})}
    assert rows["5M: completes with every correctness check"] == ("no ['ledger_file_identical']", False)
    assert rows["5M: peak RSS <= 6 GiB"] == ("6.00 GiB", False)
