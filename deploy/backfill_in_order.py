#!/usr/bin/env python3
"""Backfill daily partitions in chain order through the Dagster GraphQL API.

    python deploy/backfill_in_order.py --url http://dagster.internal:3000 2026-11-01 2026-11-03

Why not one backfill of the whole range: the assets have no backfill policy, so a multi-day
backfill starts one run per day, and the queue may run them side by side (only runs of the
same day are serialised, by the `dagster/partition` limit in dagster.yaml). Proofs chain:
day N links to day N-1's published proof. A day whose predecessor is still running either
fails (the proof step refuses a gap) or, when nothing at all is published yet, silently
starts a second chain. Run retries cannot fix either: a retry starts at once, long before
day N-1 has been published, and the wrong first link is not a failure at all.

So this launches one single-day backfill per day (`launchPartitionBackfill`, every asset of
the code location), waits until that day's runs have finished, and launches the next day
only when they all succeeded. It stops at the first day that does not publish, so the
chain is never broken and the operator sees exactly which day needs attention.

Only the standard library and httpx (a dependency of the project) are used.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx

TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

_LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

_BACKFILL = """
query Backfill($id: String!, $tags: [ExecutionTag!]) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status }
    ... on Error { message }
  }
  runsOrError(filter: {tags: $tags}) {
    __typename
    ... on Runs { results { runId status } }
    ... on Error { message }
  }
}"""

_MATERIALIZED = """
query Materialized($key: AssetKeyInput!, $day: String!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: [$day], limit: 1) { runId partition } }
  }
}"""

_ASSETS = """
query Assets {
  assetNodes { assetKey { path } isPartitioned isExecutable }
}"""

_LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}"""


class BackfillError(RuntimeError):
    pass


@dataclass
class DayOutcome:
    day: str
    backfill_id: str
    backfill_status: str
    runs: dict[str, str] = field(default_factory=dict)  # run id -> status

    published_by: str | None = None  # run that materialized the day's proof package

    @property
    def succeeded(self) -> bool:
        """A run of the day succeeded and the day's proof package was materialized."""
        return any(s == "SUCCESS" for s in self.runs.values()) and self.published_by is not None


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
            raise BackfillError(f"GraphQL errors (HTTP {response.status_code}): {body['errors']}")
        if response.status_code != 200 or "data" not in body:
            raise BackfillError(f"HTTP {response.status_code} from {self.endpoint}: {response.text[:2000]}")
        return body["data"]

    def close(self) -> None:
        self.http.close()


def wait_for_location(gql: DagsterGraphQL, name: str, timeout_s: float = 120.0) -> None:
    """Until the code location is loaded (the webserver starts before its code server)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            data = gql(_LOCATIONS)["workspaceOrError"]
            entries = {e["name"]: e for e in data.get("locationEntries", [])}
            entry = entries.get(name)
            if entry and entry["locationOrLoadError"]:
                if entry["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    return
                if entry["locationOrLoadError"]["__typename"] == "PythonError":
                    raise BackfillError(f"code location {name} failed to load: "
                                        f"{entry['locationOrLoadError']['message']}")
            last = entry
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1.0)
    raise BackfillError(f"code location {name} not loaded after {timeout_s:.0f}s (last: {last})")


def partitioned_asset_keys(gql: DagsterGraphQL) -> list[list[str]]:
    nodes = gql(_ASSETS)["assetNodes"]
    return sorted(n["assetKey"]["path"] for n in nodes if n["isPartitioned"] and n["isExecutable"])


# Run config that executes every step in the run worker's own process instead of one
# subprocess per step: each subprocess re-imports the code location (pandas, Great
# Expectations), which costs more than the steps themselves for one day of data.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def launch_backfill(gql: DagsterGraphQL, days: list[str], asset_keys: list[list[str]], title: str = "",
                    run_config: dict | None = None) -> str:
    params = {"partitionNames": days, "assetSelection": [{"path": k} for k in asset_keys],
              "title": title or f"backfill {days[0]}..{days[-1]}"}
    if run_config:
        params["runConfigData"] = run_config
    result = gql(_LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"launchPartitionBackfill: {result['__typename']}: {result.get('message')}")
    return result["backfillId"]


def backfill_state(gql: DagsterGraphQL, backfill_id: str) -> tuple[str, dict[str, str]]:
    data = gql(_BACKFILL, {"id": backfill_id, "tags": [{"key": "dagster/backfill", "value": backfill_id}]})
    backfill = data["partitionBackfillOrError"]
    if backfill["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {backfill.get('message')}")
    runs = data["runsOrError"]
    if runs["__typename"] != "Runs":
        raise BackfillError(f"runs of backfill {backfill_id}: {runs.get('message')}")
    return backfill["status"], {r["runId"]: r["status"] for r in runs["results"]}


def proof_materialized_by(gql: DagsterGraphQL, day: str, proof_asset: str = "proof_package") -> str | None:
    """The run that materialized ``proof_asset`` for ``day``, if any."""
    data = gql(_MATERIALIZED, {"key": {"path": [proof_asset]}, "day": day})["assetOrError"]
    if data["__typename"] != "Asset" or not data["assetMaterializations"]:
        return None
    return data["assetMaterializations"][0]["runId"]


def wait_for_day(gql: DagsterGraphQL, day: str, backfill_id: str, timeout_s: float,
                 poll_s: float = 1.0, retry_settle_s: float = 20.0) -> DayOutcome:
    """Until the day has a successful run, or its runs all failed and no retry followed within
    ``retry_settle_s`` (the daemon's run-retry loop polls every few seconds), or the backfill
    itself ended. The backfill daemon's own bookkeeping (a tick every 30 s) is not waited for."""
    deadline = time.monotonic() + timeout_s
    failed_since = None
    status, runs = "REQUESTED", {}
    while time.monotonic() < deadline:
        status, runs = backfill_state(gql, backfill_id)
        all_done = bool(runs) and all(s in TERMINAL_RUN for s in runs.values())
        if status in TERMINAL_BACKFILL and (all_done or not runs):
            return DayOutcome(day, backfill_id, status, runs)
        if all_done and any(s == "SUCCESS" for s in runs.values()):
            return DayOutcome(day, backfill_id, status, runs)
        if all_done:
            failed_since = failed_since or time.monotonic()
            if time.monotonic() - failed_since >= retry_settle_s:
                return DayOutcome(day, backfill_id, status, runs)
        else:
            failed_since = None
        time.sleep(poll_s)
    raise BackfillError(f"{day}: backfill {backfill_id} not finished after {timeout_s:.0f}s "
                        f"(status {status}, runs {runs})")


def backfill_in_order(url: str, days: list[str], *, location: str = "finance_pipeline",
                      asset_keys: list[list[str]] | None = None, timeout_per_day_s: float = 600.0,
                      run_config: dict | None = None, log=print) -> list[DayOutcome]:
    """One single-day backfill per day, in order; stops at the first day that did not succeed."""
    gql = DagsterGraphQL(url)
    try:
        wait_for_location(gql, location)
        keys = asset_keys or partitioned_asset_keys(gql)
        outcomes = []
        for day in days:
            backfill_id = launch_backfill(gql, [day], keys, title=f"chain {day}", run_config=run_config)
            log(f"{day}: backfill {backfill_id} launched ({len(keys)} assets)")
            outcome = wait_for_day(gql, day, backfill_id, timeout_per_day_s)
            outcome.published_by = proof_materialized_by(gql, day)
            outcomes.append(outcome)
            log(f"{day}: {'published' if outcome.succeeded else 'FAILED'} (backfill {outcome.backfill_status}, "
                f"runs {outcome.runs})")
            if not outcome.succeeded:
                log(f"stopping: later days link to {day}, which did not publish")
                break
        return outcomes
    finally:
        gql.close()


def wait_for_backfills(url: str, backfill_ids: list[str], timeout_s: float = 120.0) -> dict[str, str]:
    """Final statuses, once the backfill daemon has marked each backfill finished."""
    gql = DagsterGraphQL(url)
    try:
        deadline = time.monotonic() + timeout_s
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {b: backfill_state(gql, b)[0] for b in backfill_ids}
            if all(s in TERMINAL_BACKFILL for s in statuses.values()):
                return statuses
            time.sleep(1.0)
        raise BackfillError(f"backfills not finished after {timeout_s:.0f}s: {statuses}")
    finally:
        gql.close()


def day_range(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    if b < a:
        raise SystemExit(f"{last} is before {first}")
    return [(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("first", help="first day, YYYY-MM-DD")
    parser.add_argument("last", nargs="?", help="last day (default: first)")
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="Dagster webserver")
    parser.add_argument("--location", default="finance_pipeline")
    parser.add_argument("--timeout-per-day", type=float, default=1800.0)
    parser.add_argument("--in-process", action="store_true",
                        help="run each day's steps in the run worker process (no subprocess per step)")
    args = parser.parse_args(argv)
    outcomes = backfill_in_order(args.url, day_range(args.first, args.last or args.first),
                                 location=args.location, timeout_per_day_s=args.timeout_per_day,
                                 run_config=IN_PROCESS if args.in_process else None)
    return 0 if outcomes and all(o.succeeded for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
