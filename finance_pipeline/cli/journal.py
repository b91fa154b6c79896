"""`finance-pipeline journal ...` commands (exit statuses: see `finance_pipeline.cli.db`)."""

from __future__ import annotations

import hashlib
import os
from datetime import date
from typing import Any

import click

from finance_pipeline.domain.strict_json import loads_strict as _loads_strict

from finance_pipeline.cli.db import (
    EXIT_REJECTED,
    current_settings,
    database_url_option,
    exit_for_ledger_error,
    fail,
    ledger_engine,
)


def loads_strict(text: str) -> Any:
    """A journal entry's JSON (domain/strict_json.py); floats are read, so that validation names
    the amount that is not integer minor units."""
    return _loads_strict(text, allow_float=True)


@click.group("journal")
def journal_group() -> None:
    """Post, import and list journal entries (finance-journal/1)."""


@journal_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--batch-id", default=None,
              help="Batch id [default: import-<hash of the file>, so re-importing is a no-op].")
@click.option("--actor", default="cli", show_default=True, help="Who is importing (audit trail).")
@database_url_option
def import_cmd(file: str, batch_id: str | None, actor: str, database_url: str | None) -> None:
    """Import FILE (JSON Lines, one entry per line) as one batch, all or nothing.

    Problems print as `line N: field: message`; then nothing is written and the exit status is 1.
    """
    from finance_pipeline.ledger.batches import stage_batch
    from finance_pipeline.ledger.errors import LedgerError
    from finance_pipeline.domain.journal import JournalValidationError

    with open(file, "rb") as fh:
        data = fh.read()
    entries: list[Any] = []
    line_of: list[int] = []
    problems: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"line {number}: $: is not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            entries.append(loads_strict(text))
        except ValueError as exc:
            problems.append(f"line {number}: $: is not valid JSON ({exc})")
            continue
        line_of.append(number)
    # A bulk import is the pipeline's own bookings; people's corrections (adjustments, or any
    # entry naming a reviewer) go through `journal post` and a second person's review.
    for number, obj in zip(line_of, entries):
        if isinstance(obj, dict) and (obj.get("kind") == "adjustment" or obj.get("reviewed_by") is not None):
            problems.append(f"line {number}: {'kind' if obj.get('kind') == 'adjustment' else 'reviewed_by'}: "
                            "a reviewed correction cannot be imported in bulk; submit it with "
                            "`finance-pipeline journal post --token ...` for a second person's review")
    if problems:
        fail(EXIT_REJECTED, *problems, f"{file}: nothing imported")
    if not entries:
        fail(EXIT_REJECTED, f"{file}: no entries (expected one JSON entry per line)")

    from finance_pipeline.ledger.posting import EntryWindow

    batch = batch_id or "import-" + hashlib.sha256(data).hexdigest()[:20]
    window = EntryWindow.from_settings(current_settings())
    with ledger_engine(database_url) as engine:
        try:
            result = stage_batch(engine, batch, entries, os.path.basename(file), actor=actor, window=window)
        except (LedgerError, JournalValidationError) as exc:
            click.echo(f"{file}: nothing imported", err=True)
            exit_for_ledger_error(exc, where=lambda i: f"line {line_of[i]}")
    click.echo(f"batch {batch}: {result.created} entries created, "
               f"{result.already_present} already present ({len(entries)} in {os.path.basename(file)})")


def _who(token: str | None) -> tuple[str, frozenset[str]]:
    """The actor and roles of an API token (--token, else FP_API_TOKEN): who you are is what
    your token says, never a typed name."""
    from finance_pipeline.api.tokens import TokenError, TokenStore

    config = current_settings()
    secret = token or config.api_token
    if not secret:
        fail(EXIT_REJECTED, "--token: give your API token (or set FP_API_TOKEN); get one with "
                            "`finance-pipeline tokens add --actor ops:ana --roles operator`")
    try:
        who = TokenStore.from_settings(config).authenticate(secret)
    except TokenError as exc:
        fail(EXIT_REJECTED, f"--token: {exc}")
    if who is None:
        fail(EXIT_REJECTED, "--token: not a valid, active token of FP_API_TOKENS_FILE")
    return who.actor, frozenset(who.roles)


_token_option = click.option("--token", default=None, metavar="TOKEN",
                             help="Your API token [default: $FP_API_TOKEN]; it says who you are.")


@journal_group.command("post")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@_token_option
@database_url_option
def post_cmd(source, token: str | None, database_url: str | None) -> None:
    """Submit one entry for review: a JSON object read from SOURCE ('-' for stdin).

    The entry is posted once a second person approves it (`journal review ID --approve`).
    posted_by is your token's actor; leave reviewed_by out. Prints `pending ID` (or
    `already pending ID`). Exit 1 when rejected, 3 when the journal_id is taken.
    """
    from finance_pipeline.domain.journal import JournalValidationError
    from finance_pipeline.ledger import reviews
    from finance_pipeline.ledger.audit import now_us
    from finance_pipeline.ledger.errors import LedgerError

    from finance_pipeline.ledger.posting import EntryWindow

    config = current_settings()
    actor, _ = _who(token)
    try:
        entry = loads_strict(source.read())
    except ValueError as exc:
        fail(EXIT_REJECTED, f"$: is not valid JSON ({exc})")
    with ledger_engine(database_url) as engine:
        try:
            sub, created = reviews.submit(engine, entry, submitter=actor, now_us=now_us(),
                                          ttl_s=config.journal_review_ttl_s,
                                          window=EntryWindow.from_settings(config))
        except (LedgerError, JournalValidationError) as exc:
            exit_for_ledger_error(exc, where=lambda i: "")
    click.echo(f"{'pending' if created else 'already pending'} {sub.journal_id}  (submitted by {actor}; a "
               f"finance-lead or security-engineer approves it: finance-pipeline journal review "
               f"{sub.journal_id} --approve)")


@journal_group.command("review")
@click.argument("journal_id")
@click.option("--approve/--reject", "approve", required=True, help="Post the entry, or drop it.")
@click.option("--comment", default=None, help="Why (kept in the audit trail).")
@_token_option
@database_url_option
def review_cmd(journal_id: str, approve: bool, comment: str | None, token: str | None,
               database_url: str | None) -> None:
    """Approve (post) or reject another person's submitted entry JOURNAL_ID.

    You must hold finance-lead or security-engineer and must not be its author. Exit 1 when
    refused (yours, no role, expired, already reviewed), 3 when its day was closed meanwhile.
    """
    from finance_pipeline.domain.journal import JournalValidationError
    from finance_pipeline.ledger import reviews
    from finance_pipeline.ledger.audit import now_us
    from finance_pipeline.ledger.errors import LedgerError

    from finance_pipeline.ledger.posting import EntryWindow

    window = EntryWindow.from_settings(current_settings())
    actor, roles = _who(token)
    with ledger_engine(database_url) as engine:
        try:
            done = reviews.review(engine, journal_id, reviewer=actor, reviewer_roles=roles, approve=approve,
                                  now_us=now_us(), comment=comment, window=window)
        except reviews.ReviewError as exc:
            fail(EXIT_REJECTED, str(exc))
        except (LedgerError, JournalValidationError) as exc:
            exit_for_ledger_error(exc, where=lambda i: "")
    click.echo(f"{done.status} {journal_id}  (submitted by {done.submitted_by}, reviewed by {actor})")


@journal_group.command("pending")
@database_url_option
def pending_cmd(database_url: str | None) -> None:
    """Entries waiting for a second person, oldest first."""
    from finance_pipeline.ledger import reviews
    from finance_pipeline.ledger.audit import now_us

    with ledger_engine(database_url) as engine:
        items = reviews.pending(engine, now_us())
    for sub in items:
        e = sub.entry
        click.echo(f"{e['ts']}  {sub.journal_id}  {e['kind']}  by {sub.submitted_by}  until "
                   f"{sub.to_dict(0)['expires_at']}  {e['memo']}")
    if not items:
        click.echo("no entries await review", err=True)


def _day(ctx, param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a day; write it as YYYY-MM-DD") from None


@journal_group.command("list")
@click.option("--from", "from_day", required=True, callback=_day, metavar="DAY",
              help="First UTC day (YYYY-MM-DD).")
@click.option("--to", "to_day", default=None, callback=_day, metavar="DAY",
              help="Last UTC day, inclusive [default: --from].")
@click.option("--json", "as_json", is_flag=True,
              help="Print each entry as its canonical JSON leaf, one per line (importable).")
@database_url_option
def list_cmd(from_day: date, to_day: date | None, as_json: bool, database_url: str | None) -> None:
    """List the entries dated in the UTC days FROM..TO, by ts then journal_id."""
    from finance_pipeline.domain.canonical import canonical_str
    from finance_pipeline.domain.money import Money
    from finance_pipeline.domain.timeutil import day_bounds_us
    from finance_pipeline.ledger.extract import entries_from_lines, extract_day_lines

    to_day = to_day or from_day
    if to_day < from_day:
        raise click.BadParameter(f"--to {to_day} is before --from {from_day}", param_hint="--to")
    lo, _ = day_bounds_us(from_day)
    _, hi = day_bounds_us(to_day)
    with ledger_engine(database_url) as engine:
        leaves = entries_from_lines(extract_day_lines(engine, lo, hi))
    for leaf in leaves:
        if as_json:
            click.echo(canonical_str(leaf))
            continue
        debits: dict[str, int] = {}
        for line in leaf["lines"]:
            if line["direction"] == "debit":
                debits[line["currency"]] = debits.get(line["currency"], 0) + line["amount_minor"]
        amounts = ", ".join(Money(v, c).format() for c, v in sorted(debits.items()))
        click.echo(f"{leaf['ts']}  {leaf['journal_id']}  {leaf['kind']}  {amounts}  {leaf['memo']}")
    if not as_json and not leaves:
        click.echo(f"no entries from {from_day} to {to_day}", err=True)


COMMANDS: list[click.Command] = [journal_group]
