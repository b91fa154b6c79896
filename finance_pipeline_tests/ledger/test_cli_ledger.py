"""`finance-pipeline db / accounts / journal` through click, on real databases."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from finance_pipeline.cli import main
from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.journal import parse_entry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline_tests.ledger import entry, line, row_counts


def run(args: list[str], url: str | None = None, *, input: str | None = None, env=None):
    env = dict(env or {})
    if url is not None:
        env.setdefault("DATABASE_URL", url)
    return CliRunner().invoke(main, args, input=input, env=env, catch_exceptions=False)


def _setup(url: str) -> None:
    assert run(["db", "upgrade"], url).exit_code == 0
    for args in (["cash", "--name", "Bank", "--type", "asset", "--currency", "USD", "--role", "bank"],
                 ["revenue", "--name", "Sales", "--type", "revenue", "--currency", "USD"]):
        result = run(["accounts", "create", *args], url)
        assert result.exit_code == 0, result.output + result.stderr


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    _setup(url)
    return url


def _counts(url: str) -> dict[str, int]:
    engine = create_ledger_engine(url)
    try:
        return row_counts(engine)
    finally:
        engine.dispose()


def _write_jsonl(path, bodies: list) -> str:
    path.write_text("".join((b if isinstance(b, str) else json.dumps(b)) + "\n" for b in bodies))
    return str(path)


def test_db_upgrade_reports_revision_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    first = run(["db", "upgrade", "--database-url", url])
    assert first.exit_code == 0
    from finance_pipeline.ledger.migrate import head_revision

    assert f"is at revision {head_revision()}" in first.output and head_revision() != "0001"
    assert run(["db", "upgrade", "--database-url", url]).exit_code == 0


def test_commands_on_a_missing_or_unmigrated_database_exit_4(tmp_path):
    missing = tmp_path / "missing.sqlite3"
    result = run(["accounts", "list", "--database-url", f"sqlite:///{missing}"])
    assert result.exit_code == 4
    assert "db upgrade" in result.stderr
    assert not missing.exists()  # a read does not create an empty database

    empty = tmp_path / "empty.sqlite3"
    create_ledger_engine(f"sqlite:///{empty}").connect().close()
    result = run(["journal", "list", "--from", "2026-11-02"], f"sqlite:///{empty}")
    assert result.exit_code == 4
    assert "has no ledger schema" in result.stderr


def test_accounts_create_and_list(url):
    listed = run(["accounts", "list", "--json"], url)
    assert listed.exit_code == 0
    assert [(a["account_id"], a["currency"], a["role"]) for a in json.loads(listed.output)] == [
        ("cash", "USD", "bank"), ("revenue", "USD", None)]
    assert "cash" in run(["accounts", "list"], url).output

    again = run(["accounts", "create", "cash", "--name", "Bank", "--type", "asset",
                 "--currency", "USD", "--role", "bank"], url)
    assert (again.exit_code, again.output.split(":")[0]) == (0, "already present")

    bad = run(["accounts", "create", "x", "--name", "X", "--type", "asset", "--currency", "usd"], url)
    assert bad.exit_code == 1
    assert "currency: must be an ISO 4217 code in capitals" in bad.stderr

    taken = run(["accounts", "create", "cash", "--name", "Other", "--type", "asset", "--currency", "USD"], url)
    assert taken.exit_code == 3
    assert "already exists" in taken.stderr


def test_import_with_one_bad_line_names_it_and_writes_nothing(url, tmp_path):
    before = _counts(url)
    path = _write_jsonl(tmp_path / "day.jsonl", [
        entry("J-1"),
        entry("J-2", lines=[line("cash", "debit", 12.5), line("revenue", "credit", 12.5)]),
        entry("J-3", lines=[line("cash", "debit", 5), line("nowhere", "credit", 5)]),
    ])
    result = run(["journal", "import", path], url)
    assert result.exit_code == 1
    assert "line 2: lines[0].amount_minor: must be an integer, got float 12.5" in result.stderr
    assert "line 3: lines[1].account_id: account 'nowhere' does not exist" in result.stderr
    assert "nothing imported" in result.stderr
    assert _counts(url) == before


def test_import_rejects_broken_json_lines(url, tmp_path):
    before = _counts(url)
    path = _write_jsonl(tmp_path / "day.jsonl", [
        entry("J-1"), "", "{not json", '{"journal_id": "a", "journal_id": "b"}', '{"x": NaN}'])
    result = run(["journal", "import", path], url)
    assert result.exit_code == 1
    assert "line 3: $: is not valid JSON" in result.stderr
    assert "line 4: $: is not valid JSON (member 'journal_id' appears twice)" in result.stderr
    assert "line 5: $: is not valid JSON (NaN is not a JSON number)" in result.stderr
    assert _counts(url) == before


def test_import_is_one_batch_and_reimport_is_a_no_op(url, tmp_path):
    path = _write_jsonl(tmp_path / "day.jsonl", [entry(f"J-{i}", amount=100 + i) for i in range(3)])
    first = run(["journal", "import", path, "--batch-id", "day-1"], url)
    assert first.exit_code == 0, first.stderr
    assert first.output.strip() == "batch day-1: 3 entries created, 0 already present (3 in day.jsonl)"
    again = run(["journal", "import", path, "--batch-id", "day-1"], url)
    assert "0 entries created, 3 already present" in again.output
    other = _write_jsonl(tmp_path / "other.jsonl", [entry("J-9")])
    clash = run(["journal", "import", other, "--batch-id", "day-1"], url)
    assert clash.exit_code == 3
    assert "different payload" in clash.stderr

    # The batch is part of each entry's body: the same entries under another batch conflict.
    moved = run(["journal", "import", path, "--batch-id", "day-2"], url)
    assert moved.exit_code == 3
    assert "it was posted in batch 'day-1', this one is in batch 'day-2'" in moved.stderr

    # Without --batch-id the id derives from the file's bytes, so re-running is idempotent.
    default = run(["journal", "import", other], url)
    assert default.exit_code == 0
    assert default.output.startswith("batch import-")
    assert "0 entries created, 1 already present" in run(["journal", "import", other], url).output


def test_post_from_stdin_exit_statuses(url):
    body = entry("P-1")
    created = run(["journal", "post", "-"], url, input=json.dumps(body))
    assert (created.exit_code, created.output.strip()) == (0, "created P-1")
    present = run(["journal", "post", "-"], url, input=json.dumps(body))
    assert (present.exit_code, present.output.strip()) == (0, "already present P-1")

    conflict = run(["journal", "post", "-"], url, input=json.dumps(entry("P-1", amount=1)))
    assert conflict.exit_code == 3
    assert "journal_id: 'P-1' is already posted with a different body" in conflict.stderr

    invalid = run(["journal", "post", "-"], url, input=json.dumps(entry("P-2", ts="2026-11-02T10:00:00")))
    assert invalid.exit_code == 1
    assert invalid.stderr.startswith("ts: ")

    unknown = run(["journal", "post", "-"], url,
                  input=json.dumps(entry("P-3", lines=[line("cash", "debit", 1), line("x", "credit", 1)])))
    assert unknown.exit_code == 1
    assert "accounts create x" in unknown.stderr

    assert run(["journal", "post", "-"], url, input="[1, 2").exit_code == 1
    assert _counts(url)["journal_entries"] == 1


def test_list_text_and_json_lines(url, tmp_path):
    bodies = [entry("L-2", ts="2026-11-02T09:00:00Z"), entry("L-1", ts="2026-11-02T09:00:00Z"),
              entry("L-3", ts="2026-11-03T00:00:00Z", memo="next day")]
    run(["journal", "import", _write_jsonl(tmp_path / "d.jsonl", bodies), "--batch-id", "b"], url)

    text = run(["journal", "list", "--from", "2026-11-02"], url)
    assert text.exit_code == 0
    assert text.output.splitlines() == ["2026-11-02T09:00:00Z  L-1  standard  USD 12.50  sale",
                                        "2026-11-02T09:00:00Z  L-2  standard  USD 12.50  sale"]
    as_json = run(["journal", "list", "--from", "2026-11-02", "--to", "2026-11-03", "--json"], url)
    expected = [canonical_str(parse_entry({**b, "batch_id": "b"}).to_leaf()) for b in (bodies[1], bodies[0], bodies[2])]
    assert as_json.output.splitlines() == expected

    assert run(["journal", "list", "--from", "2026-11-3"], url).exit_code == 2
    assert run(["journal", "list", "--from", "2026-11-03", "--to", "2026-11-02"], url).exit_code == 2


@pytest.mark.postgres
def test_cli_on_postgres_with_a_plain_postgresql_url(pg_url, tmp_path):
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    _setup(plain)
    path = _write_jsonl(tmp_path / "day.jsonl", [entry("PG-1"), entry("PG-2")])
    result = run(["journal", "import", path, "--database-url", plain])
    assert result.exit_code == 0, result.stderr
    listed = run(["journal", "list", "--from", "2026-11-02", "--json"], plain)
    assert [json.loads(x)["journal_id"] for x in listed.output.splitlines()] == ["PG-1", "PG-2"]
