"""`finance-pipeline db ...` commands, and what the ledger commands share.

Exit status of the ledger commands (db, accounts, journal):
0 done; 1 input rejected (nothing written); 2 bad usage; 3 conflict with what is already
stored (a journal_id, account or batch id with another body); 4 database unreachable or
its schema not upgraded.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import click
import sqlalchemy as sa

from finance_pipeline.settings import Settings, SettingsError

EXIT_REJECTED = 1
EXIT_CONFLICT = 3
EXIT_DATABASE = 4

database_url_option = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="SQLAlchemy URL of the ledger [default: $DATABASE_URL, else sqlite:///./var/ledger.sqlite3].",
)


def read_settings() -> Settings:
    """The command's configuration, read from its environment when it runs (never at import):
    the command line is an edge, it reads the environment here and hands what it read down.
    Raises SettingsError naming a variable that holds an unusable value."""
    return Settings.from_environ(os.environ)


def current_settings(exit_code: int = EXIT_REJECTED) -> Settings:
    """``read_settings()``; a variable holding an unusable value exits ``exit_code`` (1 unless
    the command gives 1 another meaning) with the message naming it."""
    try:
        return read_settings()
    except SettingsError as exc:
        fail(exit_code, str(exc))
        raise  # unreachable: fail exits


def settings_with_database_url(database_url: str | None) -> Settings:
    """The settings for Dagster runs this command launches in process, with ``--database-url``
    (when given) as the ledger.

    The one value the command line hands Dagster through its own environment: the ledger
    resource then reads it as ``dg.EnvVar("DATABASE_URL")``, like a configured one. Given as a
    plain value instead, Dagster would write it into the job snapshot it stores in the
    instance, and a URL may carry a password; an EnvVar is stored as its name only.
    """
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    return current_settings()


def resolved_url(url: str | None) -> str:
    """``--database-url``, else DATABASE_URL, else the embedded SQLite file."""
    from finance_pipeline.ledger.engine import normalise_url

    return normalise_url(url or current_settings().database_url)


def shown_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@contextmanager
def ledger_engine(url: str | None, *, check_schema: bool = True) -> Iterator[sa.Engine]:
    """An engine on the resolved URL; exits 4 if the database is unreachable or not upgraded."""
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.ledger.migrate import check_schema as _check

    from finance_pipeline.ledger.errors import SchemaNotReadyError

    url = resolved_url(url)
    url_obj = sa.engine.make_url(url)
    if (check_schema and url_obj.get_backend_name() == "sqlite" and url_obj.database
            and url_obj.database != ":memory:" and not os.path.exists(url_obj.database)):
        # Opening would create an empty file as a side effect of a read or a rejected write.
        fail(EXIT_DATABASE, f"no ledger database at {url_obj.database}; create it with "
                            "`finance-pipeline db upgrade`")
    engine = create_ledger_engine(url)
    try:
        if check_schema:
            try:
                _check(engine)
            except sa.exc.OperationalError as exc:
                fail(EXIT_DATABASE, f"cannot reach the database {shown_url(url)}: "
                                    f"{str(exc.orig).strip().splitlines()[0]}")
            except SchemaNotReadyError as exc:
                fail(EXIT_DATABASE, str(exc))
        yield engine
    finally:
        engine.dispose()


def fail(code: int, *messages: str) -> None:
    for message in messages:
        click.echo(message, err=True)
    sys.exit(code)


_ENTRY_PREFIX = re.compile(r"^entries\[(\d+)\]\.?")


def error_lines(errors, where: Callable[[int], str] | None = None) -> list[str]:
    """``field: message`` lines; ``where(i)`` replaces an ``entries[i].`` prefix (e.g. ``line 7``)."""
    out = []
    for error in errors:
        field = error.field
        m = _ENTRY_PREFIX.match(field)
        if m and where is not None:
            rest = field[m.end():] or "$"
            place = where(int(m.group(1)))
            out.append(f"{place}: {rest}: {error.message}" if place else f"{rest}: {error.message}")
        else:
            out.append(f"{field}: {error.message}")
    return out


def exit_for_ledger_error(exc: Exception, where: Callable[[int], str] | None = None) -> None:
    """Print a ledger/validation error and exit with its status; re-raise anything else."""
    from finance_pipeline.ledger.errors import (
        AccountExistsError,
        BatchConflictError,
        JournalConflictError,
        LedgerError,
        SchemaNotReadyError,
    )
    from finance_pipeline.domain.journal import JournalValidationError

    if isinstance(exc, SchemaNotReadyError):
        fail(EXIT_DATABASE, str(exc))
    if isinstance(exc, (JournalConflictError, AccountExistsError, BatchConflictError)):
        fail(EXIT_CONFLICT, *error_lines(exc.errors, where))
    if isinstance(exc, (LedgerError, JournalValidationError)) and hasattr(exc, "errors"):
        fail(EXIT_REJECTED, *error_lines(exc.errors, where))
    if isinstance(exc, LedgerError):
        fail(EXIT_REJECTED, str(exc))
    raise exc


@click.group("db")
def db_group() -> None:
    """The ledger database."""


@db_group.command("upgrade")
@database_url_option
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def upgrade_cmd(database_url: str | None, revision: str) -> None:
    """Create or migrate the ledger schema (idempotent)."""
    from finance_pipeline.ledger import migrate

    url = resolved_url(database_url)
    try:
        current = migrate.upgrade(url, revision)
    except sa.exc.OperationalError as exc:
        fail(EXIT_DATABASE, f"cannot reach the database {shown_url(url)}: "
                            f"{str(exc.orig).strip().splitlines()[0]}")
    click.echo(f"database {shown_url(url)} is at revision {current}")


COMMANDS: list[click.Command] = [db_group]
