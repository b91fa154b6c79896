"""Alembic environment for the ledger; driven by finance_pipeline.ledger.migrate."""

from __future__ import annotations

from alembic import context

from finance_pipeline.ledger.engine import create_ledger_engine, resolve_url
from finance_pipeline.ledger.schema import metadata

config = context.config


def _configure(**kwargs) -> None:
    context.configure(target_metadata=metadata, compare_type=True, **kwargs)


def run_offline() -> None:
    _configure(url=resolve_url(config.get_main_option("sqlalchemy.url")), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Plain `alembic -c ...` use: the URL from the config, else DATABASE_URL / the default.
    engine = create_ledger_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
