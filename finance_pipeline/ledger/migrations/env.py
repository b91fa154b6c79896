"""Alembic environment for the ledger; driven by finance_pipeline.ledger.migrate."""

from __future__ import annotations

from alembic import context

from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.schema import metadata

config = context.config


def _configure(**kwargs) -> None:
    context.configure(target_metadata=metadata, compare_type=True, **kwargs)


def _url() -> str:
    # Plain `alembic -c ...` use: the config's sqlalchemy.url (the configuration is read by
    # the command line, `finance-pipeline db upgrade`, not here).
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no sqlalchemy.url in the Alembic config: set it, or run "
                           "`finance-pipeline db upgrade`, which uses DATABASE_URL")
    return url


def run_offline() -> None:
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_ledger_engine(_url())
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
