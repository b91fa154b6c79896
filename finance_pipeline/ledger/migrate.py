"""Run the packaged Alembic migrations from code (no alembic.ini in the working directory)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.errors import SchemaNotReadyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic config on the packaged scripts; env.py uses ``connection`` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head revision"
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str | sa.Engine, revision: str = "head") -> str | None:
    """Migrate the database at ``url`` (or on an engine) to ``revision``; returns the new one."""
    engine = url if isinstance(url, sa.Engine) else create_ledger_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
        return current_revision(engine)
    finally:
        if engine is not url:
            engine.dispose()


def check_schema(engine: sa.Engine) -> None:
    """Raise SchemaNotReadyError unless the database is at the packaged head revision."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        state = "has no ledger schema" if current is None else f"is at revision {current}, not {head}"
        raise SchemaNotReadyError(
            f"database {where} {state}; run `finance-pipeline db upgrade --database-url ...` first"
        )
