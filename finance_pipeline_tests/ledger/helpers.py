"""Shared helpers for the ledger tests: entry builders, a migrated ledger on SQLite or Postgres."""

from __future__ import annotations

import copy
import uuid
from typing import Any
import pytest
import sqlalchemy as sa

from finance_pipeline.ledger import migrate
from finance_pipeline.ledger.accounts import create_account
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.schema import metadata
from finance_pipeline_tests.fixtures.postgres import ADMIN_URL


DAY = "2026-11-02"

TS = "2026-11-02T10:15:00Z"

ACCOUNTS = [
    ("cash", "Bank (USD)", "asset", "USD", "bank"),
    ("revenue", "Sales", "revenue", "USD", "revenue"),
    ("fees", "Stripe fees", "expense", "USD", "stripe_fees"),
    ("eur_cash", "Bank (EUR)", "asset", "EUR", None),
    ("eur_revenue", "Sales (EUR)", "revenue", "EUR", None),
    ("jpy_cash", "Bank (JPY)", "asset", "JPY", None),
    ("jpy_revenue", "Sales (JPY)", "revenue", "JPY", None),
]

def line(account_id: str, direction: str, amount: Any, currency: Any = "USD") -> dict:
    return {"account_id": account_id, "direction": direction, "amount_minor": amount,
            "currency": currency}

def entry(journal_id: str = "J-1", amount: int = 1250, **overrides: Any) -> dict:
    """A valid standard entry (cash debit / revenue credit) with members overridden."""
    body = {
        "journal_id": journal_id,
        "ts": TS,
        "kind": "standard",
        "memo": "sale",
        "batch_id": None,
        "provider": None,
        "provider_reference": None,
        "reverses": None,
        "posted_by": "alice",
        "reviewed_by": None,
        "lines": [line("cash", "debit", amount), line("revenue", "credit", amount)],
    }
    body.update(copy.deepcopy(overrides))
    return body

def make_ledger(url: str, *, with_accounts: bool = True) -> sa.Engine:
    migrate.upgrade(url)
    engine = create_ledger_engine(url)
    if with_accounts:
        for account in ACCOUNTS:
            create_account(engine, *account, now_us=0)
    return engine

def row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for name, table in metadata.tables.items()
        }

def backend_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh database URL of the backend named by the test's parameter."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    return request.getfixturevalue("pg_url")

def clone_database(template_url: str) -> str:
    """A new database copied from ``template_url``; drop it with ``drop_database``."""
    name = f"fp_test_{uuid.uuid4().hex[:12]}"
    template = sa.engine.make_url(template_url).database
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return sa.engine.make_url(template_url).set(database=name).render_as_string(hide_password=False)
