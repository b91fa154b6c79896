"""`finance-pipeline sandbox ...` commands: run a provider sandbox in the foreground."""

from __future__ import annotations

from pathlib import Path

import click

from finance_pipeline.sandboxes.common import SandboxDataError, SandboxServer, run_foreground


@click.group()
def sandbox() -> None:
    """Local HTTP test doubles of Stripe and the payout provider."""


def _serve(app_factory, host: str, port: int, what: str) -> None:
    try:
        app = app_factory()
    except SandboxDataError as exc:
        raise click.ClickException(str(exc)) from None
    server = SandboxServer(app, host=host, port=port)
    try:
        run_foreground(server, lambda url: click.echo(f"{what} listening on {url} (Ctrl-C to stop)"))
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port"
        ) from None
    click.echo(f"{what} stopped")


@sandbox.command("stripe")
@click.option("--port", type=click.IntRange(0, 65535), default=12111, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data", "data", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="JSON data file; a missing file starts empty.",
)
@click.option("--api-key", default="sk_test_sandbox", show_default=True, help="The secret key clients must send.")
def stripe_cmd(port: int, host: str, data: Path, api_key: str) -> None:
    """Serve a Stripe-compatible API (balance transactions, payouts)."""
    from finance_pipeline.sandboxes.stripe_sandbox import StripeSandboxApp

    _serve(lambda: StripeSandboxApp(data, api_key=api_key), host, port, "Stripe sandbox")


@sandbox.command("payout")
@click.option("--port", type=click.IntRange(0, 65535), default=12112, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--data", "data", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="JSON state file; created when missing.",
)
@click.option("--token", default="payout_sandbox_token", show_default=True, help="The bearer token clients must send.")
def payout_cmd(port: int, host: str, data: Path, token: str) -> None:
    """Serve the payout provider API (payouts, settlements)."""
    from finance_pipeline.sandboxes.payout_sandbox import PayoutSandboxApp

    _serve(lambda: PayoutSandboxApp(data, token=token), host, port, "Payout sandbox")


COMMANDS: list[click.Command] = [sandbox]
