"""On-call commands: `repair-batch`, `retrigger-settlement`, `incidents`, `drill record`.

Exit statuses as the ledger commands (`finance_pipeline.cli.db`): 0 done; 1 refused or, for
`incidents`, incidents are open; 4 database unreachable or not upgraded.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import click

from finance_pipeline.cli.db import (
    EXIT_REJECTED,
    current_settings,
    database_url_option,
    fail,
    ledger_engine,
    settings_with_database_url,
)

DEFAULT_CHECKLIST = Path("docs") / "acceptance-checklist.md"
CHECKLIST_HEADER = """# Acceptance checklist

Evidence that the operational runbook works on this deployment. Drill rows are appended by
`finance-pipeline drill record`; each names the report it judged and that file's SHA-256.
"""
DRILLS_HEADING = "## Reconciliation drills"
DRILLS_TABLE = ("| recorded (UTC) | operator | outcome | report | sha256 | interval | discrepancies |\n"
                "| --- | --- | --- | --- | --- | --- | --- |")


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (some containers)
        return "cli:unknown"


@click.command("repair-batch")
@click.argument("batch_id")
@click.option("--actor", default=None, help="Who repairs (audit trail) [default: cli:$USER].")
@click.option("--reconcile/--no-reconcile", default=True, show_default=True,
              help="Re-reconcile the days the repair touched, through Dagster on $DAGSTER_HOME.")
@database_url_option
def repair_batch_cmd(batch_id: str, actor: str | None, reconcile: bool, database_url: str | None) -> None:
    """Roll the partly applied batch BATCH_ID forward, then re-reconcile the days it touched.

    Posts only the staged entries that are missing (idempotent). Refuses (exit 1) an unknown
    batch or one whose staged payload is invalid: re-import those entries under a new batch id.
    """
    from finance_pipeline.domain.journal import JournalValidationError
    from finance_pipeline.ledger.errors import LedgerError
    from finance_pipeline.oncall.repair import RepairRefusedError, repair_batch

    from finance_pipeline.ledger.posting import EntryWindow

    config = current_settings()
    with ledger_engine(database_url) as engine:
        try:
            result = repair_batch(engine, batch_id, actor=actor or _default_actor(),
                                  window=EntryWindow.from_settings(config))
        except RepairRefusedError as exc:
            fail(EXIT_REJECTED, str(exc))
        except (LedgerError, JournalValidationError) as exc:
            fail(EXIT_REJECTED, f"batch {batch_id}: repair refused: {exc}")
    click.echo(f"batch {batch_id}: {result.created} entries posted, {result.already_present} already "
               f"present; days touched: {', '.join(result.days) or 'none'} (audit event {result.audit_event_id})")
    if not (reconcile and result.days):
        return
    from finance_pipeline.defs.launch import instance
    from finance_pipeline.definitions import build_definitions
    from finance_pipeline.defs.oncall import rereconcile_days

    config = settings_with_database_url(database_url)
    for day in rereconcile_days(build_definitions(config=config), list(result.days), instance(config),
                                tags={"finance_pipeline/launched_by": "cli:repair-batch"}):
        gates = ", ".join(f"{k}={'pass' if v else 'FAIL'}" for k, v in sorted(day["checks"].items()))
        click.echo(f"{day['day']}  re-reconciled  run_id={day['run_id']}  {gates or 'no gates ran'}")


@click.command("retrigger-settlement")
@click.argument("payout_id")
@click.option("--actor", required=True, help="Who re-triggers (audit trail), e.g. ops:ana.")
@database_url_option
def retrigger_settlement_cmd(payout_id: str, actor: str, database_url: str | None) -> None:
    """Re-submit the stuck payout PAYOUT_ID to the provider ($PAYOUT_API_BASE).

    Refused (exit 1, naming the missing roles) unless its approval quorum still holds.
    """
    from finance_pipeline.oncall.stuck import retrigger_settlement
    from finance_pipeline.payouts.policy import PayoutPolicy, PolicyConfigError
    from finance_pipeline.payouts.service import PayoutError
    from finance_pipeline.providers import ProviderError

    config = current_settings()
    try:
        policy = PayoutPolicy.from_settings(config)
    except PolicyConfigError as exc:
        fail(EXIT_REJECTED, str(exc))
    with ledger_engine(database_url) as engine:
        try:
            outcome = retrigger_settlement(engine, payout_id, base_url=config.payout_api_base,
                                           token=config.payout_api_token, actor=actor, policy=policy)
        except PayoutError as exc:  # no quorum, unknown payout, ...: nothing was sent
            fail(EXIT_REJECTED, f"payout {payout_id}: re-trigger refused: {exc}")
        except ProviderError as exc:  # recorded in the payout's audit trail by the service
            fail(EXIT_REJECTED, f"payout {payout_id}: the provider failed: {exc}")
    click.echo(f"payout {outcome.payout_id}: {outcome.status} (provider: {outcome.provider_status}; "
               f"audit event {outcome.audit_event_id})")


@click.command("incidents")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--sla-s", type=int, default=None,
              help="Stuck-payout SLA in seconds [default: $FP_STUCK_PAYOUT_SLA_S, else 14400].")
@click.option("--grace-s", type=int, default=None,
              help="Partial-batch grace in seconds [default: $FP_BATCH_GRACE_S, else 900].")
@database_url_option
def incidents_cmd(as_json: bool, sla_s: int | None, grace_s: int | None, database_url: str | None) -> None:
    """List open ledger-imbalance incidents and stuck payouts (what the sensors alert on).

    Exit 0 when there are none, 1 when any is open.
    """
    from finance_pipeline.oncall.imbalance import find_incidents
    from finance_pipeline.oncall.stuck import find_stuck_payouts

    config = current_settings(exit_code=2)  # 1 means "incidents are open"
    sla = sla_s if sla_s is not None else config.stuck_payout_sla_s
    grace = grace_s if grace_s is not None else config.batch_grace_s
    with ledger_engine(database_url) as engine:
        incidents = find_incidents(engine, grace_s=grace)
        stuck = find_stuck_payouts(engine, sla_s=sla)
    if as_json:
        click.echo(json.dumps({"incidents": [i.to_dict() for i in incidents],
                               "stuck_payouts": [p.to_dict() for p in stuck]}, indent=2, sort_keys=True))
    else:
        click.echo(f"ledger incidents: {len(incidents)}")
        for i in incidents:
            click.echo(f"  {i.key}  days={','.join(i.days) or '-'}  last_batch={i.last_batch_id or '-'}")
            click.echo(f"    {i.summary}")
        click.echo(f"stuck payouts (pending > {sla} s): {len(stuck)}")
        for p in stuck:
            click.echo(f"  {p.payout_id}")
            click.echo(f"    {p.summary()}")
    raise SystemExit(1 if incidents or stuck else 0)


@click.group("drill")
def drill_group() -> None:
    """Reconciliation drills: record their outcome in the acceptance checklist."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _report_facts(data: bytes) -> tuple[str, str]:
    """(interval, discrepancies) of a finance-reconciliation/1 report, '-' when not one."""
    try:
        doc = json.loads(data)
        interval = f"{doc['interval']['from']} .. {doc['interval']['to']}"
        counts = {k: v for k, v in doc["summary"]["discrepancies"].items() if v}
        return interval, (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "-", "-"


def append_drill_row(checklist: Path, row: str) -> None:
    """Append ``row`` to the drills table, creating the file, heading or table as needed.

    The row goes right after the table's last row, so sections after it stay where they are.
    """
    text = checklist.read_text(encoding="utf-8") if checklist.exists() else CHECKLIST_HEADER
    lines = text.splitlines()
    if DRILLS_HEADING not in lines:
        lines += ["", DRILLS_HEADING, "", *DRILLS_TABLE.splitlines()]
    start = lines.index(DRILLS_HEADING)
    at = start + 1
    # Past blank lines and any paragraph, to the table; then past its rows.
    while at < len(lines) and not lines[at].startswith("|"):
        if lines[at].startswith("#"):
            break
        at += 1
    if at >= len(lines) or not lines[at].startswith("|"):
        lines[at:at] = [*DRILLS_TABLE.splitlines()]
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, row)
    checklist.parent.mkdir(parents=True, exist_ok=True)
    checklist.write_text("\n".join(lines) + "\n", encoding="utf-8")


@drill_group.command("record")
@click.option("--report", "report", required=True,
              type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
              help="The reconciliation report the drill judged (reconciliation_report.json).")
@click.option("--outcome", required=True, type=click.Choice(["pass", "fail"]))
@click.option("--operator", required=True, help="Who ran the drill.")
@click.option("--checklist", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CHECKLIST,
              show_default=True, help="The acceptance checklist to append to.")
def drill_record_cmd(report: Path, outcome: str, operator: str, checklist: Path) -> None:
    """Append the drill's outcome, the report's location and its SHA-256 to the checklist."""
    data = report.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    interval, discrepancies = _report_facts(data)
    recorded = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = "| " + " | ".join([
        recorded, _cell(operator), outcome, f"`{_cell(str(report))}`", f"`{digest}`",
        _cell(interval), _cell(discrepancies),
    ]) + " |"
    append_drill_row(checklist, row)
    click.echo(f"recorded drill {outcome} by {operator}: {report} sha256={digest} -> {checklist}")


@click.command("recover-publication")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--actor", default=None, help="Who recovers (audit trail) [default: cli:$USER].")
@click.option("--force", is_flag=True, help="Also while the seal's lease runs (you know its run is dead).")
@database_url_option
def recover_publication_cmd(day, actor: str | None, force: bool, database_url: str | None) -> None:
    """Finish or undo the interrupted publication of DAY (a sealed day).

    When the store (S3_AUDIT_BUCKET, else FP_PUBLISH_DIR) holds the whole package of the proof
    the day was sealed for, it is registered and the day is closed; otherwise the seal is dropped
    and the day is open again. Nothing to do for an open or published day. A publication whose
    lease still runs may be alive: it is left alone unless --force.
    """
    from finance_pipeline.export.exporter import ExportError, build_publisher, recover_day
    from finance_pipeline.export.registry import LedgerChangedError
    from finance_pipeline.ledger.periods import PublicationInProgressError
    from finance_pipeline.publication import PublicationError

    config = current_settings()
    try:
        publisher = build_publisher(
            bucket=config.s3_audit_bucket, kms_key_id=config.s3_sse_kms_key_id,
            lock_mode=config.s3_object_lock_mode, retention_days=config.s3_retention_days,
            local_dir=str(config.publish_dir), endpoint_url=config.aws_endpoint_url or None,
            region=config.aws_region or None)
    except (ExportError, PublicationError, ValueError) as exc:
        fail(EXIT_REJECTED, f"cannot open the publication store: {exc}")
    with ledger_engine(database_url) as engine:
        try:
            message = recover_day(engine, day.date().isoformat(), publisher, actor=actor or _default_actor(),
                                  force=force)
        except (ExportError, PublicationError, PublicationInProgressError, LedgerChangedError) as exc:
            fail(EXIT_REJECTED, str(exc))
    click.echo(message)


COMMANDS: list[click.Command] = [repair_batch_cmd, retrigger_settlement_cmd, incidents_cmd, drill_group,
                                 recover_publication_cmd]
