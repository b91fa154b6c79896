"""`finance-pipeline repair-batch | retrigger-settlement | incidents | drill record`."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

import click
import dagster as dg

from finance_pipeline.cli import main as _main
from finance_pipeline.cli.oncall import COMMANDS
from finance_pipeline.ledger.audit import now_us
from finance_pipeline.ledger.batches import batch_status
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.payouts.service import get_payout
from finance_pipeline_tests.oncall.helpers import (
    HOUR_US,
    LATE_BATCH,
    LATE_DAY,
    inject_partial_batch,
    make_stuck_payout,
    renew_approvals,
)


def _cli() -> click.Group:
    """`finance-pipeline`, with the on-call commands added if cli/__init__.py does not yet."""
    if all(c.name in _main.commands for c in COMMANDS):
        return _main
    group = click.Group("finance-pipeline", commands=dict(_main.commands))
    for command in COMMANDS:
        group.add_command(command)
    return group


main = _cli()


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_repair_batch_rolls_forward_and_re_reconciles_the_day(sqlite_ops_world, dagster_home):
    inject_partial_batch(sqlite_ops_world)
    result = _run("repair-batch", LATE_BATCH, "--actor", "ops:ana")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"batch {LATE_BATCH}: 1 entries posted, 1 already present; "
                               f"days touched: {LATE_DAY}")
    assert lines[1].startswith(f"{LATE_DAY}  re-reconciled  run_id=")
    assert lines[1].endswith("ledger_suite=pass, parity=pass, provider_suites=pass")
    engine = create_ledger_engine(sqlite_ops_world.database_url)
    assert batch_status(engine, LATE_BATCH).complete
    engine.dispose()
    # The run is on the configured instance, so the UI shows it.
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        [run] = instance.get_runs()
    assert run.job_name == "rereconcile_day" and run.tags["dagster/partition"] == LATE_DAY

    again = _run("repair-batch", LATE_BATCH, "--actor", "ops:ana")
    assert again.exit_code == 0
    assert "0 entries posted, 2 already present; days touched: none" in again.output


def test_repair_batch_of_an_unknown_batch_exits_1(sqlite_ops_world):
    result = CliRunner().invoke(main, ["repair-batch", "nope", "--no-reconcile"])
    assert result.exit_code == 1
    assert "batch nope: repair refused: batch_id: no batch 'nope' is staged" in result.output


def test_retrigger_settlement_refuses_without_quorum_and_settles_with_it(ledger, payout_sandbox, monkeypatch):
    url = ledger.url.render_as_string(hide_password=False)
    monkeypatch.setenv("PAYOUT_API_BASE", payout_sandbox.url)
    monkeypatch.setenv("PAYOUT_API_TOKEN", payout_sandbox.token)
    make_stuck_payout(ledger, payout_sandbox, "pay_7", at_us=now_us() - 30 * HOUR_US)
    payout_sandbox.mark_stuck(["pay_7"], stuck=False)

    refused = CliRunner().invoke(main, ["retrigger-settlement", "pay_7", "--actor", "ops:ana",
                                        "--database-url", url])
    assert refused.exit_code == 1
    assert "re-trigger refused" in refused.output and "security-engineer" in refused.output
    assert get_payout(ledger, "pay_7").payout.status == "pending"

    renew_approvals(ledger, "pay_7")
    settled = _run("retrigger-settlement", "pay_7", "--actor", "ops:ana", "--database-url", url)
    assert settled.exit_code == 0
    assert settled.output.startswith("payout pay_7: settled (provider: settled;")
    assert get_payout(ledger, "pay_7").payout.status == "settled"

    missing_actor = CliRunner().invoke(main, ["retrigger-settlement", "pay_7", "--database-url", url])
    assert missing_actor.exit_code == 2 and "--actor" in missing_actor.output


def test_incidents_lists_partial_batches_and_stuck_payouts(sqlite_ops_world):
    clean = CliRunner().invoke(main, ["incidents"])
    assert clean.exit_code == 0, clean.output
    assert "ledger incidents: 0" in clean.output

    inject_partial_batch(sqlite_ops_world)
    engine = create_ledger_engine(sqlite_ops_world.database_url)
    make_stuck_payout(engine, sqlite_ops_world.payout, "pay_cli", at_us=now_us() - 5 * HOUR_US)
    engine.dispose()
    listed = CliRunner().invoke(main, ["incidents"])
    assert listed.exit_code == 1
    assert f"partial_batch:{LATE_BATCH}  days={LATE_DAY}  last_batch={LATE_BATCH}" in listed.output
    assert "stuck payouts (pending > 14400 s): 1" in listed.output and "pay_cli" in listed.output

    doc = json.loads(CliRunner().invoke(main, ["incidents", "--json"]).output)
    assert [i["key"] for i in doc["incidents"]] == [f"partial_batch:{LATE_BATCH}"]
    assert [p["payout_id"] for p in doc["stuck_payouts"]] == ["pay_cli"]
    # A longer SLA (option or FP_STUCK_PAYOUT_SLA_S) and a longer grace hide both.
    quiet = CliRunner().invoke(main, ["incidents", "--sla-s", str(6 * 3600), "--grace-s", str(2 * 3600)])
    assert quiet.exit_code == 0, quiet.output
    # An unusable variable is a usage error (2), never "incidents are open" (1).
    bad = CliRunner().invoke(main, ["incidents"], env={"FP_STUCK_PAYOUT_SLA_S": "4h"})
    assert bad.exit_code == 2 and "FP_STUCK_PAYOUT_SLA_S" in bad.output


def test_drill_record_appends_the_outcome_with_the_reports_sha256(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "reconciliation_report.json"
    report.write_bytes(json.dumps({
        "format": "finance-reconciliation/1",
        "interval": {"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"},
        "summary": {"discrepancies": {"LEDGER_MISSING": 1, "AMOUNT_MISMATCH": 0}},
    }).encode())
    digest = hashlib.sha256(report.read_bytes()).hexdigest()

    first = _run("drill", "record", "--report", "reconciliation_report.json", "--outcome", "fail",
                 "--operator", "ops:ana")
    assert first.exit_code == 0, first.output
    text = (tmp_path / "docs" / "acceptance-checklist.md").read_text()
    assert text.startswith("# Acceptance checklist\n")
    [row] = [line for line in text.splitlines() if digest in line]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:] == ["ops:ana", "fail", "`reconciliation_report.json`", f"`{digest}`",
                         "2026-11-02T00:00:00Z .. 2026-11-03T00:00:00Z", "LEDGER_MISSING=1"]

    # A second drill goes into the same table, before any section written after it.
    checklist = tmp_path / "docs" / "acceptance-checklist.md"
    checklist.write_text(checklist.read_text() + "\n## Sign-off\n\n- [ ] finance lead\n")
    other = tmp_path / "other.json"
    other.write_text("not a report")
    second = _run("drill", "record", "--report", str(other), "--outcome", "pass", "--operator", "ops|bob")
    assert second.exit_code == 0
    lines = checklist.read_text().splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("| 20")]
    assert len(rows) == 2 and rows[1] == rows[0] + 1
    assert rows[1] < lines.index("## Sign-off")
    assert "ops\\|bob | pass" in lines[rows[1]]
    assert hashlib.sha256(b"not a report").hexdigest() in lines[rows[1]]
    assert lines[rows[1]].endswith("| - | - |")


def test_drill_record_needs_an_existing_report_and_a_known_outcome(tmp_path):
    missing = CliRunner().invoke(main, ["drill", "record", "--report", str(tmp_path / "nope.json"),
                                        "--outcome", "pass", "--operator", "x"])
    assert missing.exit_code == 2
    (tmp_path / "r.json").write_text("{}")
    bad = CliRunner().invoke(main, ["drill", "record", "--report", str(tmp_path / "r.json"),
                                    "--outcome", "maybe", "--operator", "x"])
    assert bad.exit_code == 2


def test_every_test_and_command_the_runbook_names_exists():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "runbook.md").read_text()
    refs = set(re.findall(r"`([\w/]+\.py)::(\w+)`", text))
    assert len(refs) > 30
    missing = []
    for path, name in sorted(refs):
        source = root / "finance_pipeline_tests" / path
        if not source.exists() or not re.search(rf"^def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/runbook.md names tests that do not exist: {missing}"

    commands = set(re.findall(r"`finance-pipeline ([a-z-]+)", text))
    assert {"export", "verify", "repair-batch", "retrigger-settlement", "incidents", "drill"} <= commands
    # Every command module's COMMANDS (what cli/__init__.py registers).
    import importlib
    import pkgutil

    import finance_pipeline.cli as cli_pkg

    known = set(main.commands)
    for info in pkgutil.iter_modules(cli_pkg.__path__):
        if info.name == "__main__":  # runs the CLI when imported
            continue
        module = importlib.import_module(f"finance_pipeline.cli.{info.name}")
        known |= {c.name for c in getattr(module, "COMMANDS", [])}
    unknown = sorted(c for c in commands if c not in known)
    assert not unknown, f"docs/runbook.md names commands the CLI lacks: {unknown}"
