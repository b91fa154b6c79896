"""Engines for the ledger: the embedded SQLite file by default, or PostgreSQL via psycopg 3."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa


def normalise_url(url: str) -> str:
    """Point bare ``postgresql://`` / ``postgres://`` URLs at psycopg 3 (not psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_ledger_engine(url: str, **kwargs) -> sa.Engine:
    """An engine on ``url`` (see ``normalise_url``); SQLite gets foreign keys, WAL and real
    transactions. The URL is the caller's: ``Settings.database_url`` at the edges."""
    url_obj = sa.engine.make_url(normalise_url(url))
    if url_obj.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        # Explicit, whatever the server's default: a transaction that waited for a day's lock
        # (ledger/periods.py) must then see what the lock's holder committed.
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        return sa.create_engine(url_obj, **kwargs)

    if url_obj.database and url_obj.database != ":memory:" and not url_obj.database.startswith("file:"):
        Path(url_obj.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url_obj, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Take transaction control away from pysqlite, which would otherwise only BEGIN before
        # DML: reads and checks must share the transaction of the writes they justify.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock up front, so a check-then-write transaction cannot
        # lose its snapshot to another writer half-way (SQLITE_BUSY_SNAPSHOT).
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


@contextmanager
def begin_write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write: commits on success, rolls back on any exception."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
