"""Alembic migrations produce exactly schema.py on both backends; engine set-up."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from finance_pipeline.ledger import SchemaNotReadyError, migrate
from finance_pipeline.ledger.engine import create_ledger_engine, normalise_url
from finance_pipeline.settings import Settings
from finance_pipeline.ledger.schema import metadata


def _diff(engine: sa.Engine, target: sa.MetaData) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), target)


def test_upgrade_reaches_head_and_matches_schema_py(ledger_url):
    assert migrate.upgrade(ledger_url) == migrate.head_revision()
    # Idempotent: a second upgrade changes nothing.
    assert migrate.upgrade(ledger_url) == migrate.head_revision()
    engine = create_ledger_engine(ledger_url)
    try:
        assert _diff(engine, metadata) == []
        migrate.check_schema(engine)
        # The comparison does see drift: schema.py with one more column differs.
        drifted = sa.MetaData(naming_convention=metadata.naming_convention)
        for table in metadata.tables.values():
            table.to_metadata(drifted)
        sa.Table("proofs", drifted, sa.Column("extra", sa.Integer), extend_existing=True)
        assert any(d[0] == "add_column" and d[3].name == "extra" for d in _diff(engine, drifted))
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(ledger_url):
    migrate.upgrade(ledger_url)
    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        with pytest.raises(SchemaNotReadyError, match="db upgrade"):
            migrate.check_schema(engine)
        migrate.upgrade(engine)
        assert _diff(engine, metadata) == []
    finally:
        engine.dispose()


def test_empty_database_is_reported_not_ready(ledger_url):
    engine = create_ledger_engine(ledger_url)
    try:
        with pytest.raises(SchemaNotReadyError, match="has no ledger schema"):
            migrate.check_schema(engine)
    finally:
        engine.dispose()


def test_sqlite_engine_enforces_foreign_keys_and_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'ledger.sqlite3'}"
    migrate.upgrade(url)  # creates the missing folders
    engine = create_ledger_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"):
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO journal_entries VALUES ('J', 0, 'standard', '', 'no-such-batch', "
                    "NULL, NULL, NULL, 'a', NULL, 'x', 0)")
    finally:
        engine.dispose()


def test_sqlite_transactions_see_one_snapshot(tmp_path):
    # pysqlite alone would not BEGIN before a SELECT; checks and writes must share a snapshot.
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    migrate.upgrade(url)
    engine = create_ledger_engine(url)
    other = create_ledger_engine(url)
    count = "SELECT count(*) FROM accounts"
    try:
        with engine.begin() as conn:
            assert conn.exec_driver_sql(count).scalar() == 0
            with other.begin() as conn2:
                conn2.exec_driver_sql(
                    "INSERT INTO accounts VALUES ('a', 'A', 'asset', 'USD', NULL, 0)")
            assert conn.exec_driver_sql(count).scalar() == 0
        with engine.connect() as conn:
            assert conn.exec_driver_sql(count).scalar() == 1
    finally:
        engine.dispose()
        other.dispose()


def test_url_resolution(tmp_path):
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"

    var = {"FP_VAR_DIR": str(tmp_path / "var")}
    assert Settings.from_environ(var).database_url == f"sqlite:///{tmp_path / 'var' / 'ledger.sqlite3'}"
    url = Settings.from_environ({**var, "DATABASE_URL": "postgresql://u@h/env"}).database_url
    assert normalise_url(url) == "postgresql+psycopg://u@h/env"


def test_default_embedded_path_is_var_ledger_sqlite3():
    assert Settings.from_environ({}).database_url == "sqlite:///var/ledger.sqlite3"
