"""The benchmark's stages, each run in its own child process (`python -m bench.stages STAGE WORKDIR`).

A child loads its inputs from the work directory (not timed), times its stage(s) with
``perf_counter`` and writes ``<stage>.result.json``: seconds per step and the process's peak
RSS (``ru_maxrss``) after each step, so the table can show where memory grows.

Stages:
  generate   build the day and COPY it into the (empty) database; write the sandbox data files
  extract    ledger extract to the stages' Parquet file (finance_pipeline.export.prove.write_day), twice
  providers  Stripe and payout frames from the generated records (no HTTP)
  http       the same through the sandboxes over HTTP (the official Stripe SDK, httpx)
  core       reconciliation + report, GX gates, proof bundle, signing (incl. self-verification),
             local publication: one process, as in the Dagster proof step
  verify     the offline verifier on the published package, in a fresh process
  dagster    the whole partition through Dagster (materialize_day), sandboxes in another process
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from finance_pipeline.domain.timeutil import recon_window_us, seconds_window

US = 1_000_000
MARGIN_S = 3600
# The Stripe pull as configured for a busy day (STRIPE_PULL_PROCESSES, STRIPE_HTTP_CLIENT): one
# worker per core, and the SDK's libcurl client.
PULL_PROCESSES = 2
PULL_HTTP_CLIENT = "pycurl"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def children_peak_rss_mib() -> float:
    """The largest peak RSS of the child processes waited for so far (the Stripe pull's workers,
    when read before the sandboxes' process ends)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)


class Timer:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - t0
            # CPU seconds of this process (all its threads): cpu / wall near 2 uses both cores.
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
            self.rss[name] = round(peak_rss_mib(), 1)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"seconds": {k: round(v, 4) for k, v in self.steps.items()},
                "cpu_seconds": {k: round(v, 4) for k, v in self.cpu.items()},
                "peak_rss_mib_after": self.rss, "peak_rss_mib": round(peak_rss_mib(), 1), **extra}


def _cfg(work: Path) -> dict[str, Any]:
    return json.loads((work / "config.json").read_text())


def _write(work: Path, stage: str, result: dict[str, Any]) -> None:
    (work / f"{stage}.result.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------


def stage_generate(work: Path) -> dict[str, Any]:
    from bench.generate import generate

    cfg = _cfg(work)
    t0 = time.perf_counter()
    manifest = generate(cfg["database_url"], cfg["n"], work, cfg["day"], cfg.get("seed", 7), cfg.get("parts", 1))
    return {"seconds": {"generate": round(time.perf_counter() - t0, 3)}, "manifest": manifest,
            "peak_rss_mib": round(peak_rss_mib(), 1)}


def stage_extract(work: Path) -> dict[str, Any]:
    """The ledger extract as the Dagster asset runs it: written to the Parquet file the next
    stages read (export.prove.write_day, in time slices on a large day), twice."""
    from finance_pipeline.export.prove import write_day
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.reconciliation import Tolerances

    cfg = _cfg(work)
    engine = create_ledger_engine(cfg["database_url"])
    timer = Timer()
    runs = []
    rows = 0
    for _ in range(2):
        gc.collect()
        t0 = time.perf_counter()
        rows = write_day(engine, cfg["day"], Tolerances(time_s=MARGIN_S), work / "lines.parquet")
        runs.append(time.perf_counter() - t0)
    timer.steps["extract"] = min(runs)
    timer.rss["extract"] = round(peak_rss_mib(), 1)
    engine.dispose()
    return timer.result(runs=[round(r, 3) for r in runs], rows=rows, rows_per_s=round(rows / min(runs)))


def _provider_records(work: Path, day: str, stripe_file: Path, payout_files: list[Path]
                      ) -> tuple[list[dict], list[dict]]:
    """What the two pulls return for the widened day, computed from the sandbox data files
    (the Stripe records of one of them; the payout records of all: a payout settled in the day
    may have been created in any part)."""
    from finance_pipeline.domain.timeutil import parse_ts_us
    from finance_pipeline.sandboxes.payout_sandbox import normalise_payout, settlement_of

    lo, hi = recon_window_us(day, MARGIN_S)
    s_lo, s_hi = seconds_window(lo, hi)
    stripe_doc = json.loads(stripe_file.read_text(encoding="utf-8"))
    stripe = [t for t in stripe_doc["balance_transactions"] if s_lo <= t["created"] < s_hi]
    payouts = [normalise_payout(p, "bench") for f in payout_files for p in
               json.loads(f.read_text(encoding="utf-8"))["payouts"]]
    settled = [settlement_of(p) for p in payouts
               if p["status"] != "pending" and lo <= parse_ts_us(p["settled_at"]) < hi]
    ids = {s["payout_id"] for s in settled}
    pending = [p for p in payouts if p["status"] == "pending" and parse_ts_us(p["created_at"]) < hi
               and p["payout_id"] not in ids]
    return stripe, settled + pending


def _stripe_payouts(stripe_file: Path, day: str) -> tuple[list[dict], dict[str, dict]]:
    """What the `/v1/payouts` pull returns for the day (providers/stripe_payouts.pull_day_payouts)
    from one Stripe data file: the payouts created in the widened day or arriving on it, and the
    balance transactions of those created before the window (a payout's transaction is in its
    file)."""
    from finance_pipeline.domain.timeutil import day_bounds_us
    from finance_pipeline.sandboxes.stripe_sandbox import normalise_balance_transaction, normalise_payout

    s_lo, s_hi = seconds_window(*recon_window_us(day, MARGIN_S))
    d_lo, d_hi = seconds_window(*day_bounds_us(day))
    doc = json.loads(stripe_file.read_text(encoding="utf-8"))
    # As the sandbox serves them (Stripe's default members filled in).
    served = [normalise_payout(p, "bench")[0] for p in doc.get("payouts", [])]
    chosen = [p for p in served if s_lo <= p["created"] < s_hi or d_lo <= p["arrival_date"] < d_hi]
    txns = {t["id"]: t for t in doc["balance_transactions"]}
    fetched = {p["balance_transaction"]: normalise_balance_transaction(txns[p["balance_transaction"]], "bench")[0]
               for p in chosen if p.get("balance_transaction") and not s_lo <= p["created"] < s_hi}
    return chosen, fetched


def _by_id(frames: list[Any]):
    """Frames built part by part, as one frame built from all their records (sorted by id)."""
    import pandas as pd

    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True).sort_values("id", kind="stable", ignore_index=True)


def stage_providers(work: Path) -> dict[str, Any]:
    from bench.generate import part_files
    from finance_pipeline.providers.payout_pull import settlements_frame
    from finance_pipeline.providers.stripe_payouts import payouts_frame
    from finance_pipeline.providers.stripe_pull import balance_transactions_frame

    cfg = _cfg(work)
    stripe_files, payout_files = part_files(work, "stripe.json"), part_files(work, "payouts.json")
    timer = Timer()
    stripe_frames, payout_records, chosen, fetched = [], [], [], {}
    # A part's Stripe records at a time: a 5M-entry day's are more than 10 GB as Python objects.
    for k, stripe_file in enumerate(stripe_files):
        stripe_records, payouts = _provider_records(work, cfg["day"], stripe_file, payout_files if k == 0 else [])
        payout_records += payouts
        with timer.step("stripe_frame"):
            stripe_frames.append(balance_transactions_frame(stripe_records))
        del stripe_records
        more, txns = _stripe_payouts(stripe_file, cfg["day"])
        chosen += more
        fetched.update(txns)
    with timer.step("stripe_frame"):
        stripe = _by_id(stripe_frames)
        del stripe_frames
    with timer.step("payout_frame"):
        payouts = settlements_frame(payout_records)
    with timer.step("stripe_payouts_frame"):
        stripe_payouts = payouts_frame(chosen, fetched)
    stripe.to_parquet(work / "stripe.parquet")
    payouts.to_parquet(work / "payouts.parquet")
    stripe_payouts.to_parquet(work / "stripe_payouts.parquet")
    return timer.result(stripe_records=len(stripe), payout_records=len(payouts), stripe_payouts=len(stripe_payouts))


def stage_http(work: Path) -> dict[str, Any]:
    """The pulls over HTTP against the (indexed) sandboxes, compared with the direct frames."""
    import pandas as pd

    from bench.sandboxes import running_sandboxes
    from finance_pipeline.domain.timeutil import format_ts_us
    from finance_pipeline.providers.payout_pull import pull_pending_payouts, pull_settlements, settlements_frame
    from finance_pipeline.defs.resources import StripeResource
    from finance_pipeline.providers.stripe_pull import pull_balance_transactions_frame

    cfg = _cfg(work)
    lo, hi = recon_window_us(cfg["day"], MARGIN_S)
    timer = Timer()
    with running_sandboxes(work) as urls:
        with timer.step("stripe_pull"):  # the frame is built page by page, as the asset does
            stripe = pull_balance_transactions_frame("sk_test_sandbox", urls["stripe"], *seconds_window(lo, hi),
                                                     concurrency=StripeResource().concurrency,
                                                     processes=PULL_PROCESSES, http_client=PULL_HTTP_CLIENT)
        with timer.step("payout_pull"):
            settled = pull_settlements(urls["payout"], "payout_sandbox_token", format_ts_us(lo), format_ts_us(hi))
            ids = {r["payout_id"] for r in settled}
            pending = [p for p in pull_pending_payouts(urls["payout"], "payout_sandbox_token", format_ts_us(hi))
                       if p["payout_id"] not in ids]
        with timer.step("payout_frame"):
            payouts = settlements_frame(settled + pending)
    same = (stripe.equals(pd.read_parquet(work / "stripe.parquet"))
            and payouts.equals(pd.read_parquet(work / "payouts.parquet")))
    n = len(stripe) + len(payouts)
    total = sum(timer.steps.values())
    return timer.result(records=n, records_per_s=round(n / total), same_as_direct=bool(same))


def _signers(work: Path):
    from finance_pipeline.signing.config import SigningConfig, build_signers
    from finance_pipeline.signing.local_keys import init_keys

    keys_dir = work / "keys"
    init_keys(keys_dir)
    cfg = SigningConfig.embedded_default(keys_dir)
    return build_signers(cfg), cfg.quorum


def stage_core(work: Path) -> dict[str, Any]:
    """Reconciliation, gates, proof, signing and publication in one process, each holding what
    its Dagster step holds: the step reads the extract once, in pieces that the ledger gate
    judges and the reconciliation keeps its claims' lines of, then the Stripe pull without its
    record texts, which its gate reads whole afterwards; the proof reads the stored frames as
    sources."""
    import pandas as pd
    import pyarrow.parquet as pq

    from finance_pipeline.defs.io_managers import StoredFrame, release_unused_memory
    from finance_pipeline.memory import use_lean_allocators
    from finance_pipeline.settings import Settings
    from finance_pipeline.export.exporter import seal
    from finance_pipeline.export.prove import prove_day, read_for_reconciliation, reconcile_day
    from finance_pipeline.proof.package import LEDGER_FILE
    from finance_pipeline.publication import LocalPublisher
    from finance_pipeline.quality import gates
    from finance_pipeline.quality.suites import ParityPolicy
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.providers.stripe_payouts import with_payout_transactions
    from finance_pipeline.reconciliation import Tolerances, build_report

    cfg = _cfg(work)
    day = cfg["day"]
    sources = {name: StoredFrame(name, open(work / f"{name}.parquet", "rb"))  # noqa: SIM115
               for name in ("lines", "stripe", "payouts")}
    # The allocator a run's process gets when its definitions load.
    use_lean_allocators(Settings.from_environ(os.environ).arrow_memory_pool)
    release_unused_memory()  # as the storage IO manager does before a step's inputs
    payouts = sources["payouts"].read()
    day_payouts = pd.read_parquet(work / "stripe_payouts.parquet")
    signers, quorum = _signers(work)
    manifest = json.loads((work / "manifest.json").read_text())
    timer = Timer()
    timer.rss["inputs"] = round(peak_rss_mib(), 1)

    # GX: import and build the context once (a warm process), timed on its own.
    with timer.step("gx_warmup"):
        gates.import_gx()
        gates.run_ledger_checks(next(sources["lines"].batches(10)))
        gates.run_stripe_checks(next(pq.ParquetFile(work / "stripe.parquet").iter_batches(batch_size=10)).to_pandas())
        gates.run_payout_checks(payouts.head(10))
        gates.run_parity_checks(pd.DataFrame({c: pd.Series([], dtype=object) for c in
                                              ("class", "provider", "provider_id", "journal_id", "currency",
                                               "provider_amount_minor", "ledger_amount_minor", "detail")}))

    tol = Tolerances()
    with timer.step("reconciliation"):
        engine = create_ledger_engine(cfg["database_url"])
        claims, entries, ledger_result = read_for_reconciliation(day, sources["lines"])
        stripe = with_payout_transactions(sources["stripe"].read(without=["record"]), day_payouts)
        rec, counterparts = reconcile_day(engine, day, claims, stripe, payouts, tol, stripe_payouts=day_payouts,
                                          entries_in_day=entries)
        del claims
        engine.dispose()
        report = build_report(rec)
        del stripe
    with timer.step("checks"):  # the ledger's ran on the pieces of the reconciliation's read
        release_unused_memory()
        results = [ledger_result,
                   gates.run_stripe_checks(with_payout_transactions(sources["stripe"].read(), day_payouts)),
                   gates.run_payout_checks(payouts),
                   gates.run_parity_checks(rec.discrepancies, ParityPolicy())]
    counts, matched = rec.counts, len(rec.matches)
    del payouts, rec
    release_unused_memory()  # the step ends; the proof step starts from its stored inputs
    with timer.step("proof"):
        bundle = prove_day(day, sources["lines"], sources["stripe"], sources["payouts"], report, tol, None,
                           counterparts=counterparts, stripe_payouts=day_payouts)
        release_unused_memory()
    with timer.step("signing"):
        files = seal(bundle, signers, quorum)
    out = work / "published"
    with timer.step("publication"):
        published = LocalPublisher(out).publish(day, bundle.statement["proof_id"], files)

    return timer.result(
        matched=matched, discrepancies=counts, location=published.location,
        gates={r.name: r.success for r in results},
        # Compared by hash, read in pieces: at 5M entries the file is 5 GB, not the pipeline's memory.
        ledger_file_identical=hashlib.sha256(files[LEDGER_FILE]).digest() == _file_sha256(
            work / "expected_ledger_entries.jsonl"),
        discrepancies_as_injected=counts == manifest["expected_discrepancies"],
        ledger_bytes=len(files[LEDGER_FILE]), entries=bundle.statement["ledger"]["entries"],
        merkle_root=bundle.merkle_root, proof_id=bundle.statement["proof_id"],
    )


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.digest()


def stage_verify(work: Path) -> dict[str, Any]:
    from finance_pipeline.proof.keyring import Keyring
    from finance_pipeline.publication import load_package
    from finance_pipeline.proof.verify import verify_package

    core = json.loads((work / "core.result.json").read_text())
    keyring = Keyring.load(work / "keys" / "keyring.json")
    timer = Timer()
    with timer.step("load"):
        pkg = load_package(core["location"])
    with timer.step("verify"):
        result = verify_package(pkg, keyring)
    return timer.result(ok=result.ok, failed=result.failed)


def stage_dagster(work: Path) -> dict[str, Any]:
    """The whole partition through Dagster, wired by environment variables like the tests do."""
    import shutil

    from bench.sandboxes import running_sandboxes

    cfg = _cfg(work)
    day = cfg["day"]
    manifest = json.loads((work / "manifest.json").read_text())
    root = work / "dagster"
    shutil.rmtree(root, ignore_errors=True)
    (root / "home").mkdir(parents=True)
    (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    timer = Timer()
    with running_sandboxes(work) as urls:
        env = {
            "DATABASE_URL": cfg["database_url"], "STRIPE_API_BASE": urls["stripe"],
            "PAYOUT_API_BASE": urls["payout"], "FP_STORAGE_DIR": str(root / "storage"),
            "FP_PARTITIONS_START": day, "FP_VAR_DIR": str(root / "var"),
            "FP_PUBLISH_DIR": str(root / "published"), "DAGSTER_HOME": str(root / "home"),
            "STRIPE_PULL_PROCESSES": str(PULL_PROCESSES), "STRIPE_HTTP_CLIENT": PULL_HTTP_CLIENT,
        }
        os.environ.update(env)
        for k in ("S3_AUDIT_BUCKET", "KMS_KEY_ID", "FP_SIGNING_KEYS", "FP_SIGNING_QUORUM", "AWS_ENDPOINT_URL",
                  "FP_STORAGE_S3_BUCKET"):
            os.environ.pop(k, None)
        import dagster as dg

        from finance_pipeline.defs.launch import materialize_day
        from finance_pipeline.signing.local_keys import init_keys

        init_keys(root / "var" / "keys")
        defs = _definitions(day, manifest["expected_discrepancies"])
        inst = dg.DagsterInstance.get()
        with timer.step("materialize_warmup"):
            # Imports, definitions and the instance, as a long-lived code server has them ready.
            defs.resolve_implicit_global_asset_job_def()
        with timer.step("materialize"):
            run = materialize_day(defs, day, inst)
        workers_rss = children_peak_rss_mib()
    published = run.metadata.get("proof_package", {})
    return timer.result(pull_workers_peak_rss_mib=workers_rss, success=run.success, checks=run.checks, skipped=run.skipped, failed=run.failed,
                        blocked=run.blocked, errors=run.errors, proof_id=published.get("proofId"),
                        entries=published.get("ledger_entries"))


def _definitions(day: str, tolerated: dict[str, int]):
    """`build_definitions`, with a parity policy that tolerates the injected discrepancies so the
    proof step runs (with the default policy the gate blocks it, as it should)."""
    import dagster as dg

    from finance_pipeline.definitions import build_resources
    from finance_pipeline.defs.ledger import assets as ledger_assets
    from finance_pipeline.defs.partitions import daily_partitions
    from finance_pipeline.defs.proofs import assets as proof_assets
    from finance_pipeline.defs.providers import assets as provider_assets
    from finance_pipeline.defs.reconciliation import assets as reconciliation_assets
    from finance_pipeline.defs.resources import ReconciliationSettings

    partitions = daily_partitions(day)
    assets = [*ledger_assets.build_assets(partitions), *provider_assets.build_assets(partitions),
              *reconciliation_assets.build_assets(partitions), *proof_assets.build_assets(partitions, day)]
    from finance_pipeline.memory import use_lean_allocators
    from finance_pipeline.settings import Settings

    # The bench is an edge: it reads the environment it set up, as the code location does.
    config = Settings.from_environ(os.environ)
    use_lean_allocators(config.arrow_memory_pool)
    resources = build_resources(config)
    resources["recon"] = ReconciliationSettings(max_allowed=dict(tolerated))
    return dg.Definitions(assets=assets, resources=resources)


STAGES = {
    "generate": stage_generate, "extract": stage_extract, "providers": stage_providers, "http": stage_http,
    "core": stage_core, "verify": stage_verify, "dagster": stage_dagster,
}


def main(argv: list[str]) -> int:
    stage, work = argv[0], Path(argv[1])
    result = STAGES[stage](work)
    _write(work, stage, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
