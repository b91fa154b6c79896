"""The GitHub workflows: CI runs the test command on Postgres; deploy ships only what CI passed."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
SUCCESS = "github.event.workflow_run.conclusion == 'success'"


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _run_lines(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_ci_runs_make_test_against_a_postgres_service_and_the_asset_checks():
    ci = _load("ci.yml")
    assert ci["name"] == "CI"
    assert "push" in ci["on"] and "pull_request" in ci["on"]
    [job] = ci["jobs"].values()
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    assert str(job["env"]["CI"]).lower() == "true"
    assert "@postgres:5432" in job["env"]["FP_TEST_PG_ADMIN_URL"]  # the service, from the job container
    commands = _run_lines(job)
    assert "make test" in commands
    assert "make demo" in commands  # the pipeline with its blocking asset checks, end to end
    assert "chromium" in commands and "postgresql-client" in commands


def test_deploy_runs_only_after_ci_succeeded_on_main():
    ci, deploy = _load("ci.yml"), _load("deploy.yml")
    # Triggered by CI finishing, and by nothing else (no push, no manual bypass).
    assert set(deploy["on"]) == {"workflow_run"}
    trigger = deploy["on"]["workflow_run"]
    assert trigger["workflows"] == [ci["name"]]
    assert trigger["types"] == ["completed"]
    assert trigger["branches"] == ["main"]

    jobs = deploy["jobs"]

    def gated(name: str) -> bool:
        """The job checks CI's success itself or only runs after a job that does."""
        job = jobs[name]
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        own = SUCCESS in " ".join(str(job.get("if", "")).split())
        return own or any(gated(n) for n in needs)

    assert jobs and all(gated(name) for name in jobs), "every deploy job must depend on CI's success"

    image = jobs["image"]
    assert SUCCESS in " ".join(image["if"].split())
    assert "github.event.workflow_run.head_branch == 'main'" in image["if"]
    [checkout] = [s for s in image["steps"] if str(s.get("uses", "")).startswith("actions/checkout")]
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}"  # the commit CI tested
    builds = [s for s in image["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action")]
    assert builds and all(b["with"]["push"] is True and b["with"]["file"] == "Dockerfile" for b in builds)
    assert image["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"

    deploy_job = jobs["deploy"]
    assert deploy_job["needs"] == "image"
    [step] = deploy_job["steps"]
    assert step["env"]["DIGEST"] == "${{ needs.image.outputs.digest }}"
    assert "$DIGEST" in step["run"] or "${DIGEST}" in step["run"]
