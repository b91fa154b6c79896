"""`finance-pipeline serve` (the Finance API) and `finance-pipeline tokens ...` (its bearer tokens).

Tokens live hashed in ``FP_API_TOKENS_FILE`` (default ``$FP_VAR_DIR/api_tokens.json``); adding
or revoking one is recorded as an audit event in the ledger database.
"""

from __future__ import annotations

import getpass
import json

import click

from finance_pipeline.cli.db import EXIT_REJECTED, current_settings, database_url_option, fail, ledger_engine

tokens_file_option = click.option(
    "--tokens-file", default=None, metavar="PATH",
    help="Tokens file [default: $FP_API_TOKENS_FILE, else $FP_VAR_DIR/api_tokens.json].",
)


def _store(tokens_file: str | None):
    from finance_pipeline.api.tokens import TokenError, TokenStore

    try:
        return TokenStore.from_settings(current_settings(), tokens_file)
    except TokenError as exc:
        fail(EXIT_REJECTED, str(exc))


def _default_by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (containers)
        return "cli"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@database_url_option
@tokens_file_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_cmd(host: str, port: int, database_url: str | None, tokens_file: str | None, log_level: str) -> None:
    """Run the Finance HTTP API (OpenAPI document at /openapi.json, docs at /docs).

    Settles payouts at PAYOUT_API_BASE with PAYOUT_API_TOKEN; approval tiers come from
    FP_PAYOUT_TIERS.
    """
    import uvicorn

    from finance_pipeline.api.app import create_app
    from finance_pipeline.payouts.policy import PayoutPolicy, PolicyConfigError
    from finance_pipeline.providers.payout_client import PayoutProviderClient

    from finance_pipeline.ledger.posting import EntryWindow

    config = current_settings()
    store = _store(tokens_file)
    if not any(r.active for r in store.records()):
        click.echo(f"warning: {store.path} holds no active token, so every request will get 401; "
                   "add one with `finance-pipeline tokens add --actor ops:ana --roles operator`",
                   err=True)
    try:
        policy = PayoutPolicy.from_settings(config)
    except PolicyConfigError as exc:
        fail(EXIT_REJECTED, str(exc))
    with (ledger_engine(database_url) as engine,
          PayoutProviderClient(config.payout_api_base, config.payout_api_token) as client):
        from finance_pipeline.api.app import ApiSettings

        # The app factory is handed every value it needs: it reads no environment itself.
        app = create_app(engine, tokens=store, payout_client=client,
                         settings=ApiSettings(payout_policy=policy, review_ttl_s=config.journal_review_ttl_s,
                                              entry_window=EntryWindow.from_settings(config)))
        click.echo(f"Finance API on http://{host}:{port} (tokens {store.path}, payouts via "
                   f"{client.base_url})", err=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level)


@click.group("tokens")
def tokens_group() -> None:
    """Bearer tokens of the Finance API (stored hashed; shown once when added)."""


@tokens_group.command("add")
@click.option("--actor", required=True, help="Who the token speaks for, e.g. ops:ana.")
@click.option("--roles", required=True,
              help="Comma-separated: operator, finance-lead, security-engineer, super-admin, auditor, service (system:* actors only).")
@click.option("--by", default=None, help="Who is adding it (audit trail) [default: cli:$USER].")
@tokens_file_option
@database_url_option
def add_cmd(actor: str, roles: str, by: str | None, tokens_file: str | None, database_url: str | None) -> None:
    """Create a token and print it once (only its salted hash is kept)."""
    from finance_pipeline.api.tokens import TokenError, validate_grant
    from finance_pipeline.ledger.audit import record_event
    from finance_pipeline.ledger.engine import begin_write

    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    try:
        validate_grant(actor, role_list)
    except TokenError as exc:
        fail(EXIT_REJECTED, f"--actor/--roles: {exc}")
    store = _store(tokens_file)
    with ledger_engine(database_url) as engine:
        token, record = store.add(actor, role_list)
        try:
            with begin_write(engine) as conn:
                record_event(conn, by or _default_by(), "api_token.add", "api_token", record.token_id,
                             {"actor": record.actor, "roles": list(record.roles),
                              "tokens_file": str(store.path)}, ts_us=record.created_at_us)
        except BaseException:
            store.remove(record.token_id)  # no token without its audit event
            raise
    click.echo(token)
    click.echo(f"token {record.token_id} for {record.actor} ({', '.join(record.roles)}) added to "
               f"{store.path}; it is shown only now", err=True)


@tokens_group.command("list")
@tokens_file_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
def list_cmd(tokens_file: str | None, as_json: bool) -> None:
    """Tokens without their secrets: id, actor, roles, created, revoked."""
    from finance_pipeline.domain.timeutil import format_ts_us

    store = _store(tokens_file)
    for record in store.records():
        if as_json:
            click.echo(json.dumps(record.public(), sort_keys=True))
            continue
        state = "active" if record.active else f"revoked {format_ts_us(record.revoked_at_us)}"
        click.echo(f"{record.token_id}  {record.actor}  {','.join(record.roles)}  "
                   f"created {format_ts_us(record.created_at_us)}  {state}")


@tokens_group.command("revoke")
@click.argument("token_id")
@click.option("--by", default=None, help="Who is revoking it (audit trail) [default: cli:$USER].")
@tokens_file_option
@database_url_option
def revoke_cmd(token_id: str, by: str | None, tokens_file: str | None, database_url: str | None) -> None:
    """Revoke TOKEN_ID; requests with it get 401 from then on."""
    from finance_pipeline.api.tokens import TokenError
    from finance_pipeline.ledger.audit import record_event
    from finance_pipeline.ledger.engine import begin_write

    store = _store(tokens_file)
    with ledger_engine(database_url) as engine:
        with begin_write(engine) as conn:
            try:
                record = store.revoke(token_id)
            except TokenError as exc:
                fail(EXIT_REJECTED, str(exc))
            # Same transaction: if the file write failed, no event; if this fails, the
            # revocation stands anyway (failing closed is the safe side).
            record_event(conn, by or _default_by(), "api_token.revoke", "api_token", token_id,
                         {"actor": record.actor}, ts_us=record.revoked_at_us)
    click.echo(f"token {token_id} of {record.actor} revoked")


COMMANDS: list[click.Command] = [serve_cmd, tokens_group]
