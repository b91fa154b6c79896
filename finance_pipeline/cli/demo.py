"""`finance-pipeline demo ...`: the embedded-default demo (seed, run, dev UI)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import click

from finance_pipeline import settings
from finance_pipeline.cli.db import current_settings, settings_with_database_url
from finance_pipeline.settings import Settings


def _paths(config: Settings) -> dict[str, Path]:
    var = config.var_dir
    return {"stripe": var / "sandboxes" / "stripe.json", "payout": var / "sandboxes" / "payouts.json"}


def _do_seed(config: Settings, database_url: str, start: date, days: int, seed: int, inject: int,
             window=None):
    from finance_pipeline.demo.seed import seed as run_seed
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.ledger.posting import EntryWindow

    paths = _paths(config)
    engine = create_ledger_engine(database_url)
    try:
        return run_seed(engine, paths["stripe"], paths["payout"], start=start, days=days, seed=seed,
                        inject=inject, window=window or EntryWindow.from_settings(config))
    finally:
        engine.dispose()


@contextmanager
def _sandboxes(config: Settings, stripe_port: int, payout_port: int):
    """Start both sandboxes on the given ports (0: any free port), with the configured key and
    token; the caller points the runs at them (``Settings.replace``)."""
    from finance_pipeline.sandboxes import start_payout_sandbox, start_stripe_sandbox

    paths = _paths(config)
    stripe = start_stripe_sandbox(paths["stripe"], port=stripe_port, api_key=config.stripe_api_key)
    payout = start_payout_sandbox(paths["payout"], port=payout_port, token=config.payout_api_token)
    try:
        yield stripe, payout
    finally:
        stripe.stop()
        payout.stop()


def _on_sandboxes(config: Settings, stripe, payout, start: date | None = None) -> Settings:
    """``config`` pointed at the demo's sandboxes (and partitions from ``start``), given in
    code: the Dagster resources get these values, not the variables'."""
    changes = {"stripe_api_base": stripe.url, "payout_api_base": payout.url}
    if start is not None:
        changes["partitions_start"] = start.isoformat()
    return config.replace(**changes)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sandbox_port(flag: int | None, variable: str, default: int, config: Settings | None = None) -> int:
    """The port a demo sandbox listens on: the flag, else the port of ``variable``'s local URL,
    else ``default``. A busy port is an error naming both ways to change it, never a silent
    move to another port (the UI, the runs and the operator would disagree on where it is)."""
    from urllib.parse import urlsplit

    config = config or current_settings()
    field_name = {v: k for k, v in Settings.variables().items()}[variable]
    configured = getattr(config, field_name) if config.source(field_name) == variable else ""
    port, source = default, "the default"
    if flag is not None:
        port, source = flag, "the flag"
    elif configured:
        url = urlsplit(configured)
        if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
            raise click.UsageError(
                f"{variable}={configured} is not a local sandbox address such as "
                f"http://127.0.0.1:{default}; the demo starts its sandboxes on this machine: unset "
                f"{variable} or point it at a free local port")
        port, source = url.port, variable
    if not _port_free(port):
        flag_name = "--stripe-port" if variable == "STRIPE_API_BASE" else "--payout-port"
        raise click.UsageError(
            f"port {port} ({source}) is in use, so the {variable.split('_')[0].lower()} sandbox cannot "
            f"start there; stop what holds it, or choose another port with {flag_name} or "
            f"{variable}=http://127.0.0.1:<port>")
    return port


_stripe_port_opt = click.option("--stripe-port", type=click.IntRange(1, 65535), default=None,
                                help=f"Stripe sandbox port [default: from $STRIPE_API_BASE, else "
                                     f"{settings.DEFAULT_STRIPE_PORT}].")
_payout_port_opt = click.option("--payout-port", type=click.IntRange(1, 65535), default=None,
                                help=f"Payout sandbox port [default: from $PAYOUT_API_BASE, else "
                                     f"{settings.DEFAULT_PAYOUT_PORT}].")


def _ports(config: Settings, stripe_port: int | None, payout_port: int | None) -> tuple[int, int]:
    return (sandbox_port(stripe_port, "STRIPE_API_BASE", settings.DEFAULT_STRIPE_PORT, config),
            sandbox_port(payout_port, "PAYOUT_API_BASE", settings.DEFAULT_PAYOUT_PORT, config))


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
    config = current_settings()
    res = _do_seed(config, database_url or config.database_url, start.date(), days, seed_value, inject)
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
@_stripe_port_opt
@_payout_port_opt
def run_cmd(start, days, seed_value, inject, database_url, stripe_port, payout_port) -> None:
    """The runbook end to end on the embedded default: seed, export (the gates block the days
    with injected discrepancies), post the reviewed corrections, export again (signed packages
    published to ./var/published), then verify every package offline and replay its report."""
    from finance_pipeline.cli.export import export_days
    from finance_pipeline.signing.local_keys import init_keys

    from finance_pipeline.ledger.posting import EntryWindow

    config = settings_with_database_url(database_url)
    ports = _ports(config, stripe_port, payout_port)
    db = config.database_url
    # The demo's ledger starts on its first day.
    window = EntryWindow(start.date().isoformat(), config.entry_future_skew_s)
    res = _do_seed(config, db, start.date(), days, seed_value, inject, window)
    click.echo(f"ledger: {db}  ({len(res.scenario.entries)} demo entries, "
               f"{len(res.scenario.injections)} injected discrepancies)")
    _, keyring_path = init_keys(config.keys_dir)
    click.echo(f"signing keys: {keyring_path.parent} (public keyring {keyring_path})")
    day_keys = res.scenario.day_keys
    with _sandboxes(config, *ports) as (stripe, payout):
        runs = _on_sandboxes(config, stripe, payout, start.date())
        click.echo(f"sandboxes: stripe {stripe.url}  payouts {payout.url}\n")
        click.echo("1. export: reconcile, gate, prove and publish each day")
        first = export_days(day_keys, progress=False, config=runs)
        blocked = {o["day"] for o in first if o["status"] == "blocked"}
        failed = [o for o in first if o["status"] == "failed"]
        if failed:
            sys.exit(1)
        if blocked:
            click.echo("\n2. resolve the discrepancies the way the runbook says (two-person review)")
            _apply_fixes(db, res.scenario, blocked, payout, window)
            click.echo("\n3. export again")
            second = export_days(sorted(blocked), progress=False, config=runs)
            if any(o["status"] not in ("published", "unchanged") for o in second):
                sys.exit(1)
    click.echo("\n4. verify every package offline against the public keyring, and replay its report")
    ok = _verify_published(db, day_keys, keyring_path)
    click.echo(f"\nreports: {config.storage_dir / 'reconciliation_report'}/<day>.json")
    click.echo(f"Dagster runs: {config.instance_home} (open with `make dev`)")
    if not ok:
        sys.exit(1)


def _apply_fixes(db: str, scenario, days: set[str], payout, window) -> None:
    import httpx

    from finance_pipeline.demo.corrections import corrections, post_with_review
    from finance_pipeline.ledger.engine import create_ledger_engine

    engine = create_ledger_engine(db)
    try:
        for fix in corrections(scenario):
            if fix.injection.day not in days:
                continue
            if fix.entries:
                post_with_review(engine, fix.entries, window=window)
            if fix.settle_payout:
                # Re-trigger the stuck payout's settlement at the provider.
                httpx.post(f"{payout.url}/_sandbox/stuck",
                           json={"payout_ids": [fix.settle_payout], "stuck": False}).raise_for_status()
                httpx.post(f"{payout.url}/payouts/{fix.settle_payout}/settle",
                           headers={"Authorization": f"Bearer {payout.token}"},
                           json={"settled_at": fix.settle_at}).raise_for_status()
            click.echo(f"   {fix.describe()}")
    finally:
        engine.dispose()


def _verify_published(db: str, day_keys: list[str], keyring_path: Path) -> bool:
    from finance_pipeline.export import registry
    from finance_pipeline.export.replay import replay_files
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.proof.keyring import Keyring
    from finance_pipeline.proof.verify import verify_package
    from finance_pipeline.publication import load_package

    keyring = Keyring.load(keyring_path)
    engine = create_ledger_engine(db)
    ok, previous = True, None
    try:
        for day in day_keys:
            records = registry.published_for_day(engine, day)
            if not records:
                click.echo(f"   {day}  not published")
                ok, previous = False, None
                continue
            path = records[0].location
            pkg = load_package(path)  # a folder here; an s3:// location through boto3's defaults
            result = verify_package(pkg, keyring, previous_package=previous)
            replay = replay_files(pkg.files())
            link = pkg.statement()["previous"]
            click.echo(f"   {day}  {'VALID' if result.ok else 'INVALID'}  {records[0].proof_id}  "
                       f"previous={link['proof_id'] if link else None}  "
                       f"replay={'identical' if replay.identical else 'DIFFERENT'}")
            click.echo(f"          finance-pipeline verify {path} --keyring {keyring_path}")
            ok = ok and result.ok and replay.identical
            previous = pkg
    finally:
        engine.dispose()
    return ok


@demo.command("check")
@_start_opt
@_days_opt
@_stripe_port_opt
@_payout_port_opt
def check_cmd(start, days, stripe_port, payout_port) -> None:
    """`finance-pipeline check` on the demo days, with the demo's sandboxes started for it:
    every gate, each failed expectation printed, nothing signed or published. Exit 0 only if
    every gate passed on every day (after `demo run`, whose corrections fix every day)."""
    from finance_pipeline.cli.export import check_days

    config = current_settings()
    ports = _ports(config, stripe_port, payout_port)
    day_keys = [(start.date() + timedelta(days=i)).isoformat() for i in range(days)]
    with _sandboxes(config, *ports) as (stripe, payout):
        outcomes = check_days(day_keys, config=_on_sandboxes(config, stripe, payout, start.date()))
    bad = [o["day"] for o in outcomes if o["status"] != "passed"]
    if bad:
        click.echo(f"gates did not pass: {', '.join(bad)}", err=True)
        sys.exit(1)


@demo.command("dev")
@click.option("--port", default=3000, show_default=True, type=int, help="Dagster UI port.")
@_stripe_port_opt
@_payout_port_opt
def dev_cmd(port, stripe_port, payout_port) -> None:
    """Start the sandboxes and the Dagster UI on the demo data."""
    from finance_pipeline.defs.launch import instance

    config = current_settings()
    ports = _ports(config, stripe_port, payout_port)
    instance(config)  # makes sure the Dagster home exists
    with _sandboxes(config, *ports) as (stripe, payout):
        click.echo(f"sandboxes: stripe {stripe.url}  payouts {payout.url}")
        bin_dir = Path(sys.executable).parent
        cmd = [str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(port)]
        # `dagster dev` and the code location it loads are other processes: their only
        # configuration is the environment they start with, so the sandboxes and the
        # instance are handed to them there (this process's own environment is left as is).
        env = {**os.environ, "DAGSTER_HOME": str(config.instance_home),
               "STRIPE_API_BASE": stripe.url, "PAYOUT_API_BASE": payout.url}
        try:
            subprocess.run(cmd, check=False, env=env)
        except KeyboardInterrupt:
            pass


COMMANDS: list[click.Command] = [demo]
