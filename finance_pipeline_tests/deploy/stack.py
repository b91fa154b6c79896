"""A running deployment for end-to-end tests: dagster-webserver and dagster-daemon as separate
processes on the Postgres-backed instance (deploy/dagster.postgres.yaml, a fresh database),
the code location from workspace.yaml, and a GraphQL client that launches work exactly as the
UI does (one `launchPartitionBackfill` for all partitions, `launchPipelineExecution` for
"Materialize").

The daemon runs every run in a fresh subprocess that re-imports the code location, so all
configuration reaches it through the environment of the two processes started here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "finance_pipeline"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"
ALL_ASSETS = ["ledger_counterparts", "ledger_extract", "payout_settlements", "proof_package", "reconciliation",
              "reconciliation_report", "stripe_balance_transactions", "stripe_payouts"]
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


class GraphQLError(RuntimeError):
    pass


class DagsterGraphQL:
    def __init__(self, url: str, timeout_s: float = 30.0):
        self.endpoint = url.rstrip("/") + "/graphql"
        self.http = httpx.Client(timeout=timeout_s)

    def __call__(self, query: str, variables: dict | None = None) -> dict:
        response = self.http.post(self.endpoint, json={"query": query, "variables": variables or {}})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors (HTTP {response.status_code}): {body['errors']}")
        if response.status_code != 200 or "data" not in body:
            raise GraphQLError(f"HTTP {response.status_code} from {self.endpoint}: {response.text[:2000]}")
        return body["data"]

    def close(self) -> None:
        self.http.close()

    # --- what the UI sends ---------------------------------------------------------------

    def launch_backfill(self, days: list[str], assets: list[str] = ALL_ASSETS, title: str = "") -> str:
        """The UI's "Launch backfill": every selected asset, every partition, one request."""
        params = {"partitionNames": days, "assetSelection": [{"path": [a]} for a in assets],
                  "fromFailure": False, "tags": [], "title": title or None}
        result = self(_LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill: {result}")
        return result["backfillId"]

    def materialize(self, assets: list[str], day: str) -> str:
        """The UI's "Materialize…" of one partition of the selected assets."""
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                         "pipelineName": ASSET_JOB, "assetSelection": [{"path": [a]} for a in assets],
                         "assetCheckSelection": []},
            "mode": "default", "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]},
        }
        result = self(_LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            raise GraphQLError(f"launchPipelineExecution: {result}")
        return result["run"]["runId"]

    # --- what the UI shows ---------------------------------------------------------------

    def backfill(self, backfill_id: str) -> dict:
        data = self(_BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {data}")
        return data

    def runs(self, tags: dict[str, str]) -> list[dict]:
        data = self(_RUNS, {"filter": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}})["runsOrError"]
        if data["__typename"] != "Runs":
            raise GraphQLError(f"runs: {data}")
        return data["results"]

    def run(self, run_id: str) -> dict:
        data = self(_RUN, {"id": run_id})["runOrError"]
        if data["__typename"] != "Run":
            raise GraphQLError(f"run {run_id}: {data}")
        return data

    def failure_messages(self, run_id: str) -> list[str]:
        """What the run page shows for its failed steps (the error's message)."""
        events = self(_LOGS, {"id": run_id})["logsForRun"]["events"]
        return [e["error"]["message"] for e in events
                if e["__typename"] == "ExecutionStepFailureEvent" and e.get("error")]

    def wait_for_run(self, run_id: str, timeout_s: float = 300) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in TERMINAL_RUN:
                return run
            time.sleep(1.0)
        raise GraphQLError(f"run {run_id} not finished after {timeout_s:.0f}s")

    def wait_for_backfill(self, backfill_id: str, timeout_s: float = 900, on_tick=None) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.backfill(backfill_id)
            runs = self.runs({"dagster/backfill": backfill_id})
            if on_tick is not None:
                on_tick(data, runs)
            if data["status"] in TERMINAL_BACKFILL and all(r["status"] in TERMINAL_RUN for r in runs):
                return data
            time.sleep(1.0)
        raise GraphQLError(f"backfill {backfill_id} not finished after {timeout_s:.0f}s: {self.backfill(backfill_id)}")

    def wait_for_location(self, name: str = LOCATION, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                data = self(_LOCATIONS)["workspaceOrError"]
                entry = {e["name"]: e for e in data.get("locationEntries", [])}.get(name)
                loaded = entry and entry["locationOrLoadError"]
                if loaded and loaded["__typename"] == "RepositoryLocation":
                    return
                if loaded and loaded["__typename"] == "PythonError":
                    raise GraphQLError(f"code location {name} failed to load: {loaded['message']}")
                last = entry
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(1.0)
        raise GraphQLError(f"code location {name} not loaded after {timeout_s:.0f}s (last: {last})")


_LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""

_LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""

_BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on Error { message }
  }
}"""

_RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status startTime endTime tags { key value } assetSelection { path } } }
    ... on Error { message }
  }
}"""

_RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { runId status startTime endTime tags { key value } assetSelection { path } }
    ... on Error { message }
  }
}"""

_LOGS = """
query Logs($id: ID!) {
  logsForRun(runId: $id) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } }
      }
    }
  }
}"""

_LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}"""


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def selected(run: dict) -> set[str]:
    return {"/".join(a["path"]) for a in run.get("assetSelection") or []}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_env(url: str) -> dict[str, str]:
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
    home: Path
    env: dict[str, str]
    logs: Path
    gql: DagsterGraphQL

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for name in ("webserver.log", "daemon.log"):
            path = self.logs / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    @contextmanager
    def instance(self):
        """The same Postgres-backed instance, opened from the test process."""
        from dagster import DagsterInstance

        old = {k: os.environ.get(k) for k in self.env if k.startswith("DAGSTER_PG_")}
        os.environ.update({k: self.env[k] for k in old})
        try:
            with DagsterInstance.from_config(str(self.home)) as inst:
                yield inst
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextmanager
def running_stack(tmp: Path, dagster_db: str, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Webserver and daemon on a fresh Postgres instance; the world is already in os.environ."""
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    env = {**os.environ, **pg_env(dagster_db), "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    logs = tmp / "logs"
    logs.mkdir()
    workspace = str(ROOT / "workspace.yaml")
    # Create the instance schema once, as a deployment does before starting its services
    # (the Helm chart's migrate job); two processes creating it at once would race.
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    port = _free_port()
    procs: list[subprocess.Popen] = []
    gql = DagsterGraphQL(f"http://127.0.0.1:{port}")
    try:
        for name, argv in (
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
            ("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]),
        ):
            with open(logs / f"{name}.log", "wb") as out:
                procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
        stack = Stack(gql.endpoint[: -len("/graphql")], home, env, logs, gql)
        deadline = time.monotonic() + 90
        while True:
            try:
                gql("{ version }")
                break
            except Exception:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    pytest.fail("the webserver did not come up\n" + stack.log_tail())
                time.sleep(0.5)
        try:
            gql.wait_for_location(LOCATION, timeout_s=90)
        except GraphQLError as exc:
            pytest.fail(f"{exc}\n{stack.log_tail()}")
        yield stack
    finally:
        gql.close()
        for proc in reversed(procs):
            _stop(proc)
