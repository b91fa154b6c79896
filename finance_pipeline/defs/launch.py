"""Materialize daily partitions from the CLI through Dagster, on the configured instance,
so that runs launched by `finance-pipeline` show up in the UI like any other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from finance_pipeline.settings import Settings

_DEFAULT_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def instance(config: Settings) -> dg.DagsterInstance:
    """The instance in ``config.instance_home``: DAGSTER_HOME, or the embedded default
    ./var/dagster_home (created with telemetry off)."""
    home = config.instance_home
    if config.dagster_home is None:
        home.mkdir(parents=True, exist_ok=True)
        cfg = home / "dagster.yaml"
        if not cfg.exists():
            cfg.write_text(_DEFAULT_INSTANCE_YAML)
    # Two commands starting at once on a fresh home would both create the instance's SQLite
    # tables and one would crash ("table ... already exists"): create it under a file lock.
    import fcntl

    home = Path(home).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".finance-pipeline-instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # from_config, as DagsterInstance.get() does with $DAGSTER_HOME, on the home given.
            return dg.DagsterInstance.from_config(str(home))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class DayRun:
    day: str
    run_id: str
    success: bool
    checks: dict[str, bool] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, dict] = field(default_factory=dict)

    @property
    def gates_passed(self) -> bool:
        return all(self.checks.values()) and not self.blocked


def materialize_day(defs: dg.Definitions, day: str, inst: dg.DagsterInstance,
                    tags: dict[str, str] | None = None, log_level: str = "CRITICAL",
                    assets: list[str] | None = None) -> DayRun:
    """Run every asset of one partition (or only ``assets``) in process; failures are
    reported, not raised.

    The full event log goes to the instance (the UI shows it); the caller prints the outcome.
    """
    job = defs.resolve_implicit_global_asset_job_def()
    selection = None if assets is None else [dg.AssetKey(a) for a in assets]
    result = _execute_in_process(job, day, inst, tags or {},
                                 {"loggers": {"console": {"config": {"log_level": log_level}}}}, selection)
    run = DayRun(day=day, run_id=result.run_id, success=result.success)
    for ev in result.get_asset_check_evaluations():
        run.checks[ev.check_name] = ev.passed
    # Steps that never ran: skipped, or held back by a failed upstream step or blocking check.
    run.skipped = sorted(
        n.name for n in job.graph.nodes
        if result.is_node_untouched(n.name) or result.is_node_skipped(n.name)
    )
    # A blocking check that fails also fails its step; that is a gate doing its job, not an error.
    for ev in result.get_step_failure_events():
        error = ev.step_failure_data.error
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            run.blocked.append(ev.step_key)
        else:
            run.failed.append(ev.step_key)
            run.errors[ev.step_key] = _root_message(error)
    run.failed.sort()
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        run.metadata[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return run


def _execute_in_process(job: dg.JobDefinition, day: str, inst: dg.DagsterInstance, tags: dict[str, str],
                        run_config: dict, asset_selection: list[dg.AssetKey] | None = None
                        ) -> dg.ExecuteInProcessResult:
    """``job.execute_in_process(partition_key=day, raise_on_error=False, ...)`` without keeping
    every step's output in memory until the run ends.

    ``JobDefinition.execute_in_process`` always captures outputs (for ``output_for_node``),
    so a day's extract, pulls and reconciliation all stayed alive through the proof step:
    gigabytes at a million entries. The outputs are stored by the IO manager anyway, and the
    result is read from events only. Same steps as dagster 1.13.27's execute_in_process (the
    version is pinned; tests/defs run materialize_day).
    """
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.execution.execute_in_process import (
        core_execute_in_process,
        merge_run_tags,
        type_check_and_normalize_args,
    )

    run_config, op_selection, asset_selection, resource_defs, partition_key, input_values = (
        type_check_and_normalize_args(run_config=run_config, partition_key=day, op_selection=None,
                                      asset_selection=asset_selection, input_values=None, resources=None))
    ephemeral = job.as_ephemeral_job(resource_defs=resource_defs, input_values=input_values,
                                     op_selection=op_selection, asset_selection=asset_selection)
    if ephemeral.partitions_def:
        with partition_loading_context(dynamic_partitions_store=inst) as ctx:
            ephemeral.validate_partition_key(partition_key=partition_key, selected_asset_keys=set(asset_selection),
                                             context=ctx)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral), run_config=run_config, instance=inst,
        output_capturing_enabled=False, raise_on_error=False,
        run_tags=merge_run_tags(job_def=job, partition_key=partition_key, tags=tags,
                                asset_selection=asset_selection, instance=inst, run_config=run_config),
        run_id=None, asset_selection=frozenset(asset_selection),
    )


def _root_message(error) -> str:
    """The user's exception message, not Dagster's 'Error occurred while executing op' wrapper."""
    if error is None:
        return "unknown error"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()

