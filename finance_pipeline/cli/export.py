"""`finance-pipeline export FROM TO` and `finance-pipeline reconcile --replay DIR`."""

from __future__ import annotations

import json
import sys
import time
from datetime import date, timedelta

import click


def _days(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def export_days(days: list[str], *, echo=click.echo, progress: bool = True, config=None) -> list[dict]:
    """Materialize each day through Dagster on the configured instance; one outcome per day.

    ``config``: the Settings (None: this command's environment)."""
    from finance_pipeline.cli.db import current_settings
    from finance_pipeline.definitions import build_definitions
    from finance_pipeline.defs.launch import instance, materialize_day

    config = config or current_settings()
    inst = instance(config)
    defs = build_definitions(config=config)
    first = defs.resolve_assets_def("proof_package").partitions_def.get_first_partition_key()
    outcomes = []
    bar = click.progressbar(days, label="export", file=sys.stderr, show_pos=True) if progress else None
    iterator = bar.__enter__() if bar else days
    try:
        for day in iterator:
            if day < first:
                raise click.UsageError(f"{day} is before the first partition {first} (FP_PARTITIONS_START)")
            t0 = time.perf_counter()
            run = materialize_day(defs, day, inst, tags={"finance_pipeline/launched_by": "export"})
            wall_ms = int((time.perf_counter() - t0) * 1000)
            proof = run.metadata.get("proof_package", {})
            report = run.metadata.get("reconciliation_report", {})
            if proof:
                status = "published" if proof.get("created") else "unchanged"
            elif run.failed:
                status = "failed"
            else:
                status = "blocked"
            outcome = {
                "event": "export.day", "day": day, "status": status, "run_id": run.run_id,
                "proofId": proof.get("proofId"), "location": proof.get("location"),
                "exports.duration_ms": proof.get("exports.duration_ms", wall_ms),
            }
            if status == "blocked":
                outcome["failed_gates"] = sorted(k for k, v in run.checks.items() if not v)
                outcome["discrepancies"] = {k.split("/", 1)[1]: v for k, v in report.items()
                                            if k.startswith("discrepancies/") and v}
            if status == "failed":
                outcome["errors"] = run.errors
            outcomes.append(outcome)
            # One structured line per day for log shippers, one readable line for people.
            click.echo(json.dumps(outcome, sort_keys=True), err=True)
            if status in ("published", "unchanged"):
                echo(f"{day}  {status}  proofId={outcome['proofId']}  location={outcome['location']}  "
                     f"exports.duration_ms={outcome['exports.duration_ms']}")
            elif status == "blocked":
                echo(f"{day}  BLOCKED by {', '.join(outcome['failed_gates'])}  "
                     f"discrepancies={json.dumps(outcome['discrepancies'], sort_keys=True)}  "
                     f"exports.duration_ms={outcome['exports.duration_ms']}")
            else:
                echo(f"{day}  FAILED  " + "; ".join(f"{k}: {v}" for k, v in run.errors.items()))
    finally:
        if bar:
            bar.__exit__(None, None, None)
    return outcomes


@click.command("export")
@click.argument("from_day", metavar="FROM", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.argument("to_day", metavar="TO", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def export_cmd(from_day, to_day, no_progress) -> None:
    """Reconcile, prove and publish every day from FROM to TO (inclusive, UTC).

    Exit 0 only if every day was published (or was already, identically).
    """
    start, end = from_day.date(), to_day.date()
    if end < start:
        raise click.UsageError(f"TO ({end}) is before FROM ({start})")
    outcomes = export_days(_days(start, end), progress=not no_progress)
    bad = [o["day"] for o in outcomes if o["status"] not in ("published", "unchanged")]
    if bad:
        click.echo(f"not published: {', '.join(bad)}", err=True)
        sys.exit(1)


# Every asset of a day but the proof: what `check` materializes.
GATE_ASSETS = ["ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements", "reconciliation",
               "reconciliation_report", "ledger_counterparts"]


def check_days(days: list[str], *, echo=click.echo, config=None) -> list[dict]:
    """Extract, pull, reconcile and run every gate for each day, through Dagster on the
    configured instance, without the proof step: nothing is signed or published.

    ``config``: the Settings (None: this command's environment)."""
    from finance_pipeline.cli.db import current_settings, ledger_engine
    from finance_pipeline.definitions import build_definitions
    from finance_pipeline.defs.launch import instance, materialize_day
    from finance_pipeline.quality import verdicts

    config = config or current_settings()
    inst = instance(config)
    defs = build_definitions(config=config)
    first = defs.resolve_assets_def("proof_package").partitions_def.get_first_partition_key()
    outcomes = []
    with ledger_engine(config.database_url) as engine:
        for day in days:
            if day < first:
                raise click.UsageError(f"{day} is before the first partition {first} (FP_PARTITIONS_START)")
            run = materialize_day(defs, day, inst, tags={"finance_pipeline/launched_by": "check"},
                                  assets=GATE_ASSETS)
            verdict = verdicts.latest(engine, day)
            if verdict is None or verdict.run_id != run.run_id:
                status, failed, lines = "failed", [], []
            else:
                status = "passed" if verdict.passed else "blocked"
                failed, lines = verdict.failed_gates, verdict.failed_expectations()
            outcome = {"event": "check.day", "day": day, "status": status, "run_id": run.run_id,
                       "failed_gates": failed, "failed_expectations": lines}
            if status == "failed":
                outcome["errors"] = run.errors
            outcomes.append(outcome)
            click.echo(json.dumps(outcome, sort_keys=True), err=True)
            if status == "passed":
                echo(f"{day}  PASSED  {', '.join(verdicts.GATES)}  run={run.run_id}")
            elif status == "blocked":
                echo(f"{day}  BLOCKED by {', '.join(failed)}  run={run.run_id}")
                for line in lines:
                    echo(f"  - {line}")
            else:
                echo(f"{day}  FAILED before the gates ran  "
                     + ("; ".join(f"{k}: {v}" for k, v in run.errors.items()) or f"run={run.run_id}"))
    return outcomes


@click.command("check")
@click.argument("from_day", metavar="FROM", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.argument("to_day", metavar="TO", type=click.DateTime(formats=["%Y-%m-%d"]))
def check_cmd(from_day, to_day) -> None:
    """Run every gate for each day from FROM to TO (inclusive, UTC) without publishing.

    Extracts the ledger, pulls both providers, reconciles and runs the Great Expectations
    suites and the parity gate, printing each failed expectation. Never signs or publishes.
    Exit 0 only if every gate passed on every day.
    """
    start, end = from_day.date(), to_day.date()
    if end < start:
        raise click.UsageError(f"TO ({end}) is before FROM ({start})")
    outcomes = check_days(_days(start, end))
    bad = [o["day"] for o in outcomes if o["status"] != "passed"]
    if bad:
        click.echo(f"gates did not pass: {', '.join(bad)}", err=True)
        sys.exit(1)


@click.command("reconcile")
@click.option("--replay", "replay_dir", required=True, type=click.Path(file_okay=False),
              help="A day's package folder (ledger_entries.jsonl, provider_records.jsonl, ...).")
def reconcile_cmd(replay_dir) -> None:
    """Re-run a day's reconciliation offline from a package and compare the report bytes."""
    from finance_pipeline.export.replay import ReplayError, UnsignedInputError, replay_dir as run_replay

    try:
        result = run_replay(replay_dir)
    except UnsignedInputError as exc:
        click.echo(f"NOT REPLAYED: {exc}", err=True)
        sys.exit(1)
    except (ReplayError, OSError, ValueError, KeyError) as exc:
        click.echo(f"cannot replay {replay_dir}: {exc}", err=True)
        sys.exit(2)
    if result.identical:
        click.echo(f"identical: the replayed report matches {replay_dir}/reconciliation_report.json byte for byte")
        return
    click.echo("DIFFERENT: the replayed report does not match the published one", err=True)
    pub, rep = json.loads(result.published), json.loads(result.replayed)
    for key in ("summary", "discrepancies"):
        if pub.get(key) != rep.get(key):
            click.echo(f"  {key}: published {json.dumps(pub.get(key))[:300]}", err=True)
            click.echo(f"  {key}: replayed  {json.dumps(rep.get(key))[:300]}", err=True)
    sys.exit(1)


COMMANDS: list[click.Command] = [export_cmd, check_cmd, reconcile_cmd]
