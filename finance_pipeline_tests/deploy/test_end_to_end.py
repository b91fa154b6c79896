"""End to end, as users run it: dagster-webserver and dagster-daemon as separate processes on
the Postgres-backed instance (deploy/dagster.postgres.yaml, a fresh database), the code
location from workspace.yaml, a seeded demo world, a backfill launched through the GraphQL
API, the published packages verified and chained, and the UI rendered by headless Chromium.

The daemon runs every run in a fresh subprocess that re-imports the code location, so all
configuration reaches it through the environment of the two processes started here.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from finance_pipeline_tests.defs.conftest import World, make_world
from finance_pipeline_tests.fixtures.postgres import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "build" / "artifacts"
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]
LOCATION = "finance_pipeline"
ASSETS = ["ledger_extract", "payout_settlements", "proof_package", "reconciliation", "reconciliation_report",
          "stripe_balance_transactions"]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def load_backfill_tool():
    """deploy/backfill_in_order.py, the operators' script (a file, not part of the package)."""
    name = "finance_deploy_backfill_in_order"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "backfill_in_order.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_env(url: str) -> dict[str, str]:
    u = sa.engine.make_url(url)
    return {"DAGSTER_PG_HOST": u.host or "127.0.0.1", "DAGSTER_PG_PORT": str(u.port or 5432),
            "DAGSTER_PG_USER": u.username or "postgres", "DAGSTER_PG_PASSWORD": u.password or "",
            "DAGSTER_PG_DB": u.database}


def _stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM to the process group we created (webserver/daemon and their code servers and
    run workers), SIGKILL what is left after ``timeout_s``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@dataclass
class Stack:
    url: str
    world: World
    home: Path
    env: dict[str, str]
    logs: Path
    outcomes: list = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for name in ("webserver.log", "daemon.log"):
            path = self.logs / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The running deployment, after the three days were backfilled through GraphQL."""
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    dagster_db = create_database("fp_e2e_dagster")
    ledger_db = create_database("fp_e2e_ledger")
    procs: list[subprocess.Popen] = []
    world = None
    try:
        world = make_world(ledger_db, tmp, mp, inject=0)
        home = tmp / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
        # Everything the runs need, as environment: make_world set DATABASE_URL, STRIPE_API_BASE,
        # PAYOUT_API_BASE, FP_STORAGE_DIR, FP_VAR_DIR, FP_PUBLISH_DIR and FP_PARTITIONS_START.
        env = {**os.environ, **_pg_env(dagster_db), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        port = _free_port()
        logs = tmp / "logs"
        logs.mkdir()
        workspace = str(ROOT / "workspace.yaml")
        # Create the instance schema once, as a deployment does before starting its services
        # (the Helm chart's migrate job); two processes creating it at once would race.
        subprocess.run([str(BIN / "dagster"), "instance", "migrate"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        for name, argv in (
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
            ("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]),
        ):
            with open(logs / f"{name}.log", "wb") as out:
                procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
        stack = Stack(f"http://127.0.0.1:{port}", world, home, env, logs)
        tool = load_backfill_tool()
        gql = tool.DagsterGraphQL(stack.url)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    gql("{ version }")
                    break
                except Exception:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        pytest.fail("the webserver did not come up\n" + stack.log_tail())
                    time.sleep(0.5)
            tool.wait_for_location(gql, LOCATION, timeout_s=90)
        finally:
            gql.close()
        stack.timings["startup_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        try:
            # In-process steps: a day then finishes within one tick of the backfill daemon (30 s).
            stack.outcomes = tool.backfill_in_order(stack.url, DAYS, location=LOCATION, timeout_per_day_s=150,
                                                    run_config=tool.IN_PROCESS,
                                                    log=lambda msg: print(msg, flush=True))
        except tool.BackfillError as exc:
            pytest.fail(f"{exc}\n{stack.log_tail()}")
        stack.timings["backfill_s"] = time.monotonic() - t1
        yield stack
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if world is not None:
            world.stripe.stop()
            world.payout.stop()
        mp.undo()
        drop_database(ledger_db)
        drop_database(dagster_db)
        print(f"end-to-end stack: {time.monotonic() - t0:.0f}s in all", flush=True)


def test_graphql_backfill_on_the_postgres_instance_publishes_a_verified_chain(stack):
    from dagster import DagsterInstance, DagsterRunStatus

    from finance_pipeline.export import registry
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.proof.keyring import Keyring
    from finance_pipeline.proof.package import Package, previous_link
    from finance_pipeline.proof.verify import verify_package

    assert [o.day for o in stack.outcomes] == DAYS, stack.log_tail()
    assert all(o.succeeded for o in stack.outcomes), [(o.day, o.runs) for o in stack.outcomes]
    assert all(o.published_by in o.runs for o in stack.outcomes)  # the proof came from that day's run

    # The runs are in the Postgres instance, one per day, each tagged with its partition and
    # backfill (what the queue's per-partition limit keys on), and never two of a day at once.
    old = {k: os.environ.get(k) for k in stack.env if k.startswith("DAGSTER_PG_")}
    os.environ.update({k: stack.env[k] for k in old})
    try:
        with DagsterInstance.from_config(str(stack.home)) as inst:
            assert type(inst.run_storage).__name__ == "PostgresRunStorage"
            runs = inst.get_runs()
            by_day: dict[str, list] = {}
            for run in runs:
                by_day.setdefault(run.tags["dagster/partition"], []).append(run)
                assert run.tags["dagster/backfill"] in {o.backfill_id for o in stack.outcomes}
            assert sorted(by_day) == DAYS
            for day, day_runs in by_day.items():
                assert [r.status for r in day_runs] == [DagsterRunStatus.SUCCESS], (day, day_runs)
            windows = sorted((inst.get_run_stats(r.run_id).start_time, inst.get_run_stats(r.run_id).end_time)
                             for r in runs)
            for (_, end), (start, _) in zip(windows, windows[1:]):
                assert end <= start  # day N+1 started only after day N had finished
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # Three packages published, each verifying against the keyring and linking to the day before.
    keyring = Keyring.load(Path(stack.world.storage.parent) / "var" / "keys" / "keyring.json")
    engine = create_ledger_engine(stack.world.database_url)
    previous = None
    try:
        for day in DAYS:
            [record] = registry.published_for_day(engine, day)
            pkg = Package.load_dir(record.location)
            result = verify_package(pkg, keyring, previous_package=previous)
            assert result.ok, (day, [c for c in result.checks if not c.ok])
            statement = pkg.statement()
            assert statement["previous"] == (previous_link(previous.statement()) if previous else None)
            previous = pkg
    finally:
        engine.dispose()

    # The backfill daemon closes each backfill on its next tick.
    tool = load_backfill_tool()
    statuses = tool.wait_for_backfills(stack.url, [o.backfill_id for o in stack.outcomes], timeout_s=90)
    assert set(statuses.values()) <= {"COMPLETED_SUCCESS", "COMPLETED"}, statuses
    print(f"timings: {stack.timings}", flush=True)


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


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        message = "chromium not installed (apt-get install chromium, or set CHROMIUM_BIN)"
        if _ci():
            pytest.fail(message)
        pytest.skip(message)
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


def test_the_ui_renders_the_asset_graph_and_a_partitions_reconciliation_metadata(stack, chromium, tmp_path):
    from finance_pipeline.export import registry
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.proof.package import Package

    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # The asset graph: the reconciliation group's lineage shows its assets as nodes, with the
    # extract and provider assets upstream and the proof downstream.
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
    day, outcome = DAYS[1], stack.outcomes[1]
    [run_id] = outcome.runs
    labels = ["matched", "ledger_entries", "discrepancies_total", "discrepancies_by_class"]
    report_url = f"{stack.url}/assets/reconciliation_report?view=partitions&partition={day}"
    dom = _dump_dom(chromium, tmp_path, report_url, [run_id[:8], *labels])
    (ARTIFACTS / "ui-reconciliation-report.html").write_text(dom)
    tokens = _visible_text(dom)
    missing = [text for text in (day, run_id[:8], *labels) if text not in tokens]
    assert not missing, f"partition page lacks {missing} (DOM saved to build/artifacts/ui-reconciliation-report.html)"
    engine = create_ledger_engine(stack.world.database_url)
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
