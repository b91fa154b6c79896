"""The docs' account of backfills, concurrency and retries states what dagster.yaml ships."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "docs" / "deployment.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
INSTANCES = [ROOT / "dagster.yaml", ROOT / "deploy" / "dagster.postgres.yaml", ROOT / "deploy" / "ecs" / "dagster.yaml"]
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}


def _section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    return text[start: nxt if nxt != -1 else None]


def _policy() -> dict[str, int | bool]:
    cfg = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    queue = cfg["run_coordinator"]["config"]
    limits = {lim["key"]: lim["limit"] for lim in queue["tag_concurrency_limits"]}
    return {
        "max_concurrent_runs": queue["max_concurrent_runs"],
        "dequeue_interval_seconds": queue["dequeue_interval_seconds"],
        "dagster/backfill": limits["dagster/backfill"],
        "dagster/partition": limits["dagster/partition"],
        "max_retries": cfg["run_retries"]["max_retries"],
        "retry_on_asset_or_op_failure": cfg["run_retries"]["retry_on_asset_or_op_failure"],
    }


def test_every_profile_ships_the_policy_the_docs_describe():
    for path in INSTANCES:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["run_coordinator"] == yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"], path
        assert cfg["run_retries"] == yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_retries"], path


def test_deployment_md_states_every_number_of_dagster_yaml():
    section = _section(DEPLOYMENT.read_text(), "## Backfills, concurrency and retries")
    p = _policy()
    assert f"`max_concurrent_runs: {p['max_concurrent_runs']}`" in section
    assert f"`dequeue_interval_seconds: {p['dequeue_interval_seconds']}`" in section
    assert f"`dagster/backfill` limit `{p['dagster/backfill']}`" in section
    assert f"`dagster/partition` limit `{p['dagster/partition']}`" in section
    assert f"`max_retries: {p['max_retries']}`" in section
    assert f"`retry_on_asset_or_op_failure: {str(p['retry_on_asset_or_op_failure']).lower()}`" in section
    # Every "max_concurrent_runs: N" anywhere in the page is the shipped one.
    for n in re.findall(r"max_concurrent_runs: (\d+)", DEPLOYMENT.read_text()):
        assert int(n) == p["max_concurrent_runs"]


def test_runbook_agrees_with_dagster_yaml_on_backfill_runs_at_once():
    text = " ".join(RUNBOOK.read_text().split())  # sentences wrap across lines
    p = _policy()
    claims = re.findall(r"at most (\w+) backfill runs? at (?:a time|once)", text)
    assert claims, "the runbook should say how many backfill runs run at once"
    for word in claims:
        assert _WORDS.get(word, word) in (p["dagster/backfill"], str(p["dagster/backfill"])), word
    assert "deployment.md#backfills-concurrency-and-retries" in text
    # No page still sends operators to a one-day-at-a-time script.
    for page in (DEPLOYMENT, RUNBOOK, ROOT / "docs" / "restore-drill.md", ROOT / "README.md"):
        assert "backfill_in_order" not in page.read_text(), page


def test_deployment_md_sizes_a_days_task_as_the_ecs_profile_ships_it():
    """The page says which days fit the run task; the task it names is the one ECS launches."""
    section = " ".join(_section(DEPLOYMENT.read_text(), "### A day's memory, and days larger than one task").split())
    ecs = yaml.safe_load((ROOT / "deploy" / "ecs" / "dagster.yaml").read_text())["run_launcher"]["config"]
    res = ecs["run_resources"]
    assert f"({int(res['cpu']) // 1024} vCPU, {int(res['memory']) // 1024} GiB)" in section
    assert "`ecs/cpu` and `ecs/memory` run tags" in section
