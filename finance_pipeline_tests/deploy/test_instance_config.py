"""The instance yaml files load into real DagsterInstances, and the deployment files are
config-checked against the classes they configure (no docker or kubernetes needed)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from finance_pipeline_tests.fixtures.postgres import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
LOCAL_YAML = ROOT / "dagster.yaml"
POSTGRES_YAML = ROOT / "deploy" / "dagster.postgres.yaml"
ECS_YAML = ROOT / "deploy" / "ecs" / "dagster.yaml"
HELM_VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
INSTANCE_YAMLS = (LOCAL_YAML, POSTGRES_YAML, ECS_YAML)
MODULE = "finance_pipeline.definitions"

FAKE_ECS_ENV = {
    "ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/finance-run-execution",
    "ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/finance-run-task",
    "ECS_LOG_GROUP": "/ecs/finance-pipeline/runs",
    "DAGSTER_PG_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster-pg-AbCdEf",
    "DAGSTER_COMPUTE_LOG_BUCKET": "finance-dagster-compute-logs",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",  # ECS sets both in every task
}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def pg_env(url: str) -> dict[str, str]:
    """DAGSTER_PG_* for a SQLAlchemy URL of the local server."""
    u = sa.engine.make_url(url)
    return {"DAGSTER_PG_HOST": u.host or "127.0.0.1", "DAGSTER_PG_PORT": str(u.port or 5432),
            "DAGSTER_PG_USER": u.username or "postgres", "DAGSTER_PG_PASSWORD": u.password or "",
            "DAGSTER_PG_DB": u.database}


def dagster_home(tmp_path: Path, source: Path) -> Path:
    home = tmp_path / f"home_{source.parent.name}_{source.stem}"
    home.mkdir()
    shutil.copy(source, home / "dagster.yaml")
    return home


def processed_class_config(section: dict[str, Any]) -> dict[str, Any]:
    """Validate a `module`/`class`/`config` block against the class's own config schema (as the
    instance does when it builds the object) and return the processed config."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._serdes.config_class import ConfigurableClassData, class_from_code_pointer

    data = ConfigurableClassData(section["module"], section["class"], "{}")  # maps dagster.core -> dagster._core
    klass = class_from_code_pointer(data.module_name, data.class_name)
    result = process_config(resolve_to_config_type(klass.config_type()), section.get("config") or {})
    assert result.success, [e.message for e in result.errors]
    return result.value


def _assert_queue_policy(inst: dg.DagsterInstance) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    coordinator = inst.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    limits = {lim["key"]: lim for lim in coordinator.get_run_queue_config().tag_concurrency_limits}
    assert limits["dagster/partition"] == {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
                                           "limit": 1}
    assert limits["dagster/backfill"]["limit"] >= 1
    assert inst.run_retries_enabled and inst.run_retries_max_retries >= 1
    assert inst.run_retries_retry_on_asset_or_op_failure is False


# --- the two instance profiles, loaded for real ---------------------------------------------------

def test_local_default_loads_into_a_sqlite_instance(tmp_path):
    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path, LOCAL_YAML))) as inst:
        assert type(inst.run_storage).__name__ == "SqliteRunStorage"
        _assert_queue_policy(inst)
        assert inst.get_runs() == []


@pytest.mark.postgres
def test_postgres_profile_loads_into_a_postgres_instance_on_a_fresh_database(tmp_path, monkeypatch):
    from dagster._core.test_utils import create_run_for_test
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    url = create_database("fp_dagster")
    try:
        for k, v in pg_env(url).items():
            monkeypatch.setenv(k, v)
        with dg.DagsterInstance.from_config(str(dagster_home(tmp_path, POSTGRES_YAML))) as inst:
            assert isinstance(inst.run_storage, PostgresRunStorage)
            assert isinstance(inst.event_log_storage, PostgresEventLogStorage)
            assert isinstance(inst.schedule_storage, PostgresScheduleStorage)
            _assert_queue_policy(inst)
            assert inst.run_monitoring_enabled
            run = create_run_for_test(inst, job_name="smoke", tags={"dagster/partition": "2026-11-01"})
            assert [r.run_id for r in inst.get_runs()] == [run.run_id]
        # The runs really are in that database.
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 1
        engine.dispose()
    finally:
        drop_database(url)


def test_postgres_profile_reads_every_connection_setting_from_the_environment():
    db = dict(load(POSTGRES_YAML)["storage"]["postgres"]["postgres_db"])
    # psycopg2 explicitly: SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which breaks
    # dagster-postgres's NOTIFY statements (the end-to-end test catches it at run time).
    assert db.pop("scheme") == "postgresql+psycopg2"
    assert load(HELM_VALUES)["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert {k: v["env"] for k, v in db.items()} == {
        "hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT", "username": "DAGSTER_PG_USER",
        "password": "DAGSTER_PG_PASSWORD", "db_name": "DAGSTER_PG_DB",
    }


def test_queue_policy_and_retries_are_the_same_in_every_profile():
    blocks = [(load(p)["run_coordinator"], load(p)["run_retries"]) for p in INSTANCE_YAMLS]
    assert all(b == blocks[0] for b in blocks), "dagster.yaml, deploy/dagster.postgres.yaml and deploy/ecs/dagster.yaml differ"
    for path in INSTANCE_YAMLS:
        processed_class_config(load(path)["run_coordinator"])


# --- ECS -------------------------------------------------------------------------------------------

def test_ecs_instance_yaml_is_valid_and_the_launcher_accepts_its_config(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config
    from dagster_aws.ecs import EcsRunLauncher

    for k, v in FAKE_ECS_ENV.items():
        monkeypatch.setenv(k, v)
    # The whole file against the instance schema...
    home = dagster_home(tmp_path, ECS_YAML)
    config, _ = dagster_instance_config(str(home))
    launcher_section = config["run_launcher"]
    assert (launcher_section["module"], launcher_section["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    # ...each configurable class against its own schema...
    launcher_config = processed_class_config(launcher_section)
    processed_class_config(config["compute_logs"])
    processed_class_config(config["run_coordinator"])
    # ...and the launcher built from it (its own invariants: prefix length, tag allow list).
    launcher = EcsRunLauncher.from_config_value(None, launcher_config)
    assert launcher.container_name == "run"
    assert launcher.task_definition is None and launcher.use_current_ecs_task_config
    td = launcher.task_definition_dict
    assert td["execution_role_arn"] == FAKE_ECS_ENV["ECS_EXECUTION_ROLE_ARN"]
    assert td["task_role_arn"] == FAKE_ECS_ENV["ECS_TASK_ROLE_ARN"]
    assert td["requires_compatibilities"] == ["FARGATE"]
    assert launcher.secrets == [{"name": "DAGSTER_PG_PASSWORD",
                                 "valueFrom": FAKE_ECS_ENV["DAGSTER_PG_PASSWORD_SECRET_ARN"]}]
    assert launcher.secrets_tags == []
    # The run task gets the instance settings and the (still unresolved) secret references.
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB",
                 "DATABASE_URL", "STRIPE_API_KEY", "PAYOUT_API_TOKEN"):
        assert name in launcher.env_vars
    assert "DAGSTER_PG_PASSWORD" not in launcher.env_vars  # injected by ECS from Secrets Manager
    # Same storage block as the Postgres profile.
    assert config["storage"] == load(POSTGRES_YAML)["storage"]


def test_ecs_config_check_is_real():
    """A launcher config with a mistake fails the same check."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster_aws.ecs import EcsRunLauncher

    broken = dict(load(ECS_YAML)["run_launcher"]["config"])
    broken["secrets"] = [{"name": "DAGSTER_PG_PASSWORD"}]  # valueFrom missing
    broken["task_definiton"] = "typo"
    result = process_config(resolve_to_config_type(EcsRunLauncher.config_type()), broken)
    assert not result.success
    messages = " ".join(e.message for e in result.errors)
    assert "valueFrom" in messages and "task_definiton" in messages


@pytest.mark.postgres
def test_ecs_instance_yaml_loads_into_a_real_instance(tmp_path, monkeypatch):
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    url = create_database("fp_dagster_ecs")
    try:
        for k, v in {**FAKE_ECS_ENV, **pg_env(url)}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with dg.DagsterInstance.from_config(str(dagster_home(tmp_path, ECS_YAML))) as inst:
            assert isinstance(inst.run_launcher, EcsRunLauncher)
            assert isinstance(inst.compute_log_manager, S3ComputeLogManager)
            _assert_queue_policy(inst)
    finally:
        drop_database(url)


# --- Kubernetes (Helm values for the dagster chart) --------------------------------------------------

def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_helm_values_configure_k8s_launcher_user_code_and_the_same_queue_policy():
    values = load(HELM_VALUES)
    local = load(LOCAL_YAML)

    # User code deployment: the image the Dockerfile builds, serving the same module.
    ucd = values["dagster-user-deployments"]
    assert ucd["enabled"] is True and ucd["enableSubchart"] is True
    [dep] = ucd["deployments"]
    assert dep["name"] == "finance-pipeline"
    assert set(dep["image"]) == {"repository", "tag", "pullPolicy"}
    assert dep["image"]["tag"] != "latest"
    assert dep["codeServerArgs"] == ["-m", MODULE]
    assert isinstance(dep["port"], int)
    assert dep["includeConfigInLaunchedRuns"] == {"enabled": True}

    # Runs: K8sRunLauncher, with the secrets the code server has.
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    for key in ("imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets", "envVars",
                "volumeMounts", "volumes"):
        assert key in k8s, key
    dep_secrets = {s["name"] for s in dep["envSecrets"]}
    assert dep_secrets and {s["name"] for s in k8s["envSecrets"]} <= dep_secrets
    assert "image" not in k8s  # the image comes from the user code deployment

    # Instance storage: external Postgres with the password from a named secret.
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and pg["postgresqlDatabase"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]

    # Queue policy and retries: the same as dagster.yaml, in the chart's camelCase.
    daemon = values["dagsterDaemon"]
    rc = daemon["runCoordinator"]
    assert rc["enabled"] is True and rc["type"] == "QueuedRunCoordinator"
    queued = {_snake(k): v for k, v in rc["config"]["queuedRunCoordinator"].items()}
    assert queued == local["run_coordinator"]["config"]
    processed_class_config({"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator",
                            "config": queued})
    assert {_snake(k): v for k, v in daemon["runRetries"].items()} == local["run_retries"]


def test_image_and_module_are_consistent_across_dockerfile_helm_workspace_and_pyproject():
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    assert "-c constraints.txt" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert cmd, "Dockerfile needs an exec-form CMD"
    argv = yaml.safe_load(cmd.group(1))
    assert argv[:3] == ["dagster", "code-server", "start"] and argv[argv.index("-m") + 1] == MODULE
    default_yaml = re.search(r"^ARG DAGSTER_YAML=(\S+)$", dockerfile, re.M).group(1)
    assert (ROOT / default_yaml).is_file()

    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "finance_pipeline", "workspace.yaml",
                   default_yaml, "deploy/ecs/dagster.yaml"):
        assert not any(needed == pat or needed.startswith(pat.rstrip("/") + "/") for pat in ignored), needed

    workspace = load(ROOT / "workspace.yaml")
    assert workspace["load_from"][0]["python_module"]["module_name"] == MODULE
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == MODULE

    deploy = load(ROOT / ".github" / "workflows" / "deploy.yml")
    repo = load(HELM_VALUES)["dagster-user-deployments"]["deployments"][0]["image"]["repository"]
    assert deploy["env"]["IMAGE_REPOSITORY"] == repo


def _env_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            return {node["env"]}
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    return set()


def test_every_environment_variable_the_deployment_reads_is_documented():
    doc = (ROOT / "docs" / "deployment.md").read_text()
    names = set()
    for path in (POSTGRES_YAML, ECS_YAML):
        names |= _env_refs(load(path))
    names |= set(load(ECS_YAML)["run_launcher"]["config"]["env_vars"])
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert not missing, f"docs/deployment.md does not document {missing}"


@pytest.mark.slow
def test_the_images_command_serves_the_code_location(tmp_path):
    """The Dockerfile's CMD, run in this environment (no docker here): the code server starts
    and answers gRPC health checks."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    argv = yaml.safe_load(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    argv[argv.index("-p") + 1] = port
    argv[argv.index("-h") + 1] = "127.0.0.1"
    bin_dir = Path(sys.executable).parent
    argv[0] = str(bin_dir / argv[0])
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home(tmp_path, LOCAL_YAML))}
    server = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            check = subprocess.run([str(bin_dir / "dagster"), "api", "grpc-health-check", "-p", port],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "code server not healthy after 90 s"
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
