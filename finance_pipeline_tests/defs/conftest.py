"""A seeded demo world (ledger + both sandboxes + storage) wired through the environment,
exactly as `finance-pipeline demo run` wires it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from finance_pipeline.demo.seed import SeedResult, seed
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.sandboxes import start_payout_sandbox, start_stripe_sandbox

START = date(2026, 11, 1)


@dataclass
class World:
    database_url: str
    storage: Path
    seeded: SeedResult
    stripe: object
    payout: object

    def definitions(self) -> dg.Definitions:
        from finance_pipeline.definitions import build_definitions

        return build_definitions(partitions_start=START.isoformat())


def make_world(database_url: str, tmp_path: Path, monkeypatch, days: int = 3, inject: int = 1) -> World:
    engine = create_ledger_engine(database_url)
    res = seed(engine, tmp_path / "stripe.json", tmp_path / "payouts.json", start=START, days=days, seed=7,
               inject=inject)
    engine.dispose()
    stripe = start_stripe_sandbox(res.stripe_data)
    payout = start_payout_sandbox(res.payout_data)
    for k, v in {
        "DATABASE_URL": database_url, "STRIPE_API_BASE": stripe.url, "PAYOUT_API_BASE": payout.url,
        "FP_STORAGE_DIR": str(tmp_path / "storage"), "FP_PARTITIONS_START": START.isoformat(),
        "FP_VAR_DIR": str(tmp_path / "var"), "FP_PUBLISH_DIR": str(tmp_path / "published"),
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("S3_AUDIT_BUCKET", "KMS_KEY_ID", "FP_SIGNING_KEYS", "FP_SIGNING_QUORUM", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    from finance_pipeline.signing.local_keys import init_keys

    init_keys(tmp_path / "var" / "keys")
    return World(database_url, tmp_path / "storage", res, stripe, payout)


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    w = make_world(url, tmp_path, monkeypatch)
    yield w
    w.stripe.stop()
    w.payout.stop()


@pytest.fixture
def sqlite_world(tmp_path, monkeypatch):
    w = make_world(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", tmp_path, monkeypatch)
    yield w
    w.stripe.stop()
    w.payout.stop()


@pytest.fixture
def clean_world(tmp_path, monkeypatch):
    """SQLite world without injected discrepancies: every day can be published."""
    w = make_world(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", tmp_path, monkeypatch, inject=0)
    yield w
    w.stripe.stop()
    w.payout.stop()
