"""`finance-pipeline keys ...` (local key files) and `finance-pipeline signing ...` (health, keyring)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from finance_pipeline.cli.db import current_settings, read_settings
from finance_pipeline.settings import SettingsError


@click.group("keys")
def keys() -> None:
    """Local signing keys for the embedded default (production signs with AWS KMS)."""


@keys.command("init")
@click.option("--dir", "keys_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Key directory (default: $FP_VAR_DIR/keys, i.e. var/keys).")
@click.option("--roles", default="finance-lead,security-engineer", show_default=True,
              help="Comma-separated signer roles, one key per role.")
def keys_init(keys_dir: Path | None, roles: str) -> None:
    """Create one P-256 key per role (never overwriting one) and write the public keyring.json."""
    from finance_pipeline.signing.local_keys import init_keys
    from finance_pipeline.signing.signers import SigningError

    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    try:
        created, keyring_path = init_keys(keys_dir or current_settings().keys_dir, role_list)
    except SigningError as exc:
        raise click.ClickException(exc.diagnosis) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write keys: {exc}") from None
    for key in created:
        state = "created" if key.created else "kept"
        click.echo(f"{state:8} {key.path}  {key.key_id}")
    click.echo(f"keyring  {keyring_path}  (public; give it to auditors, quorum "
               f"{len(created)} of {len(created)} distinct roles)")


@click.group("signing")
def signing() -> None:
    """Signing configuration: health checks and the public keyring of the configured keys."""


@signing.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def signing_health(as_json: bool) -> None:
    """Check each configured key (reachable, usage/spec, probe sign+verify) and the quorum.

    Exit status 0 when healthy, 1 when not.
    """
    from finance_pipeline.signing.config import SigningConfig
    from finance_pipeline.signing.health import check_signers, format_table
    from finance_pipeline.signing.signers import SigningError

    try:
        config = SigningConfig.from_settings(read_settings())
    except (SigningError, SettingsError) as exc:
        diagnosis = exc.diagnosis if isinstance(exc, SigningError) else str(exc)
        if as_json:
            click.echo(json.dumps({"healthy": False, "error": diagnosis}, indent=2))
        else:
            click.echo(f"signing: UNHEALTHY - {diagnosis}", err=True)
        raise SystemExit(1) from None
    report = check_signers(config)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(format_table(report))
    raise SystemExit(0 if report.healthy else 1)


@signing.command("keyring")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def signing_keyring(out: Path | None) -> None:
    """Print the public keyring (keys + quorum) of the configured signers, for auditors."""
    from finance_pipeline.signing.config import SigningConfig, build_signers, keyring_from_signers
    from finance_pipeline.signing.signers import SigningError

    try:
        config = SigningConfig.from_settings(current_settings())
        keyring = keyring_from_signers(build_signers(config), config.quorum)
    except SigningError as exc:
        raise click.ClickException(exc.diagnosis) from None
    except ValueError as exc:  # KeyringError: e.g. a key that is not P-256
        raise click.ClickException(str(exc)) from None
    if out is None:
        click.echo(keyring.to_json(), nl=False)
    else:
        out.write_text(keyring.to_json(), encoding="utf-8")
        click.echo(f"wrote {out}")


COMMANDS: list[click.Command] = [keys, signing]
