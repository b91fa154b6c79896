"""`finance-pipeline accounts ...` commands."""

from __future__ import annotations

import json

import click

from finance_pipeline.cli.db import database_url_option, exit_for_ledger_error, ledger_engine
from finance_pipeline.ledger.schema import ACCOUNT_ROLES, ACCOUNT_TYPES


@click.group("accounts")
def accounts_group() -> None:
    """The chart of accounts."""


@accounts_group.command("list")
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
def list_cmd(database_url: str | None, as_json: bool) -> None:
    """List accounts by id."""
    from finance_pipeline.ledger.accounts import list_accounts

    with ledger_engine(database_url) as engine:
        found = list_accounts(engine)
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in found], indent=2))
        return
    if not found:
        click.echo("no accounts; create one with `finance-pipeline accounts create`")
        return
    width = max(len(a.account_id) for a in found)
    for a in found:
        click.echo(f"{a.account_id:<{width}}  {a.type:<9}  {a.currency}  {a.role or '-':<15}  {a.name}")


@accounts_group.command("create")
@click.argument("account_id")
@click.option("--name", required=True, help="Human name, e.g. 'Stripe clearing (USD)'.")
@click.option("--type", "type_", required=True, metavar="TYPE",
              help=f"One of: {', '.join(ACCOUNT_TYPES)}.")
@click.option("--currency", required=True, help="ISO 4217 code in capitals, e.g. USD.")
@click.option("--role", default=None, help=f"Reconciliation role, one of: {', '.join(ACCOUNT_ROLES)}.")
@click.option("--actor", default="cli", show_default=True, help="Who is creating it (audit trail).")
@database_url_option
def create_cmd(account_id: str, name: str, type_: str, currency: str, role: str | None,
               actor: str, database_url: str | None) -> None:
    """Create account ACCOUNT_ID (no-op when an identical one exists)."""
    from finance_pipeline.ledger.accounts import create_account, get_account
    from finance_pipeline.ledger.errors import LedgerError

    with ledger_engine(database_url) as engine:
        existed = get_account(engine, account_id) is not None
        try:
            account = create_account(engine, account_id, name, type_, currency, role, actor=actor)
        except LedgerError as exc:
            exit_for_ledger_error(exc)
    state = "already present" if existed else "created"
    click.echo(f"{state}: account {account.account_id} ({account.type}, {account.currency}"
               f"{', role ' + account.role if account.role else ''})")


COMMANDS: list[click.Command] = [accounts_group]
