"""The day extract and the leaves rebuilt from it, on both backends."""

from __future__ import annotations

import hashlib
import random
import uuid

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from finance_pipeline.domain.canonical import MAX_SAFE_INT, canonical_bytes
from finance_pipeline.domain.journal import parse_entry
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.ledger.batches import stage_batch
from finance_pipeline.ledger.extract import (
    COLUMN_NAMES,
    DTYPES,
    entries_from_lines,
    extract_continuation_lines,
    extract_day_lines,
    extract_linked_lines,
    extract_window_lines,
    WindowMovedError,
    write_window_lines,
    libpq_conninfo,
    snapshot_cursors,
)
from finance_pipeline.ledger.engine import create_ledger_engine
from finance_pipeline.ledger.posting import post_entries
from finance_pipeline.ledger.schema import journal_entries
from finance_pipeline_tests.fixtures.postgres import ADMIN_URL, drop_database
from finance_pipeline_tests.ledger.helpers import DAY, clone_database, entry, line, make_ledger

LO, HI = day_bounds_us(DAY)


def _methods(engine) -> list[str]:
    return ["rows", "copy", "adbc"] if engine.dialect.name == "postgresql" else ["rows", "json"]


def _assert_shape(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMN_NAMES
    assert {c: frame[c].dtype for c in frame.columns} == DTYPES


def test_day_is_half_open_and_ordered(ledger):
    stamps = {
        "before": LO - 1, "first": LO, "noon": LO + 43_200_000_000, "last": HI - 1, "next-day": HI,
    }
    post_entries(ledger, [entry(jid, ts=format_ts_us(ts)) for jid, ts in stamps.items()])
    for method in _methods(ledger):
        frame = extract_day_lines(ledger, LO, HI, method=method)
        _assert_shape(frame)
        assert frame["journal_id"].tolist() == ["first", "first", "noon", "noon", "last", "last"]
        assert frame["ts_us"].tolist() == [LO, LO, LO + 43_200_000_000, LO + 43_200_000_000, HI - 1, HI - 1]
        assert frame["line_no"].tolist() == [0, 1] * 3


def test_same_instant_orders_by_journal_id_in_code_point_order(ledger):
    ids = ["b", "a", "B", "é", "Z", "a-2", "a_2", "10", "9"]
    post_entries(ledger, [entry(jid) for jid in ids])
    expected = sorted(ids)  # Python compares code points
    assert expected[:4] == ["10", "9", "B", "Z"]
    for method in _methods(ledger):
        frame = extract_day_lines(ledger, LO, HI, method=method)
        assert frame["journal_id"].drop_duplicates().tolist() == expected
    assert [leaf["journal_id"] for leaf in entries_from_lines(frame)] == expected


@pytest.fixture
def icu_pg_ledger(pg_ledger_template):
    """A Postgres ledger whose default collation is linguistic (en-US), where 'a' < 'B'."""
    name = f"fp_test_icu_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu "
            "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"))
    admin.dispose()
    url = sa.engine.make_url(pg_ledger_template).set(database=name).render_as_string(hide_password=False)
    engine = make_ledger(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 'a' < 'B'").scalar() is True
    yield engine
    engine.dispose()
    drop_database(url)


@pytest.mark.postgres
def test_code_point_order_holds_under_a_linguistic_collation(icu_pg_ledger):
    ids = ["b", "a", "B", "Z", "é"]
    post_entries(icu_pg_ledger, [entry(jid) for jid in ids])
    for method in ("rows", "copy", "adbc"):
        frame = extract_day_lines(icu_pg_ledger, LO, HI, method=method)
        assert frame["journal_id"].drop_duplicates().tolist() == ["B", "Z", "a", "b", "é"]


def test_empty_day_has_the_same_columns_and_dtypes(ledger):
    post_entries(ledger, [entry("other-day", ts="2026-11-03T00:00:00Z")])
    for method in _methods(ledger):
        frame = extract_day_lines(ledger, LO, HI, method=method)
        assert frame.empty
        _assert_shape(frame)
    assert entries_from_lines(frame) == []


TRICKY_MEMOS = ["", 'quote " and comma , here', "two\nlines\r\nand\ttab", "naïve – 日本 🧾", "\\N", "NULL"]


def _tricky_entries() -> list[dict]:
    out = []
    for i, memo in enumerate(TRICKY_MEMOS):
        out.append(entry(f"T-{i}", memo=memo, ts=f"2026-11-02T0{i}:00:00.00000{i + 1}Z",
                         provider="stripe" if i % 2 else None,
                         provider_reference=f"txn_{i}" if i % 2 else None))
    out.append(entry("T-adj", kind="adjustment", reviewed_by="bob", ts="2026-11-02T09:00:00Z",
                     # A line of exactly 2^53-1, in a currency whose day total it alone makes.
                     lines=[line("jpy_cash", "debit", MAX_SAFE_INT, "JPY"), line("fees", "debit", 1),
                            line("jpy_revenue", "credit", MAX_SAFE_INT, "JPY"), line("revenue", "credit", 1)]))
    out.append(entry("T-rev", kind="reversal", reverses="T-0", ts="2026-11-02T09:00:00Z",
                     lines=[line("revenue", "debit", 1250), line("cash", "credit", 1250),
                            line("eur_cash", "debit", 7, "EUR"), line("eur_revenue", "credit", 7, "EUR")]))
    return out


def test_every_reader_returns_the_same_frame_for_tricky_content(ledger):
    stage_batch(ledger, "batch-x", _tricky_entries()[:3], "x.jsonl")
    post_entries(ledger, _tricky_entries()[3:])
    reference = extract_day_lines(ledger, LO, HI, method="rows")
    _assert_shape(reference)
    assert len(reference) == 2 * len(TRICKY_MEMOS) + 8
    assert reference.loc[reference["journal_id"] == "T-0", "memo"].tolist() == ["", ""]
    assert reference["batch_id"].isna().sum() == len(reference) - 6
    assert reference.loc[reference["journal_id"] == "T-adj", "amount_minor"].max() == MAX_SAFE_INT
    assert reference.loc[reference["account_id"] == "fees", "account_role"].tolist() == ["stripe_fees"]
    assert reference.loc[reference["account_id"] == "eur_cash", "account_role"].isna().all()
    for method in _methods(ledger)[1:] + ["auto"]:
        for chunk_rows in (1, 3, 200_000):
            frame = extract_day_lines(ledger, LO, HI, chunk_rows=chunk_rows, method=method)
            pd.testing.assert_frame_equal(frame, reference)


def test_leaves_rebuilt_from_the_extract_are_the_posted_bodies(ledger):
    entries = _tricky_entries()
    stage_batch(ledger, "batch-x", entries[:3], "x.jsonl")
    post_entries(ledger, entries[3:])
    frame = extract_day_lines(ledger, LO, HI)
    leaves = entries_from_lines(frame)

    with ledger.connect() as conn:
        stored = {jid: sha for jid, sha in conn.execute(
            sa.select(journal_entries.c.journal_id, journal_entries.c.body_sha256))}
    # Each leaf hashes to the body_sha256 recorded when it was posted.
    assert {leaf["journal_id"]: hashlib.sha256(canonical_bytes(leaf)).hexdigest() for leaf in leaves} == stored
    expected = sorted(
        (parse_entry({**e, "batch_id": "batch-x"} if i < 3 else e).to_leaf() for i, e in enumerate(entries)),
        key=lambda leaf: (parse_entry(leaf).ts_us, leaf["journal_id"]),
    )
    assert leaves == expected
    assert list(leaves[0]) == ["journal_id", "ts", "kind", "memo", "batch_id", "provider",
                               "provider_reference", "reverses", "posted_by", "reviewed_by", "lines"]
    assert leaves[0]["ts"] == "2026-11-02T00:00:00.000001Z"
    assert all(type(line["amount_minor"]) is int for leaf in leaves for line in leaf["lines"])

    # Row order in the frame does not matter; line order comes from line_no.
    shuffled = frame.sample(frac=1, random_state=random.Random(7).randint(0, 999)).reset_index(drop=True)
    assert entries_from_lines(shuffled) == leaves


def test_bad_arguments(sqlite_ledger):
    with pytest.raises(ValueError, match="chunk_rows"):
        extract_day_lines(sqlite_ledger, LO, HI, chunk_rows=0)
    with pytest.raises(ValueError, match="method"):
        extract_day_lines(sqlite_ledger, LO, HI, method="fast")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        extract_day_lines(sqlite_ledger, LO, HI, method="copy")
    with pytest.raises(ValueError, match="needs PostgreSQL"):
        extract_day_lines(sqlite_ledger, LO, HI, method="adbc")


@pytest.fixture
def pg_ledger(pg_ledger_template):
    url = clone_database(pg_ledger_template)
    engine = create_ledger_engine(url)
    yield engine
    engine.dispose()
    drop_database(url)


@pytest.mark.postgres
def test_the_two_reads_of_the_adbc_extract_share_one_snapshot(pg_ledger):
    """Entries and lines are read on two connections; a posting that commits between the
    reads is seen by neither, so no line is ever read without its entry."""
    post_entries(pg_ledger, [entry("before")])
    count = ("SELECT count(*) FROM journal_entries", "SELECT count(*) FROM journal_lines")
    with snapshot_cursors(libpq_conninfo(pg_ledger)) as cursors:
        post_entries(pg_ledger, [entry("between")])
        seen = []
        for cur in cursors:
            for sql in count:
                cur.execute(sql)
                seen.append(cur.fetchone()[0])
    assert seen == [1, 2, 1, 2]
    frame = extract_day_lines(pg_ledger, LO, HI, method="adbc")
    assert frame["journal_id"].drop_duplicates().tolist() == ["before", "between"]


def test_the_adbc_connection_string_is_the_engine_url_as_libpq_reads_it():
    from psycopg.conninfo import conninfo_to_dict

    password = "p@:/%+ x'\\"
    url = sa.engine.URL.create("postgresql+psycopg", username="fin ops", password=password, host="db.internal",
                               port=6432, database="led ger",
                               query={"options": "-c search_path=ledger", "sslmode": "require"})
    got = conninfo_to_dict(libpq_conninfo(sa.create_engine(url)))
    assert got == {"user": "fin ops", "password": password, "host": "db.internal", "port": "6432",
                   "dbname": "led ger", "options": "-c search_path=ledger", "sslmode": "require"}
    socket = sa.create_engine("postgresql+psycopg://fp@/ledger?host=/var/run/postgresql")
    assert conninfo_to_dict(libpq_conninfo(socket)) == {"user": "fp", "dbname": "ledger",
                                                        "host": "/var/run/postgresql"}


@pytest.mark.postgres
def test_auto_falls_back_to_copy_when_adbc_cannot_connect(pg_ledger, monkeypatch, caplog):
    import finance_pipeline.ledger.extract as extract

    post_entries(pg_ledger, [entry("J-1"), entry("J-2")])
    reference = extract_day_lines(pg_ledger, LO, HI, method="copy")
    monkeypatch.setattr(extract, "libpq_conninfo", lambda engine: "host=127.0.0.1 port=1 connect_timeout=2")
    with pytest.raises(extract.AdbcConnectError):
        extract_day_lines(pg_ledger, LO, HI, method="adbc")
    pd.testing.assert_frame_equal(extract_day_lines(pg_ledger, LO, HI), reference)
    assert "reading through psycopg's COPY instead" in caplog.text


class _FakeCursor:
    """An ADBC cursor that returns a given table for the entries or the lines query."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.tables, self.table = tables, None

    def execute(self, sql: str) -> None:
        self.table = self.tables["lines" if "journal_lines.line_no" in sql else "entries"]

    def fetch_arrow_table(self) -> pa.Table:
        return self.table


def test_the_adbc_reader_orders_rows_whatever_order_the_server_sends(ledger, monkeypatch):
    """The server's row order is not defined (a hash join, a parallel scan); the reader's join
    and sort must give the reference frame from any order of entries and of lines."""
    import contextlib

    import numpy as np

    import finance_pipeline.ledger.extract as extract

    entries = _tricky_entries()
    stage_batch(ledger, "batch-x", entries[:3], "x.jsonl")
    post_entries(ledger, entries[3:])
    post_entries(ledger, [entry(f"M-{i}", lines=[line("cash", "debit", 10 + i), line("fees", "debit", 5),
                                                  line("cash", "debit", 1), line("revenue", "credit", 16 + i)])
                          for i in range(5)])
    reference = extract_day_lines(ledger, LO, HI, method="rows")
    table = pa.Table.from_pandas(reference, preserve_index=False)
    rng = np.random.default_rng(3)
    first = ~reference["journal_id"].duplicated().to_numpy()
    entry_cols = list(COLUMN_NAMES[:10])
    served = {
        "entries": table.select(entry_cols).filter(pa.array(first)).take(rng.permutation(int(first.sum()))),
        "lines": pa.table({
            "journal_id": table["journal_id"], "line_no": table["line_no"].cast(pa.int32()),
            "account_id": table["account_id"], "direction": table["direction"],
            "amount_minor": table["amount_minor"], "currency": table["currency"], "role": table["account_role"],
        }).take(rng.permutation(len(reference))),
    }
    assert served["lines"]["line_no"].to_pylist() != sorted(served["lines"]["line_no"].to_pylist())

    @contextlib.contextmanager
    def fake(conninfo):
        yield [_FakeCursor(served), _FakeCursor(served)]

    monkeypatch.setattr(extract, "snapshot_cursors", fake)
    pd.testing.assert_frame_equal(extract._to_frame(extract._read_adbc(ledger, LO, HI)), reference)


def test_the_window_extract_reads_the_rest_of_each_claim_whatever_its_date(ledger):
    """A reversal dated days later, with the reference of an entry in the window, is read with
    the window; entries with other references or none, outside it, are not."""
    day = 86_400_000_000
    post_entries(ledger, [
        entry("pay-1", ts=format_ts_us(LO + 3_600_000_000), provider="payout_sandbox", provider_reference="po_1"),
        entry("pay-1-rev", ts=format_ts_us(HI + 3 * day), provider="payout_sandbox", provider_reference="po_1",
              kind="reversal", reverses="pay-1",
              lines=[line("revenue", "debit", 1250), line("cash", "credit", 1250)]),
        entry("other-ref", ts=format_ts_us(HI + day), provider="payout_sandbox", provider_reference="po_2"),
        entry("same-ref-other-provider", ts=format_ts_us(HI + day), provider="stripe", provider_reference="po_1"),
        entry("no-ref", ts=format_ts_us(LO - day)),
    ])
    frame = extract_window_lines(ledger, LO, HI)
    _assert_shape(frame)
    assert frame["journal_id"].drop_duplicates().tolist() == ["pay-1", "pay-1-rev"]
    assert frame.equals(pd.concat([extract_day_lines(ledger, LO, HI), extract_continuation_lines(ledger, LO, HI)],
                                  ignore_index=True))


def test_linked_lines_are_the_entries_outside_the_window_naming_the_references(ledger):
    day = 86_400_000_000
    post_entries(ledger, [
        entry("in-window", ts=format_ts_us(LO + 1), provider="stripe", provider_reference="ch_1"),
        entry("later", ts=format_ts_us(HI + day), provider="stripe", provider_reference="ch_1"),
        entry("earlier", ts=format_ts_us(LO - day), provider="stripe", provider_reference="txn_9"),
        entry("unasked", ts=format_ts_us(HI + day), provider="stripe", provider_reference="ch_2"),
        entry("other-provider", ts=format_ts_us(HI + day), provider="payout_sandbox", provider_reference="ch_1"),
    ])
    frame = extract_linked_lines(ledger, [("stripe", "ch_1"), ("stripe", "txn_9")], LO, HI, batch=1)
    _assert_shape(frame)
    assert frame["journal_id"].drop_duplicates().tolist() == ["earlier", "later"]
    assert extract_linked_lines(ledger, [], LO, HI).empty


@pytest.mark.parametrize("slice_entries", [1, 2, 5, 1000])
def test_the_window_written_in_slices_reads_back_as_the_window_extract(ledger, tmp_path, slice_entries):
    """Continuation lines on both sides, entries on the slices' edges, a slice with nothing in it:
    the file is the frame, and the pieces it was written in are that frame cut in order."""
    day = 86_400_000_000
    quarter = (HI - LO) // 4
    post_entries(ledger, [
        entry("rev-earlier", ts=format_ts_us(LO - day), provider="stripe", provider_reference="re_1"),
        entry("a-first", ts=format_ts_us(LO)),
        entry("b-edge", ts=format_ts_us(LO + quarter), provider="stripe", provider_reference="ch_1"),
        entry("c-same-instant", ts=format_ts_us(LO + quarter)),
        entry("d-refund", ts=format_ts_us(LO + quarter + 5), provider="stripe", provider_reference="re_1",
              kind="reversal", reverses="rev-earlier",
              lines=[line("revenue", "debit", 1250), line("cash", "credit", 1250)]),
        entry("e-last", ts=format_ts_us(HI - 1), provider="payout_sandbox", provider_reference="po_1"),
        entry("f-later", ts=format_ts_us(HI + 2 * day), provider="stripe", provider_reference="ch_1"),
        entry("outside", ts=format_ts_us(HI + day)),
    ])
    pieces: list[pd.DataFrame] = []
    path = tmp_path / "lines.parquet"
    rows = write_window_lines(ledger, LO, HI, path, pieces.append, slice_entries=slice_entries)
    expected = extract_window_lines(ledger, LO, HI)
    assert expected["journal_id"].drop_duplicates().tolist() == [
        "rev-earlier", "a-first", "b-edge", "c-same-instant", "d-refund", "e-last", "f-later"]
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, expected)
    # Before, the window's slices (cut at every slice_entries-th entry's instant; the two entries
    # at LO + quarter share a slice), after.
    assert rows == len(expected) and all(len(p) for p in pieces)
    window = [p["journal_id"].drop_duplicates().tolist() for p in pieces[1:-1]]
    assert window == {1: [["a-first"], ["b-edge", "c-same-instant"], ["d-refund"], ["e-last"]],
                      2: [["a-first"], ["b-edge", "c-same-instant", "d-refund"], ["e-last"]],
                      5: [["a-first", "b-edge", "c-same-instant", "d-refund", "e-last"]],
                      1000: [["a-first", "b-edge", "c-same-instant", "d-refund", "e-last"]]}[slice_entries]
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), expected)


def test_an_empty_window_written_has_the_extract_s_columns(ledger, tmp_path):
    path = tmp_path / "lines.parquet"
    assert write_window_lines(ledger, LO, HI, path) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(path), extract_window_lines(ledger, LO, HI))
    with pytest.raises(ValueError, match="slice_entries"):
        write_window_lines(ledger, LO, HI, path, slice_entries=0)


def test_slices_follow_the_entries_not_the_clock(ledger, tmp_path):
    """A day whose entries crowd into its first minutes is still cut into slices of about
    slice_entries entries."""
    post_entries(ledger, [entry(f"early-{k}", ts=format_ts_us(LO + k)) for k in range(8)]
                 + [entry(f"late-{k}", ts=format_ts_us(HI - 10 + k)) for k in range(2)])
    pieces: list[pd.DataFrame] = []
    write_window_lines(ledger, LO, HI, tmp_path / "lines.parquet", pieces.append, slice_entries=3)
    assert [p["journal_id"].nunique() for p in pieces] == [3, 3, 3, 1]


@pytest.mark.parametrize("posted", ["into the window", "beside a claim"])
def test_a_window_that_moves_while_it_is_read_is_refused(ledger, tmp_path, posted):
    """An entry posted after the first slice was read (into a later slice, or a reversal outside
    the window completing one of its claims) would give a file that is no state of the ledger."""
    day = 86_400_000_000
    post_entries(ledger, [
        entry("a", ts=format_ts_us(LO + 10)),
        entry("claim", ts=format_ts_us(LO + 20), provider="stripe", provider_reference="ch_9"),
        entry("b", ts=format_ts_us(HI - 10)),
    ])
    late = (entry("late", ts=format_ts_us(HI - 5)) if posted == "into the window" else
            entry("claim-rev", ts=format_ts_us(HI + day), provider="stripe", provider_reference="ch_9",
                  kind="reversal", reverses="claim",
                  lines=[line("revenue", "debit", 1250), line("cash", "credit", 1250)]))
    done: list[bool] = []

    def post_once(piece):
        if not done:
            done.append(True)
            post_entries(ledger, [late])

    with pytest.raises(WindowMovedError, match="read it again"):
        write_window_lines(ledger, LO, HI, tmp_path / "lines.parquet", post_once, slice_entries=1)
    # Read again, the window is the ledger as it now is.
    write_window_lines(ledger, LO, HI, tmp_path / "lines.parquet", slice_entries=1)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "lines.parquet"), extract_window_lines(ledger, LO, HI))
