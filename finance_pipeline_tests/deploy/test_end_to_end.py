"""End to end, as users run it: dagster-webserver and dagster-daemon as separate processes on
the Postgres-backed instance (deploy/dagster.postgres.yaml, a fresh database), the code
location from workspace.yaml and a seeded demo world. Backfills are launched through GraphQL
exactly as the UI's "Launch backfill" does (all partitions in one request) and Dagster orders
them itself: proof_package depends on its own previous day.

The tests share one deployment and run in file order, on separate runs of days:
(a) 11-01..05 clean; the UI rendered by headless Chromium; (b) 11-06..10 with 11-07 blocked,
then fixed; (c) 11-11..13 with a run worker killed mid-run.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from finance_pipeline_tests.fixtures import skip_unless_ci
from dagster import AssetKey

from finance_pipeline_tests.fixtures.world import make_world
from finance_pipeline_tests.deploy.stack import LOCATION, ROOT, running_stack, selected, tag
from finance_pipeline_tests.fixtures.postgres import create_database, drop_database

ARTIFACTS = ROOT / "build" / "artifacts"
ASSETS = ["ledger_counterparts", "ledger_extract", "payout_settlements", "proof_package", "reconciliation",
          "reconciliation_report", "stripe_balance_transactions", "stripe_payouts"]
CLEAN = [f"2026-11-{d:02d}" for d in range(1, 6)]
BLOCKED_RANGE = [f"2026-11-{d:02d}" for d in range(6, 11)]
BLOCKED_DAY = "2026-11-07"
KILLED_RANGE = [f"2026-11-{d:02d}" for d in range(11, 14)]
KILLED_DAY = "2026-11-12"
BOGUS_REF = "ch_e2e_never_charged"

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


class World:
    """What the tests of this module share: the deployment, the ledger and what happened."""

    def __init__(self, stack, world):
        self.stack = stack
        self.world = world
        self.runs: dict[str, list[dict]] = {}  # backfill id -> its runs, when it finished

    def engine(self):
        from finance_pipeline.ledger.engine import create_ledger_engine

        return create_ledger_engine(self.world.database_url)

    def keyring(self):
        from finance_pipeline.proof.keyring import Keyring

        return Keyring.load(Path(self.world.storage.parent) / "var" / "keys" / "keyring.json")

    def published(self, day: str):
        from finance_pipeline.export import registry

        engine = self.engine()
        try:
            return registry.published_for_day(engine, day)
        finally:
            engine.dispose()

    def backfill(self, days: list[str], timeout_s: float = 900, on_tick=None) -> tuple[dict, list[dict]]:
        gql = self.stack.gql
        backfill_id = gql.launch_backfill(days, ASSETS, title=f"e2e {days[0]}..{days[-1]}")
        try:
            status = gql.wait_for_backfill(backfill_id, timeout_s=timeout_s, on_tick=on_tick)
        except Exception as exc:
            pytest.fail(f"{exc}\n{self.stack.log_tail()}")
        runs = gql.runs({"dagster/backfill": backfill_id})
        self.runs[backfill_id] = runs
        return status, runs

    def assert_chain(self, days: list[str], start_previous=None) -> list:
        """Each day has exactly one proof, it verifies, and links to the day before."""
        from finance_pipeline.proof.package import Package, previous_link
        from finance_pipeline.proof.verify import verify_package

        keyring = self.keyring()
        previous = start_previous
        packages = []
        for day in days:
            records = self.published(day)
            assert len(records) == 1, (day, records)
            pkg = Package.load_dir(records[0].location)
            result = verify_package(pkg, keyring, previous_package=previous)
            assert result.ok, (day, [c for c in result.checks if not c.ok])
            assert pkg.statement()["previous"] == (previous_link(previous.statement()) if previous else None)
            packages.append(pkg)
            previous = pkg
        return packages


def proof_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs of a backfill that materialize proof_package, by day, oldest first."""
    out: dict[str, list[dict]] = {}
    for run in sorted(runs, key=lambda r: r["startTime"] or 0):
        if "proof_package" in selected(run):
            out.setdefault(tag(run, "dagster/partition"), []).append(run)
    return out


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    dagster_db = create_database("fp_e2e_dagster")
    ledger_db = create_database("fp_e2e_ledger")
    world = None
    try:
        world = make_world(ledger_db, tmp, mp, days=13, inject=0)
        with running_stack(tmp, dagster_db) as stack:
            yield World(stack, world)
    finally:
        if world is not None:
            world.stripe.stop()
            world.payout.stop()
        mp.undo()
        drop_database(ledger_db)
        drop_database(dagster_db)
        print(f"end-to-end: {time.monotonic() - t0:.0f}s in all", flush=True)


def test_a_one_request_backfill_of_five_clean_days_publishes_one_chain_in_order(e2e):
    status, runs = e2e.backfill(CLEAN)
    assert status["status"] == "COMPLETED_SUCCESS", (status, runs, e2e.stack.log_tail())
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    e2e.assert_chain(CLEAN)

    # Dagster ordered the proofs itself: one proof run per day, each after the day before.
    by_day = proof_runs(runs)
    assert sorted(by_day) == CLEAN
    assert all(len(v) == 1 for v in by_day.values()), by_day
    for before, after in zip(CLEAN, CLEAN[1:]):
        assert by_day[before][0]["endTime"] <= by_day[after][0]["startTime"], (before, after)
    # Never two runs of one day at once (the queue's per-partition limit).
    for day in CLEAN:
        windows = sorted((r["startTime"], r["endTime"]) for r in runs if tag(r, "dagster/partition") == day)
        for (_, end), (start, _) in zip(windows, windows[1:]):
            assert end <= start, (day, windows)


def _post(e2e, entries: list[dict]) -> None:
    from finance_pipeline.ledger.posting import post_entries

    engine = e2e.engine()
    try:
        post_entries(engine, entries)
    finally:
        engine.dispose()


def _bogus_charge() -> dict:
    """A charge booked on the blocked day that Stripe never saw: PROVIDER_MISSING, blocking."""
    return {"journal_id": "e2e-bogus-1107", "ts": f"{BLOCKED_DAY}T12:00:00Z", "kind": "standard",
            "memo": f"Charge {BOGUS_REF}", "provider": "stripe", "provider_reference": BOGUS_REF,
            "posted_by": "system:import",
            "lines": [{"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": 4_100, "currency": "USD"},
                      {"account_id": "stripe_fees_usd", "direction": "debit", "amount_minor": 100, "currency": "USD"},
                      {"account_id": "revenue_usd", "direction": "credit", "amount_minor": 4_200, "currency": "USD"}]}


def _reversal_of(entry: dict) -> dict:
    flip = {"debit": "credit", "credit": "debit"}
    return {"journal_id": "e2e-fix-1107", "ts": f"{BLOCKED_DAY}T12:01:00Z", "kind": "reversal",
            "memo": f"Reverse {entry['journal_id']}", "provider": "stripe", "provider_reference": BOGUS_REF,
            "reverses": entry["journal_id"], "posted_by": "ops:ana", "reviewed_by": "ops:rita",
            "lines": [{**line, "direction": flip[line["direction"]]} for line in entry["lines"]]}


def test_a_blocked_day_stops_the_chain_without_forking_and_the_fix_finishes_it(e2e):
    bogus = _bogus_charge()
    _post(e2e, [bogus])
    status, runs = e2e.backfill(BLOCKED_RANGE)
    assert status["status"] in ("COMPLETED_FAILED", "FAILED"), (status, runs)

    # The day before the blocked one publishes; the blocked day and every later day do not.
    assert len(e2e.published("2026-11-06")) == 1
    for day in BLOCKED_RANGE[1:]:
        assert e2e.published(day) == [], day
    by_day = proof_runs(runs)
    # The blocked day's proof was refused with the gate's own account, not a stack trace to read.
    [refused] = by_day[BLOCKED_DAY]
    assert refused["status"] == "FAILURE"
    [message] = e2e.stack.gql.failure_messages(refused["runId"])
    assert f"{BLOCKED_DAY} is blocked: the gates parity failed" in message, message
    assert f"finance-pipeline check {BLOCKED_DAY} {BLOCKED_DAY}" in message
    assert "PROVIDER_MISSING" in message
    # Later days' proofs never ran: nothing of theirs failed on its own.
    assert not any(day in by_day for day in BLOCKED_RANGE[2:]), by_day

    # "Materialize" proof_package alone for the blocked day, as an analyst would in the UI.
    run_id = e2e.stack.gql.materialize(["proof_package"], BLOCKED_DAY)
    alone = e2e.stack.gql.wait_for_run(run_id)
    assert alone["status"] == "FAILURE"
    assert any("is blocked: the gates parity failed" in m for m in e2e.stack.gql.failure_messages(run_id))
    assert e2e.published(BLOCKED_DAY) == []

    # The day stayed open: the reviewed correction is accepted, and the same backfill again
    # finishes the chain from where it stopped.
    _post(e2e, [_reversal_of(bogus)])
    status, runs = e2e.backfill(BLOCKED_RANGE)
    assert status["status"] == "COMPLETED_SUCCESS", (status, runs, e2e.stack.log_tail())
    previous = e2e.assert_chain(CLEAN)[-1]
    e2e.assert_chain(BLOCKED_RANGE, start_previous=previous)


class _Killer(threading.Thread):
    """Kills the worker of the first run of ``day`` that materializes the reconciliation, as
    soon as it is executing steps (the OOM killer or a lost node, as far as Dagster can tell)."""

    def __init__(self, stack, day: str, timeout_s: float = 600):
        super().__init__(daemon=True)
        self.stack, self.day, self.timeout_s = stack, day, timeout_s
        self.killed_run: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

        try:
            with self.stack.instance() as inst:
                deadline = time.monotonic() + self.timeout_s
                while time.monotonic() < deadline and self.killed_run is None:
                    runs = inst.get_runs(filters=RunsFilter(tags={"dagster/partition": self.day},
                                                            statuses=[DagsterRunStatus.STARTED]))
                    for run in runs:
                        if AssetKey("reconciliation_report") not in (run.asset_selection or set()):
                            continue
                        for record in inst.all_logs(run.run_id, of_type=DagsterEventType.STEP_START):
                            if record.dagster_event and record.dagster_event.pid:
                                os.kill(record.dagster_event.pid, signal.SIGKILL)
                                self.killed_run = run.run_id
                                return
                    time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_a_run_worker_killed_mid_run_is_retried_before_the_next_day_and_the_chain_holds(e2e):
    killer = _Killer(e2e.stack, KILLED_DAY)
    killer.start()
    status, runs = e2e.backfill(KILLED_RANGE)
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert killer.killed_run, "the day's run was never caught mid-run"
    assert status["status"] == "COMPLETED_SUCCESS", (status, runs, e2e.stack.log_tail())
    by_id = {r["runId"]: r for r in runs}
    assert by_id[killer.killed_run]["status"] == "FAILURE"
    [retry] = [r for r in runs if tag(r, "dagster/parent_run_id") == killer.killed_run]
    assert retry["status"] == "SUCCESS" and tag(retry, "dagster/retry_number") == "1"
    # The killed day published after its retry, and before the next day's proof started.
    by_day = proof_runs(runs)
    assert by_day[KILLED_DAY][0]["startTime"] >= retry["endTime"]
    assert by_day[KILLED_DAY][-1]["endTime"] <= by_day[KILLED_RANGE[-1]][0]["startTime"]
    previous = e2e.assert_chain(BLOCKED_RANGE, start_previous=e2e.assert_chain(CLEAN)[-1])[-1]
    e2e.assert_chain(KILLED_RANGE, start_previous=previous)


# --- the UI, rendered by headless Chromium ------------------------------------------------------

def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM_BIN")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        message = "chromium not installed (apt-get install chromium, or set CHROMIUM_BIN)"
        skip_unless_ci(message)
    return path


def _chrome(binary: str, tmp_path: Path, *args: str, budget_ms: int = 30000, timeout_s: float = 90) -> str:
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--window-size=1600,1000",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--virtual-time-budget={budget_ms}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _dump_dom(binary: str, tmp_path: Path, url: str, expected: list[str], attempts: int = 3) -> str:
    """The rendered DOM of ``url``; retried with a larger budget while the SPA is still loading."""
    dom = ""
    for i in range(attempts):
        dom = _chrome(binary, tmp_path, "--dump-dom", url, budget_ms=20000 * (i + 1))
        if all(text in dom for text in expected):
            return dom
    return dom


def _visible_text(dom: str) -> list[str]:
    """The text nodes of a DOM dump, in document order (scripts and styles dropped)."""
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return [html.unescape(t).strip() for t in re.sub(r"<[^>]+>", "\n", text).split("\n") if t.strip()]


def _metadata_value(tokens: list[str], label: str) -> str:
    i = tokens.index(label)
    return tokens[i + 1]


def test_the_ui_renders_the_asset_graph_and_a_partitions_reconciliation_metadata(e2e, chromium, tmp_path):
    from finance_pipeline.export import registry
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.proof.package import Package

    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The asset graph: the reconciliation group's lineage shows its assets as nodes, with the
    # extract and provider assets upstream and the proof downstream.
    stack = e2e.stack
    graph_url = f"{stack.url}/locations/{LOCATION}/asset-groups/reconciliation"
    dom = _dump_dom(chromium, tmp_path, graph_url, ASSETS)
    (ARTIFACTS / "ui-asset-graph.html").write_text(dom)
    missing = [a for a in ASSETS if a not in dom]
    assert not missing, f"asset graph lacks {missing} (DOM saved to build/artifacts/ui-asset-graph.html)"
    assert "Join the Dagster community" not in dom  # nux disabled by the instance yaml
    _chrome(chromium, tmp_path, f"--screenshot={ARTIFACTS / 'ui-asset-graph.png'}", graph_url)
    assert (ARTIFACTS / "ui-asset-graph.png").stat().st_size > 10_000

    # One partition of reconciliation_report: its materialization and metadata, whose values
    # are the ones the published statement of that day signed.
    day = CLEAN[1]
    [run_id] = [r["runId"] for runs in e2e.runs.values() for r in runs
                if tag(r, "dagster/partition") == day and "reconciliation_report" in selected(r)
                and r["status"] == "SUCCESS"][:1]
    labels = ["matched", "ledger_entries", "discrepancies_total", "discrepancies_by_class"]
    report_url = f"{stack.url}/assets/reconciliation_report?view=partitions&partition={day}"
    dom = _dump_dom(chromium, tmp_path, report_url, [run_id[:8], *labels])
    (ARTIFACTS / "ui-reconciliation-report.html").write_text(dom)
    tokens = _visible_text(dom)
    missing = [text for text in (day, run_id[:8], *labels) if text not in tokens]
    assert not missing, f"partition page lacks {missing} (DOM saved to build/artifacts/ui-reconciliation-report.html)"
    engine = create_ledger_engine(e2e.world.database_url)
    try:
        [record] = registry.published_for_day(engine, day)
    finally:
        engine.dispose()
    statement = Package.load_dir(record.location).statement()
    assert _metadata_value(tokens, "matched") == str(statement["reconciliation"]["matched"])
    assert _metadata_value(tokens, "discrepancies_total") == str(statement["reconciliation"]["discrepancies"])
    assert _metadata_value(tokens, "ledger_entries") == str(statement["ledger"]["entries"])
    _chrome(chromium, tmp_path, f"--screenshot={ARTIFACTS / 'ui-reconciliation-report.png'}", report_url)
    assert (ARTIFACTS / "ui-reconciliation-report.png").stat().st_size > 10_000
