"""`finance-pipeline demo ...`: the embedded-default demo (seed, run, dev UI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import click

from finance_pipeline import settings


def _paths() -> dict[str, Path]:
    var = settings.var_dir()
    return {"stripe": var / "sandboxes" / "stripe.json", "payout": var / "sandboxes" / "payouts.json"}


def _database_url(explicit: str | None) -> str:
    return explicit or os.environ.get("DATABASE_URL") or settings.default_database_url()


def _do_seed(database_url: str, start: date, days: int, seed: int, inject: int):
    from finance_pipeline.demo.seed import seed as run_seed
    from finance_pipeline.ledger.engine import create_ledger_engine

    paths = _paths()
    engine = create_ledger_engine(database_url)
    try:
        return run_seed(engine, paths["stripe"], paths["payout"], start=start, days=days, seed=seed,
                        inject=inject)
    finally:
        engine.dispose()


@contextmanager
def _sandboxes(stripe_port: int, payout_port: int):
    """Start both sandboxes on the given ports (0: any free port) and point the env at them."""
    from finance_pipeline.sandboxes import start_payout_sandbox, start_stripe_sandbox

    paths = _paths()
    stripe = start_stripe_sandbox(paths["stripe"], port=stripe_port,
                                  api_key=os.environ.get("STRIPE_API_KEY", settings.DEFAULT_STRIPE_API_KEY))
    payout = start_payout_sandbox(paths["payout"], port=payout_port,
                                  token=os.environ.get("PAYOUT_API_TOKEN", settings.DEFAULT_PAYOUT_TOKEN))
    saved = {k: os.environ.get(k) for k in ("STRIPE_API_BASE", "PAYOUT_API_BASE")}
    os.environ["STRIPE_API_BASE"], os.environ["PAYOUT_API_BASE"] = stripe.url, payout.url
    try:
        yield stripe, payout
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stripe.stop()
        payout.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_start_opt = click.option("--start", "start", default=settings.DEFAULT_PARTITIONS_START, show_default=True,
                          type=click.DateTime(formats=["%Y-%m-%d"]), help="First demo day (UTC).")
_days_opt = click.option("--days", default=3, show_default=True, type=click.IntRange(1, 366))
_seed_opt = click.option("--seed", "seed_value", default=7, show_default=True, type=int,
                         help="Random seed: the same seed gives the same data.")
_inject_opt = click.option("--inject", default=1, show_default=True, type=click.IntRange(0, 20),
                           help="Injected discrepancies of every class (spread over the days).")
_db_opt = click.option("--database-url", default=None,
                       help="Ledger database (default: $DATABASE_URL, else SQLite under ./var).")


@click.group()
def demo() -> None:
    """A realistic demo on the embedded default: SQLite ledger, local sandboxes, local storage."""


@demo.command("seed")
@_start_opt
@_days_opt
@_seed_opt
@_inject_opt
@_db_opt
def seed_cmd(start, days, seed_value, inject, database_url) -> None:
    """Write a deterministic scenario to the ledger and both sandboxes' data files."""
    res = _do_seed(_database_url(database_url), start.date(), days, seed_value, inject)
    sc = res.scenario
    click.echo(f"seeded {len(sc.entries)} journal entries over {days} day(s) from {sc.day_keys[0]}, "
               f"{len(sc.stripe_balance_transactions)} Stripe balance transactions, "
               f"{len(sc.creator_payouts)} creator payouts")
    click.echo(f"stripe sandbox data: {res.stripe_data}\npayout sandbox data: {res.payout_data}")
    for inj in sc.injections:
        click.echo(f"  injected {inj.cls:<18} {inj.day}  {inj.note}")


@demo.command("run")
@_start_opt
@_days_opt
@_seed_opt
@_inject_opt
@_db_opt
def run_cmd(start, days, seed_value, inject, database_url) -> None:
    """Seed, start the sandboxes, materialize every asset for each day, print where results are."""
    from finance_pipeline.defs.launch import instance, materialize_day, storage_dir
    from finance_pipeline.definitions import build_definitions

    db = _database_url(database_url)
    if database_url:
        os.environ["DATABASE_URL"] = db  # the Dagster ledger resource reads it when definitions load
    res = _do_seed(db, start.date(), days, seed_value, inject)
    click.echo(f"ledger: {db}  ({len(res.scenario.entries)} demo entries)")
    inst = instance()
    ports = [p if _port_free(p) else 0 for p in (settings.DEFAULT_STRIPE_PORT, settings.DEFAULT_PAYOUT_PORT)]
    blocked = []
    with _sandboxes(*ports) as (stripe, payout):
        click.echo(f"sandboxes: stripe {stripe.url}  payouts {payout.url}")
        defs = build_definitions(partitions_start=start.date().isoformat())
        for i in range(days):
            day = (start.date() + timedelta(days=i)).isoformat()
            run = materialize_day(defs, day, inst, tags={"finance_pipeline/launched_by": "demo"})
            report = run.metadata.get("reconciliation_report", {})
            counts = {k.split("/", 1)[1]: v for k, v in report.items() if k.startswith("discrepancies/") and v}
            gates = " ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in sorted(run.checks.items()))
            click.echo(f"{day}  run {run.run_id[:8]}  matched={report.get('matched', '?')}  "
                       f"discrepancies={json.dumps(counts, sort_keys=True)}  {gates}")
            if run.failed:
                for step in run.failed:
                    click.echo(f"  step {step} failed: {run.errors.get(step, '')}", err=True)
                sys.exit(1)
            if not run.gates_passed:
                blocked.append(day)
    click.echo(f"\nreports: {storage_dir() / 'reconciliation_report'}/<day>.json")
    click.echo(f"Dagster runs: {os.environ['DAGSTER_HOME']} (open with `make dev`)")
    if blocked:
        click.echo(f"gates blocked publication for {', '.join(blocked)}: the demo injects discrepancies "
                   "on purpose; fix them with adjusting entries (`finance-pipeline journal post -`) and re-run.")


@demo.command("dev")
@click.option("--port", default=3000, show_default=True, type=int, help="Dagster UI port.")
def dev_cmd(port) -> None:
    """Start the sandboxes on their default ports and the Dagster UI on the demo data."""
    from finance_pipeline.defs.launch import instance

    instance()  # makes sure DAGSTER_HOME exists
    with _sandboxes(settings.DEFAULT_STRIPE_PORT, settings.DEFAULT_PAYOUT_PORT) as (stripe, payout):
        click.echo(f"sandboxes: stripe {stripe.url}  payouts {payout.url}")
        bin_dir = Path(sys.executable).parent
        cmd = [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(port)]
        try:
            subprocess.run(cmd, check=False)
        except KeyboardInterrupt:
            pass


COMMANDS: list[click.Command] = [demo]
