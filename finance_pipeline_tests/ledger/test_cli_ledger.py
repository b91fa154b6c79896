"""`finance-pipeline db / accounts / journal` through click, on real databases."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from finance_pipeline.cli import main
from finance_pipeline.domain.canonical import canonical_str
from finance_pipeline.domain.journal import parse_entry
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline_tests.ledger.helpers import entry, line, row_counts


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


@pytest.fixture
def people(tmp_path, monkeypatch):
    """An operator, a finance lead and another operator, each with their own API token."""
    from finance_pipeline.api.tokens import TokenStore

    monkeypatch.setenv("FP_API_TOKENS_FILE", str(tmp_path / "tokens.json"))
    store = TokenStore(tmp_path / "tokens.json")
    return {actor: store.add(actor, roles)[0] for actor, roles in
            (("ops:ana", ["operator"]), ("fin:lena", ["finance-lead"]), ("ops:omar", ["operator"]))}


def _manual(journal_id: str, **overrides) -> dict:
    body = entry(journal_id, **overrides)
    body.pop("posted_by")
    body.pop("reviewed_by")
    return body


def test_post_submits_for_review_and_a_second_persons_token_posts_it(url, people):
    body = _manual("P-1")
    sub = run(["journal", "post", "-", "--token", people["ops:ana"]], url, input=json.dumps(body))
    assert sub.exit_code == 0, sub.output + sub.stderr
    assert sub.output.startswith("pending P-1  (submitted by ops:ana;")
    assert _counts(url)["journal_entries"] == 0
    again = run(["journal", "post", "-", "--token", people["ops:ana"]], url, input=json.dumps(body))
    assert again.output.startswith("already pending P-1")
    assert "P-1  standard  by ops:ana" in run(["journal", "pending"], url).output

    # Who you are comes from your token: none, a bad one, your own entry, no reviewer role.
    assert "--token: give your API token" in run(["journal", "review", "P-1", "--approve"], url).stderr
    assert run(["journal", "review", "P-1", "--approve", "--token", "fpt_nope"], url).exit_code == 1
    own = run(["journal", "review", "P-1", "--approve", "--token", people["ops:ana"]], url)
    assert own.exit_code == 1 and "cannot review it" in own.stderr
    peer = run(["journal", "review", "P-1", "--approve", "--token", people["ops:omar"]], url)
    assert peer.exit_code == 1 and "reviewing needs one of the roles" in peer.stderr
    assert _counts(url)["journal_entries"] == 0

    done = run(["journal", "review", "P-1", "--approve", "--token", people["fin:lena"]], url)
    assert done.exit_code == 0, done.stderr
    assert done.output.strip() == "posted P-1  (submitted by ops:ana, reviewed by fin:lena)"
    assert _counts(url)["journal_entries"] == 1
    listed = run(["journal", "list", "--from", "2026-11-02", "--json"], url).output
    assert '"posted_by":"ops:ana"' in listed and '"reviewed_by":"fin:lena"' in listed


def test_post_exit_statuses_name_the_field(url, people):
    def post(body) -> object:
        return run(["journal", "post", "-", "--token", people["ops:ana"]], url,
                   input=body if isinstance(body, str) else json.dumps(body))

    assert post(_manual("P-1")).exit_code == 0
    conflict = post(_manual("P-1", amount=1))
    assert conflict.exit_code == 3
    assert "journal_id: 'P-1' awaits review with another body" in conflict.stderr
    typed = post({**_manual("P-2"), "reviewed_by": "fin:lena"})
    assert typed.exit_code == 1 and typed.stderr.startswith("reviewed_by: is set by the review")
    invalid = post(_manual("P-2", ts="2026-11-02T10:00:00"))
    assert invalid.exit_code == 1
    assert invalid.stderr.startswith("ts: ")
    unknown = post(_manual("P-3", lines=[line("cash", "debit", 1), line("x", "credit", 1)]))
    assert unknown.exit_code == 1
    assert "accounts create x" in unknown.stderr
    assert post("[1, 2").exit_code == 1
    assert _counts(url)["journal_entries"] == 0


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


def test_a_bulk_import_cannot_carry_reviewed_corrections(url, tmp_path):
    """Only the pipeline's own bookings go in by import; a correction naming a reviewer would
    be a typed name again: it must be submitted and approved by a second person."""
    adj = entry("I-adj", kind="adjustment", reviewed_by="fin:lena")
    named = entry("I-std", reviewed_by="fin:lena")
    path = tmp_path / "corrections.jsonl"
    path.write_text(json.dumps(entry("I-ok")) + "\n" + json.dumps(adj) + "\n" + json.dumps(named) + "\n")
    result = run(["journal", "import", str(path)], url)
    assert result.exit_code == 1
    assert "line 2: kind: a reviewed correction cannot be imported in bulk" in result.stderr
    assert "line 3: reviewed_by: a reviewed correction cannot be imported in bulk" in result.stderr
    assert _counts(url)["journal_entries"] == 0
