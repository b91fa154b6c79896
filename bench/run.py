"""`make bench`: a day of N journal entries, measured stage by stage, against the floor.

    python -m bench.run --sizes 100000,1000000 [--http-max 100000] [--no-dagster] [--tag NAME]

Per size: a fresh PostgreSQL database is filled with a generated day (`bench.generate`), then
every stage runs in its own child process (`bench.stages`) so each reports its own peak RSS:
ledger extract, provider frames, provider pulls over HTTP (sizes up to ``--http-max``),
reconciliation + GX checks + proof + signing + local publication (one process), verification
(a fresh process) and the whole partition through Dagster. Two references are timed in the
same run: `psql \\copy` of the extract's rows to a file and `sha256sum` of the published
`ledger_entries.jsonl` - together the floor no implementation can beat.

Results: `bench/results/<size>.json` (or `<size>.<tag>.json`) and a table on stdout. The
admin URL of PostgreSQL comes from ``FP_BENCH_PG_ADMIN_URL`` (default: the local server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from finance_pipeline.proof.package import LEDGER_FILE

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DAY = "2026-11-02"
ADMIN_URL = os.environ.get("FP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
GIB = 1024.0

# Targets of issue 19 (2 cores, 24 GiB), at 1M entries unless named; the extract's from issue 14.
TARGET_CORE_S = 20.0           # reconciliation + checks + proof + signing + local publication
TARGET_VERIFY_S = 10.0
TARGET_PEAK_RSS_MIB = 3 * GIB
TARGET_EXTRACT_LINES_PER_S = 300_000
TARGET_SCALING = 12.0          # 1M run / 100k run
TARGET_FLOOR_FACTOR = 5.0      # whole partition / (psql \copy + sha256sum)
TARGET_FLOOR_FACTOR_100K = 8.0
LARGE = 5_000_000              # `make bench-large`: the day completes, every check, in bounded memory
TARGET_LARGE_PEAK_RSS_MIB = 6 * GIB
# Days above this are generated in parts of at most this many entries (the generator's memory).
PART_ENTRIES = 500_000


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fresh_database(name: str) -> str:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_stage(stage: str, work: Path, timeout: float) -> dict[str, Any]:
    log(f"{work.name}: {stage} ...")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.stages", stage, str(work)], cwd=ROOT,
                          timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        log(f"{stage} failed:\n{proc.stderr[-4000:]}")
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed",
                "wall_s": round(wall, 2)}
    result = json.loads((work / f"{stage}.result.json").read_text())
    result["wall_s"] = round(wall, 2)
    log(f"{work.name}: {stage} done in {wall:.1f} s")
    return result


def psql_copy(database_url: str, day: str, out: Path) -> float:
    """`psql \\copy` of exactly the rows the extract reads (the same join and columns, in the
    order the server gives them, as the extract's COPY asks for them), to a CSV file."""
    from sqlalchemy.dialects import postgresql

    from finance_pipeline.domain.timeutil import day_bounds_us
    from finance_pipeline.ledger.extract import _SPEC, _statement

    lo, hi = day_bounds_us(day)
    stmt = _statement("postgresql", lo - 3600_000_000, hi + 3600_000_000,
                      [col for _, col, _ in _SPEC]).order_by(None)
    sql = " ".join(str(stmt.compile(dialect=postgresql.dialect(),
                                    compile_kwargs={"literal_binds": True})).split())
    url = sa.engine.make_url(database_url)
    cmd = ["psql", "-X", "-q", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
           "-U", url.username or "postgres", "-d", url.database,
           "-c", f"\\copy ({sql}) TO '{out}' WITH (FORMAT csv)"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PGPASSWORD": url.password or ""})
    return time.perf_counter() - t0


def sha256sum(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _s(result: dict, *steps: str) -> float | None:
    secs = result.get("seconds") or {}
    if any(s not in secs for s in steps):
        return None
    return round(sum(secs[s] for s in steps), 3)


def bench_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    work = RESULTS / f"work-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db = f"fp_bench_{n}"
    url = fresh_database(db)
    parts = max(1, -(-n // PART_ENTRIES)) if n > 1_000_000 else 1
    (work / "config.json").write_text(json.dumps({"database_url": url, "n": n, "day": DAY, "seed": args.seed,
                                                  "parts": parts}))
    stages: dict[str, Any] = {}
    try:
        for stage in ("generate", "extract", "providers"):
            stages[stage] = run_stage(stage, work, args.timeout)
            if "error" in stages[stage]:
                raise RuntimeError(f"{stage}: {stages[stage]['error']}")
        if n <= args.http_max and parts == 1:  # the sandboxes serve a day generated whole
            stages["http"] = run_stage("http", work, args.timeout)
        stages["core"] = run_stage("core", work, args.timeout)
        if "error" not in stages["core"]:
            stages["verify"] = run_stage("verify", work, args.timeout)
        refs: dict[str, float] = {}
        log(f"work-{n}: references (psql \\copy, sha256sum) ...")
        refs["psql_copy_s"] = round(psql_copy(url, DAY, work / "psql_copy.csv"), 3)
        ledger_file = Path(stages["core"].get("location", work)) / LEDGER_FILE
        if ledger_file.exists():
            refs["sha256sum_s"] = round(sha256sum(ledger_file), 3)
            refs["floor_s"] = round(refs["psql_copy_s"] + refs["sha256sum_s"], 3)
        (work / "psql_copy.csv").unlink(missing_ok=True)
        if not args.no_dagster and parts == 1:
            stages["dagster"] = run_stage("dagster", work, args.timeout)
    finally:
        if not args.keep:
            drop_database(db)
    result = {"size": n, "day": DAY, "tag": args.tag, "machine": {"cpus": os.cpu_count()},
              "manifest": stages["generate"].get("manifest"), "stages": stages, "references": refs}
    result["summary"] = summarize(result)
    if not args.keep:
        for name in ("stripe.json", "payouts.json", "lines.parquet", "stripe.parquet", "payouts.parquet",
                     "expected_ledger_entries.jsonl", "stripe_payouts.parquet"):
            (work / name).unlink(missing_ok=True)
        for part in (*work.glob("stripe.part-*.json"), *work.glob("payouts.part-*.json")):
            part.unlink()
        for sub in ("published", "dagster"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return result


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    st, refs = r["stages"], r["references"]
    core, verify, dag = st.get("core", {}), st.get("verify", {}), st.get("dagster", {})
    s: dict[str, Any] = {
        "entries": (r.get("manifest") or {}).get("entries_in_day"),
        "extract_lines": st["extract"].get("rows"),
        "extract_s": _s(st["extract"], "extract"),
        "extract_lines_per_s": st["extract"].get("rows_per_s"),
        "provider_frames_s": _s(st["providers"], "stripe_frame", "payout_frame"),
        "http_pull_s": _s(st.get("http", {}), "stripe_pull", "payout_pull", "payout_frame"),
        "http_records_per_s": st.get("http", {}).get("records_per_s"),
        "gx_warmup_s": _s(core, "gx_warmup"),
        "reconciliation_s": _s(core, "reconciliation"),
        "checks_s": _s(core, "checks"),
        "proof_s": _s(core, "proof"),
        "signing_s": _s(core, "signing"),
        "publication_s": _s(core, "publication"),
        "core_s": _s(core, "reconciliation", "checks", "proof", "signing", "publication"),
        "verify_s": _s(verify, "load", "verify"),
        "materialize_s": _s(dag, "materialize"),
        "psql_copy_s": refs.get("psql_copy_s"),
        "sha256sum_s": refs.get("sha256sum_s"),
        "floor_s": refs.get("floor_s"),
        "peak_rss_mib": {**{k: st[k].get("peak_rss_mib") for k in ("extract", "providers", "http", "core", "verify",
                                                                     "dagster") if k in st},
                         **({"pull_workers": dag["pull_workers_peak_rss_mib"]}
                            if dag.get("pull_workers_peak_rss_mib") else {})},
        "checks_ok": {
            "ledger_file_identical": core.get("ledger_file_identical"),
            "discrepancies_as_injected": core.get("discrepancies_as_injected"),
            "verify_ok": verify.get("ok"),
            "http_same_as_direct": st.get("http", {}).get("same_as_direct"),
            "dagster_success": dag.get("success"),
            "dagster_proof_id_same": (dag.get("proof_id") == core.get("proof_id")) if dag.get("proof_id") else None,
        },
    }
    s["pipeline_total_s"] = _total(s)
    if s["materialize_s"] and s["floor_s"]:
        s["materialize_over_floor"] = round(s["materialize_s"] / s["floor_s"], 2)
    # `providers` builds the pull frames from the whole generated day held as Python dicts, and
    # `http` runs the sandboxes as well: harness, not pipeline. The pulls' own memory is in
    # `dagster` (frames built page by page) and `pull_workers`.
    pipeline_rss = [v for k, v in s["peak_rss_mib"].items() if k not in ("http", "providers") and v]
    s["peak_rss_max_mib"] = max(pipeline_rss) if pipeline_rss else None
    return s


def _total(s: dict[str, Any]) -> float | None:
    parts = [s["extract_s"], s["provider_frames_s"], s["core_s"], s["verify_s"]]
    return round(sum(parts), 3) if all(p is not None for p in parts) else None


def targets(by_size: dict[int, dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, holds) at 1M entries, plus the 1M/100k scaling."""
    out: list[tuple[str, str, bool | None]] = []
    big = by_size.get(1_000_000)
    small = by_size.get(100_000)
    if big:
        s = big["summary"]

        def row(name, value, ok_fn, fmt):
            out.append((name, fmt(value) if value is not None else "n/a",
                        None if value is None else bool(ok_fn(value))))

        row(f"1M: recon+checks+proof+signing+publication <= {TARGET_CORE_S:.0f} s", s["core_s"],
            lambda v: v <= TARGET_CORE_S, lambda v: f"{v:.1f} s")
        row(f"1M: verification <= {TARGET_VERIFY_S:.0f} s", s["verify_s"], lambda v: v <= TARGET_VERIFY_S,
            lambda v: f"{v:.1f} s")
        row("1M: peak RSS < 3 GiB", s["peak_rss_max_mib"], lambda v: v < TARGET_PEAK_RSS_MIB,
            lambda v: f"{v / GIB:.2f} GiB")
        row("1M: extract >= 300k lines/s", s["extract_lines_per_s"], lambda v: v >= TARGET_EXTRACT_LINES_PER_S,
            lambda v: f"{v / 1000:.0f}k lines/s")
        row(f"1M: Dagster partition <= {TARGET_FLOOR_FACTOR:.0f}x floor", s.get("materialize_over_floor"),
            lambda v: v <= TARGET_FLOOR_FACTOR, lambda v: f"{v:.1f}x")
    large = by_size.get(LARGE)
    if large:
        s = large["summary"]
        bad = sorted(k for k, v in s["checks_ok"].items() if v is False)
        done = s["core_s"] is not None and s["verify_s"] is not None and not bad
        out.append(("5M: completes with every correctness check", "yes" if done else f"no {bad}", done))
        v = s["peak_rss_max_mib"]
        out.append((f"5M: peak RSS <= {TARGET_LARGE_PEAK_RSS_MIB / GIB:.0f} GiB",
                    "n/a" if v is None else f"{v / GIB:.2f} GiB",
                    None if v is None else v <= TARGET_LARGE_PEAK_RSS_MIB))
    if small and small["summary"].get("materialize_over_floor") is not None:
        v = small["summary"]["materialize_over_floor"]
        out.append((f"100k: Dagster partition <= {TARGET_FLOOR_FACTOR_100K:.0f}x floor", f"{v:.1f}x",
                    v <= TARGET_FLOOR_FACTOR_100K))
    if big and small:
        a, b = small["summary"], big["summary"]
        if a["pipeline_total_s"] and b["pipeline_total_s"]:
            ratio = b["pipeline_total_s"] / a["pipeline_total_s"]
            out.append(("1M run <= 12x the 100k run (stages)", f"{ratio:.1f}x", ratio <= TARGET_SCALING))
        if a["materialize_s"] and b["materialize_s"]:
            ratio = b["materialize_s"] / a["materialize_s"]
            out.append(("1M run <= 12x the 100k run (Dagster)", f"{ratio:.1f}x", ratio <= TARGET_SCALING))
    return out


ROWS = [
    ("entries in the day", "entries", "{:,}"),
    ("extract lines (widened day)", "extract_lines", "{:,}"),
    ("ledger extract [s]", "extract_s", "{:.2f}"),
    ("  lines/s", "extract_lines_per_s", "{:,}"),
    ("provider frames [s]", "provider_frames_s", "{:.2f}"),
    ("provider pulls over HTTP [s]", "http_pull_s", "{:.2f}"),
    ("GX import + context (once) [s]", "gx_warmup_s", "{:.2f}"),
    ("reconciliation + report [s]", "reconciliation_s", "{:.2f}"),
    ("GX checks [s]", "checks_s", "{:.2f}"),
    ("proof build [s]", "proof_s", "{:.2f}"),
    ("signing (+ self-verify) [s]", "signing_s", "{:.2f}"),
    ("local publication [s]", "publication_s", "{:.2f}"),
    ("= recon..publication [s]", "core_s", "{:.2f}"),
    ("verification [s]", "verify_s", "{:.2f}"),
    ("stages total [s]", "pipeline_total_s", "{:.2f}"),
    ("Dagster partition [s]", "materialize_s", "{:.2f}"),
    ("ref: psql \\copy [s]", "psql_copy_s", "{:.2f}"),
    ("ref: sha256sum [s]", "sha256sum_s", "{:.2f}"),
    ("floor [s]", "floor_s", "{:.2f}"),
    ("Dagster / floor", "materialize_over_floor", "{:.1f}x"),
    ("peak RSS, max [MiB]", "peak_rss_max_mib", "{:,.0f}"),
]


def table(by_size: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(by_size)
    width = max(len(r[0]) for r in ROWS) + 2
    lines = ["".ljust(width) + "".join(f"{n:>14,}" for n in sizes)]
    for label, key, fmt in ROWS:
        cells = []
        for n in sizes:
            v = by_size[n]["summary"].get(key)
            cells.append(f"{fmt.format(v) if v is not None else '-':>14}")
        lines.append(label.ljust(width) + "".join(cells))
    for n in sizes:
        rss = by_size[n]["summary"]["peak_rss_mib"]
        lines.append(f"peak RSS by process at {n:,} [MiB]: " + ", ".join(f"{k} {v:,.0f}" for k, v in rss.items() if v))
        bad = {k: v for k, v in by_size[n]["summary"]["checks_ok"].items() if v is False}
        lines.append(f"correctness at {n:,}: " + ("all checks hold" if not bad else f"FAILED {sorted(bad)}"))
    rows = targets(by_size)
    if rows:
        lines.append("")
        lines.append("targets:")
        for name, value, ok in rows:
            lines.append(f"  {'PASS' if ok else ('n/a ' if ok is None else 'FAIL')}  {name}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated entry counts")
    ap.add_argument("--http-max", type=int, default=100_000,
                    help="also time the provider pulls over HTTP for sizes up to this (0: never)")
    ap.add_argument("--no-dagster", action="store_true", help="skip the Dagster partition")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tag", default="", help="results go to bench/results/<size>.<tag>.json")
    ap.add_argument("--keep", action="store_true", help="keep the databases and work files")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per stage, seconds")
    args = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    by_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        result = bench_size(n, args)
        name = f"{n}.{args.tag}.json" if args.tag else f"{n}.json"
        (RESULTS / name).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        by_size[n] = result
        log(f"wrote {RESULTS / name}")
    print(table(by_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
