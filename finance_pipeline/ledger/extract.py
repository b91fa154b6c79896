"""Read one interval of the ledger as a flat frame of journal lines, and rebuild the spec leaves
(``entries_from_lines``; their canonical text is written column-wise by columnar/leaves.py).

The rows never become Python row objects. On PostgreSQL, ADBC's driver reads the entries and
their lines as two binary COPY streams straight into Arrow, on two connections that share one
snapshot (``COPY ... TO STDOUT`` as CSV into Arrow's CSV reader is the fallback); SQLite renders
each row as one JSON object that Arrow's JSON reader parses a chunk at a time. Any other
backend takes the plain path (SQLAlchemy ``yield_per`` with a server-side cursor), which is
also the reference the tests compare the fast paths with. Integers stay int64; text is ``string[pyarrow]`` with <NA> for nulls.
"""

from __future__ import annotations

import gc
import io
import itertools
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import sqlalchemy as sa

from finance_pipeline.domain.timeutil import format_ts_us
from finance_pipeline.ledger.schema import accounts, journal_entries, journal_lines

_E, _L, _A = journal_entries.c, journal_lines.c, accounts.c

# (column, source column, Arrow type) in frame order.
_SPEC: tuple[tuple[str, sa.Column, pa.DataType], ...] = (
    ("journal_id", _E.journal_id, pa.string()),
    ("ts_us", _E.ts_us, pa.int64()),
    ("kind", _E.kind, pa.string()),
    ("memo", _E.memo, pa.string()),
    ("batch_id", _E.batch_id, pa.string()),
    ("provider", _E.provider, pa.string()),
    ("provider_reference", _E.provider_reference, pa.string()),
    ("reverses", _E.reverses, pa.string()),
    ("posted_by", _E.posted_by, pa.string()),
    ("reviewed_by", _E.reviewed_by, pa.string()),
    ("line_no", _L.line_no, pa.int64()),
    ("account_id", _L.account_id, pa.string()),
    ("direction", _L.direction, pa.string()),
    ("amount_minor", _L.amount_minor, pa.int64()),
    ("currency", _L.currency, pa.string()),
    ("account_role", _A.role, pa.string()),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _SPEC)
SCHEMA = pa.schema([pa.field(name, typ) for name, _, typ in _SPEC])
STRING_DTYPE = pd.StringDtype("pyarrow")
# The dtypes of every extract frame, empty or not.
DTYPES: dict[str, Any] = {
    name: ("int64" if typ == pa.int64() else STRING_DTYPE) for name, _, typ in _SPEC
}
METHODS = ("auto", "rows", "copy", "json", "adbc")
_ENTRY_COLUMNS = 10  # the first ten of _SPEC come from journal_entries, the rest per line


def _statement(dialect: str, lo_us: int, hi_us: int, columns: list[Any], *, ordered: bool = True,
               where: Any = None) -> sa.Select:
    # The proof orders entries by journal_id in code point order: PostgreSQL's default
    # collation is linguistic, "C" compares bytes (UTF-8 byte order = code point order).
    order_id = _E.journal_id.collate("C") if dialect == "postgresql" else _E.journal_id
    stmt = (
        sa.select(*columns)
        .select_from(
            journal_entries.join(journal_lines, _L.journal_id == _E.journal_id)
            .join(accounts, _A.account_id == _L.account_id)
        )
        .where(*((_E.ts_us >= lo_us, _E.ts_us < hi_us) if where is None else (where,)))
    )
    return stmt.order_by(_E.ts_us, order_id, _L.line_no) if ordered else stmt


# The extract's order: (ts_us, journal_id in code point order, line_no). Arrow compares text by
# its UTF-8 bytes, which is code point order, so sorting here equals ORDER BY ... COLLATE "C".
_SORT_KEYS = [("ts_us", "ascending"), ("journal_id", "ascending"), ("line_no", "ascending")]


def extract_day_lines(
    engine: sa.Engine, lo_us: int, hi_us: int, chunk_rows: int = 200_000, *, method: str = "auto"
) -> pd.DataFrame:
    """One row per journal line of every entry with ``lo_us <= ts_us < hi_us``.

    Ordered by ts_us, journal_id (code point order), line_no; columns ``COLUMN_NAMES`` with
    ``DTYPES`` whether or not the interval holds entries. ``method`` picks the reader
    (``auto``: ``adbc`` on PostgreSQL, or ``copy`` without its driver; ``json`` on SQLite;
    else ``rows``).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    dialect = engine.dialect.name
    chosen = method == "auto"
    if chosen:
        method = {"postgresql": "adbc" if _has_adbc() else "copy", "sqlite": "json"}.get(dialect, "rows")
    if method in ("copy", "adbc") and dialect != "postgresql":
        raise ValueError(f"method={method!r} needs PostgreSQL")
    lo_us, hi_us = int(lo_us), int(hi_us)
    if method == "adbc":
        try:
            return _to_frame(_read_adbc(engine, lo_us, hi_us))
        except AdbcConnectError as exc:
            if not chosen:
                raise
            # Its own libpq and connection string; psycopg's connection may still work.
            logging.getLogger(__name__).warning("%s; reading through psycopg's COPY instead", exc)
            method = "copy"
    with engine.connect() as conn:
        if method == "copy":
            batches = list(_read_copy(conn, lo_us, hi_us, chunk_rows))
        elif method == "json":
            batches = list(_read_json(conn, lo_us, hi_us, chunk_rows))
        else:
            batches = list(_read_rows(conn, lo_us, hi_us, chunk_rows))
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    del batches
    if method == "copy" and table.num_rows > 1:
        # COPY streams the join unsorted (a server-side sort of a large day spills to disk and
        # runs before the first row leaves); (ts_us, journal_id, line_no) is unique, so this
        # sort gives exactly the ORDER BY of the other readers.
        # A column at a time, its chunks (one per CSV block) joined first: half the time of a
        # take across chunks; each unsorted column is let go once its sorted copy exists.
        indices = pc.sort_indices(table, sort_keys=_SORT_KEYS)
        columns = []
        for name in COLUMN_NAMES:
            columns.append(table.column(name).combine_chunks().take(indices))
            table = table.drop_columns([name])
        table = pa.table(columns, schema=SCHEMA)
    return _to_frame(table)


def extract_window_lines(engine: sa.Engine, lo_us: int, hi_us: int, **kwargs: Any) -> pd.DataFrame:
    """What a day's reconciliation reads of the ledger: every entry in the window
    [lo_us, hi_us) (``extract_day_lines``), and the rest of each claim of the window, whatever
    its date (``extract_continuation_lines``: a reversal the next morning). Extract order."""
    return union_lines(extract_day_lines(engine, lo_us, hi_us, **kwargs),
                       extract_continuation_lines(engine, lo_us, hi_us))


# A window of more entries than this is read in time slices of about this many, each written
# out before the next is read (a slice of two million entries is about 1.8 GB of frame; a
# day of up to about 1.8M entries is one slice, read as extract_window_lines reads it).
SLICE_ENTRIES = 2_000_000


class WindowMovedError(RuntimeError):
    """Entries were posted into the window, or beside its claims, while it was read in slices:
    the file would not be one state of the ledger. Nothing is kept; read it again."""


def write_window_lines(engine: sa.Engine, lo_us: int, hi_us: int, path: Any,
                       on_piece: Callable[[pd.DataFrame], Any] | None = None, *,
                       slice_entries: int | None = None, **kwargs: Any) -> int:
    """``extract_window_lines`` written to the Parquet file ``path``, a piece at a time: the
    continuation lines before the window, the window in time slices of at most about
    ``slice_entries`` (default ``SLICE_ENTRIES``) entries (cut at the entries' own instants, so equal instants share a
    slice), the continuation lines after it. The file read back is the frame
    ``extract_window_lines`` returns; ``on_piece`` sees each piece in that order. Only one
    slice is in memory at a time. Returns the line count.

    A window of one slice is read as ``extract_window_lines`` reads it: in one snapshot, then
    the rest of its claims. Slices are read one after another, not in one snapshot. The ledger
    is append-only, so the file is one state of it when the window's entry count and the
    continuation entries are the same after the last slice as before the first; otherwise
    WindowMovedError (the caller reads the window again). Reading every slice in one exported
    snapshot would spare the re-reads on a day still being posted into.
    """
    import pyarrow.parquet as pq

    slice_entries = SLICE_ENTRIES if slice_entries is None else slice_entries
    if slice_entries < 1:
        raise ValueError(f"slice_entries must be >= 1, got {slice_entries}")
    lo_us, hi_us = int(lo_us), int(hi_us)
    entries, bounds = _window_slices(engine, lo_us, hi_us, slice_entries)
    whole = None
    if len(bounds) == 2:
        # One slice: the window is read in one snapshot before the claims' rest, as
        # extract_window_lines reads it (entries posted meanwhile are the seal's to refuse).
        whole = extract_day_lines(engine, lo_us, hi_us, **kwargs)
    ids = _continuation_ids(engine, lo_us, hi_us)
    more = extract_entries_lines(engine, ids) if ids else _rows_frame([])
    schema = pa.Schema.from_pandas(_to_frame(SCHEMA.empty_table()), preserve_index=False)
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        def put(frame: pd.DataFrame) -> None:
            nonlocal rows
            frame = frame.reset_index(drop=True)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            rows += len(frame)
            if on_piece is not None:
                on_piece(frame)

        ts = more["ts_us"].to_numpy(dtype=np.int64)
        if (ts < lo_us).any():
            put(more[ts < lo_us])
        if whole is not None:
            put(whole)
            del whole
        else:
            for a, b in zip(bounds, bounds[1:]):
                piece = extract_day_lines(engine, a, b, **kwargs)
                if len(piece):
                    put(piece)
                del piece
        if (ts >= hi_us).any():
            put(more[ts >= hi_us])
    if len(bounds) > 2 and (_window_entries(engine, lo_us, hi_us) != entries
                            or _continuation_ids(engine, lo_us, hi_us) != ids):
        raise WindowMovedError(
            f"entries were posted into [{format_ts_us(lo_us)}, {format_ts_us(hi_us)}) or beside its claims "
            "while it was read; read it again")
    return rows


def _window_entries(engine: sa.Engine, lo_us: int, hi_us: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(journal_entries)
                                .where(_E.ts_us >= lo_us, _E.ts_us < hi_us)).scalar_one())


def _window_slices(engine: sa.Engine, lo_us: int, hi_us: int, slice_entries: int) -> tuple[int, list[int]]:
    """(entries in the window, the bounds of its slices): [lo, hi) itself when it holds at most
    ``slice_entries`` entries, else cut at the instant of every ``slice_entries``-th entry in
    time order (one pass over the time index)."""
    entries = _window_entries(engine, lo_us, hi_us)
    if entries <= slice_entries:
        return entries, [lo_us, hi_us]
    rank = sa.func.row_number().over(order_by=_E.ts_us).label("rank")
    ranked = sa.select(_E.ts_us, rank).where(_E.ts_us >= lo_us, _E.ts_us < hi_us).subquery()
    cuts = sa.select(ranked.c.ts_us).where(ranked.c.rank > 1, (ranked.c.rank - 1) % slice_entries == 0)
    with engine.connect() as conn:
        inner = sorted(set(conn.execute(cuts).scalars()) - {lo_us})
    return entries, [lo_us, *inner, hi_us]


def union_lines(first: pd.DataFrame, *more: pd.DataFrame) -> pd.DataFrame:
    """Line frames as one, in extract order (ts_us, journal_id, line_no) and ``first``'s dtypes:
    an extract and the entries read beside it. ``first`` itself when nothing is added."""
    parts = [first] + [m.astype(first.dtypes.to_dict()) for m in more if len(m)]
    if len(parts) == 1:
        return first
    both = pd.concat(parts, ignore_index=True)
    return both.sort_values(["ts_us", "journal_id", "line_no"], kind="mergesort").reset_index(drop=True)


def extract_continuation_lines(engine: sa.Engine, lo_us: int, hi_us: int) -> pd.DataFrame:
    """The lines of the entries outside [lo_us, hi_us) sharing a (provider, provider_reference)
    with an entry inside it: every later one, and an earlier one only where the entry inside is
    a reversal. One query: the reference index answers it per in-window entry, so
    its cost follows the day, not the ledger's history."""
    # The ids first (usually none): the lines are then read by id, so the planner is never
    # tempted to scan every line of the ledger's history for an estimated-large IN list.
    ids = _continuation_ids(engine, lo_us, hi_us)
    return extract_entries_lines(engine, ids) if ids else _rows_frame([])


def _continuation_ids(engine: sa.Engine, lo_us: int, hi_us: int) -> list[str]:
    """The journal ids ``extract_continuation_lines`` reads the lines of, sorted."""
    inner, outer = journal_entries.alias("inner_e"), journal_entries.alias("outer_e")
    linked = (
        sa.select(outer.c.journal_id)
        .select_from(inner.join(outer, sa.and_(outer.c.provider_reference == inner.c.provider_reference,
                                              outer.c.provider == inner.c.provider)))
        .where(inner.c.ts_us >= int(lo_us), inner.c.ts_us < int(hi_us), inner.c.provider_reference.is_not(None),
               # Later entries complete a claim of the window (its reversal, an adjustment);
               # earlier ones only what a reversal in the window undoes: a correction posted
               # after its claim's day is reported on its own day, never folded back.
               sa.or_(outer.c.ts_us >= int(hi_us), sa.and_(outer.c.ts_us < int(lo_us), inner.c.kind == "reversal")))
    )
    with engine.connect() as conn:
        return sorted(set(conn.execute(linked.distinct()).scalars()))


def extract_entries_lines(engine: sa.Engine, journal_ids: Iterable[str], *, batch: int = 500) -> pd.DataFrame:
    """The lines of the named entries, in extract order (the restore drill reads back exactly
    the entries a published context names)."""
    wanted = sorted(set(map(str, journal_ids)))
    return _rows_frame(_lines_where(engine, wanted, lambda chunk: _E.journal_id.in_(chunk), batch))


def _lines_where(engine: sa.Engine, values: list[Any], condition: Callable[[list[Any]], Any],
                 batch: int) -> list[Any]:
    """The line rows (``_SPEC`` columns) of the entries meeting ``condition(chunk)``, asked
    ``batch`` values at a time (an IN list stays small whatever the caller holds)."""
    rows: list[Any] = []
    with engine.connect() as conn:
        for at in range(0, len(values), batch):
            stmt = _statement(conn.dialect.name, 0, 0, [col for _, col, _ in _SPEC], ordered=False,
                              where=condition(values[at:at + batch]))
            rows += conn.execute(stmt).all()
    return rows


def _rows_frame(rows: list[Any]) -> pd.DataFrame:
    batches = []
    if rows:
        columns = list(zip(*rows))
        batches.append(pa.RecordBatch.from_arrays(
            [pa.array(values, type=typ) for values, (_, _, typ) in zip(columns, _SPEC)], schema=SCHEMA))
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    if table.num_rows > 1:
        table = table.take(pc.sort_indices(table, sort_keys=_SORT_KEYS))
    return _to_frame(table)


def extract_linked_lines(engine: sa.Engine, refs: Iterable[tuple[str, str]], lo_us: int, hi_us: int,
                         *, batch: int = 500, later_only: bool = False) -> pd.DataFrame:
    """The lines of every entry *outside* [lo_us, hi_us) that names one of ``refs`` as its
    (provider, provider_reference), whatever its date: the other halves of pairs that cross a
    day's read window. Same columns, dtypes and order as ``extract_day_lines``; the plain reader
    (a handful of entries, found through the reference index). ``later_only``: only entries
    dated after the window."""
    wanted = sorted(set((str(p), str(r)) for p, r in refs))
    # The same joins, the opposite time test: entries the day's window does not hold.
    outside = _E.ts_us >= int(hi_us) if later_only else sa.or_(_E.ts_us < int(lo_us), _E.ts_us >= int(hi_us))
    rows = _lines_where(engine, wanted, lambda chunk: sa.and_(
        outside, _E.provider_reference.in_(sorted({r for _, r in chunk}))), batch)
    keep = set(wanted)  # the reference matched; the provider must too
    return _rows_frame([row for row in rows if (row[5], row[6]) in keep])


def _to_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper={pa.string(): STRING_DTYPE}.get)


def _read_rows(conn: sa.Connection, lo_us: int, hi_us: int, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    stmt = _statement(conn.dialect.name, lo_us, hi_us, [col for _, col, _ in _SPEC])
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
    for rows in result.partitions():
        columns = list(zip(*rows))
        yield pa.RecordBatch.from_arrays(
            [pa.array(values, type=typ) for values, (_, _, typ) in zip(columns, _SPEC)],
            schema=SCHEMA,
        )


def _read_json(conn: sa.Connection, lo_us: int, hi_us: int, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    # One JSON object per row: a single Python string per row instead of sixteen objects.
    keys = [f"c{i}" for i in range(len(_SPEC))]
    args: list[Any] = []
    for key, (_, col, _) in zip(keys, _SPEC):
        args += [sa.literal_column(f"'{key}'"), col]
    stmt = _statement(conn.dialect.name, lo_us, hi_us, [sa.func.json_object(*args)])
    options = pa_json.ParseOptions(
        explicit_schema=pa.schema([pa.field(k, typ) for k, (_, _, typ) in zip(keys, _SPEC)]),
        unexpected_field_behavior="error",
    )
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
    for rows in result.partitions():
        data = "\n".join([row[0] for row in rows]).encode("utf-8")
        table = pa_json.read_json(io.BytesIO(data), parse_options=options)
        for batch in table.rename_columns(list(COLUMN_NAMES)).to_batches():
            yield batch


class _CopyStream(io.RawIOBase):
    """A readable file over the rows of a psycopg COPY ... TO STDOUT.

    psycopg hands out one row per COPY data message; joining a few thousand at a time keeps
    the per-row work down to one C-level append instead of a Python read each.
    """

    ROWS_PER_CHUNK = 4096

    def __init__(self, rows: Iterator[Any]):
        self._rows = rows
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, out) -> int:
        if not self._buf:
            chunk = b"".join(itertools.islice(self._rows, self.ROWS_PER_CHUNK))
            if not chunk:
                return 0
            self._buf = memoryview(chunk)
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _read_copy(conn: sa.Connection, lo_us: int, hi_us: int, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Rows in no particular order (the caller sorts them)."""
    stmt = _statement("postgresql", lo_us, hi_us, [col for _, col, _ in _SPEC], ordered=False)
    # Only integers are bound, so rendering them inline is safe.
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
        stream = io.BufferedReader(_CopyStream(iter(copy)), 1 << 20)
        if not stream.peek(1):
            return
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(column_names=list(COLUMN_NAMES),
                                            block_size=max(1 << 16, min(chunk_rows * 128, 64 << 20))),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            # PostgreSQL's CSV writes NULL unquoted and the empty string as "".
            convert_options=pa_csv.ConvertOptions(
                column_types={name: typ for name, _, typ in _SPEC},
                strings_can_be_null=True, quoted_strings_can_be_null=False, null_values=[""],
            ),
        )
        yield from reader


def _has_adbc() -> bool:
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def libpq_conninfo(engine: sa.Engine) -> str:
    """The engine's database as a libpq ``key=value`` connection string (the URL's host, port,
    user, password, database and query parameters, each quoted as libpq reads it)."""
    from psycopg.conninfo import make_conninfo

    url = engine.url
    params = {k: (v[-1] if isinstance(v, tuple) else v) for k, v in url.query.items()}
    for key, value in (("host", url.host), ("port", url.port), ("user", url.username),
                       ("password", url.password), ("dbname", url.database)):
        if value is not None:
            params.setdefault(key, str(value))
    return make_conninfo("", **params)


class AdbcConnectError(RuntimeError):
    """ADBC's driver could not open its connections (the ``copy`` reader may still work)."""


@contextmanager
def snapshot_cursors(conninfo: str, count: int = 2) -> Iterator[list[Any]]:
    """``count`` ADBC cursors on their own connections, each in a read-only transaction on
    the first one's snapshot: what they read together is one consistent state of the ledger
    (a posting that commits in between is seen by none of them)."""
    import adbc_driver_postgresql.dbapi as adbc

    conns: list[Any] = []
    cursors: list[Any] = []
    try:
        for _ in range(count):
            try:
                conns.append(adbc.connect(conninfo, autocommit=True))
            except adbc.Error as exc:
                raise AdbcConnectError(f"ADBC could not connect to the ledger database: {exc}") from exc
            cursors.append(conns[-1].cursor())
        first = cursors[0]
        first.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        first.execute("SELECT pg_export_snapshot()")
        snapshot = first.fetchone()[0]
        for cur in cursors[1:]:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # the server's own id, not input
        yield cursors
    finally:
        # Each one closed on its own: a broken connection must not leave the others open or
        # hide the error that broke it.
        for cur in cursors:
            for step in (lambda: cur.execute("ROLLBACK"), cur.close):
                try:
                    step()
                except Exception:  # noqa: BLE001 - nothing left to roll back or close
                    pass
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


def _sql(engine: sa.Engine, stmt: sa.Select) -> str:
    # Only integers are bound, so rendering them inline is safe.
    return str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _read_adbc(engine: sa.Engine, lo_us: int, hi_us: int) -> pa.Table:
    """The extract as one sorted table, from two reads in one snapshot: the entries of the
    interval, and their lines (with the account role). Each entry's ten columns cross the
    wire once instead of once per line, and the server works on both reads at once."""
    from concurrent.futures import ThreadPoolExecutor

    entry_cols = [col for _, col, _ in _SPEC[:_ENTRY_COLUMNS]]
    entries_sql = _sql(engine, sa.select(*entry_cols).where(_E.ts_us >= lo_us, _E.ts_us < hi_us))
    lines_sql = _sql(engine, _statement("postgresql", lo_us, hi_us,
                                        [_L.journal_id, *(col for _, col, _ in _SPEC[_ENTRY_COLUMNS:])],
                                        ordered=False))

    def read(cur: Any, sql: str) -> pa.Table:
        cur.execute(sql)
        return cur.fetch_arrow_table()

    with snapshot_cursors(libpq_conninfo(engine)) as (entry_cur, line_cur), \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract-lines") as pool:
        pending = pool.submit(read, line_cur, lines_sql)
        entries = read(entry_cur, entries_sql)
        # File order of the entries (ts_us, journal_id in code point order), while lines arrive.
        entries = pa.table([entries.column(i).combine_chunks().cast(typ)
                            for i, (_, _, typ) in enumerate(_SPEC[:_ENTRY_COLUMNS])],
                           names=list(COLUMN_NAMES[:_ENTRY_COLUMNS]))
        order = pc.sort_indices(entries, sort_keys=_SORT_KEYS[:2]).to_numpy()
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        lines = pending.result()
    if not lines.num_rows:
        return SCHEMA.empty_table()
    owner = pc.index_in(lines.column(0), value_set=entries.column("journal_id").chunk(0))
    if owner.null_count:  # cannot happen in one snapshot with the foreign key in place
        raise RuntimeError("the ledger extract read lines whose entry it did not read; run it again")
    owner = owner.to_numpy(zero_copy_only=False).astype(np.int64)
    line_no = lines.column(1).to_numpy().astype(np.int64)
    if len(line_no) and (line_no.min() < 0 or line_no.max() >= 1 << 31):
        raise ValueError("journal_lines.line_no outside 0..2^31-1")
    # (entry's rank, line_no) in one int64: rank < 2^32, line_no < 2^31.
    by_file = np.argsort(rank[owner] << 31 | line_no, kind="stable")
    entry_rows, line_rows = pa.array(owner[by_file]), pa.array(by_file)
    del owner, line_no, rank, by_file

    def take(k: int) -> pa.Array:
        if k < _ENTRY_COLUMNS:
            return entries.column(k).chunk(0).take(entry_rows)
        return lines.column(k - _ENTRY_COLUMNS + 1).combine_chunks().take(line_rows).cast(_SPEC[k][2])

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="extract-take") as pool:
        columns = list(pool.map(take, range(len(_SPEC))))
    return pa.table(columns, schema=SCHEMA)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Building millions of small dicts that all stay alive makes the cyclic GC rescan them
    # over and over (half the run time); none of them can form a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def entries_from_lines(lines: pd.DataFrame) -> list[dict[str, Any]]:
    """The spec leaves (eleven members, lines in line_no order) of the entries in ``lines``.

    Entries come out ordered by ts then journal_id (code point order), as in the proof's
    ``ledger_entries.jsonl``; integers are Python ints so the canonical JSON accepts them.
    """
    if lines.empty:
        return []
    with _gc_paused():
        return _entries_from_lines(lines)


def _entries_from_lines(lines: pd.DataFrame) -> list[dict[str, Any]]:
    # Group rows by entry without a Python loop per row: factorize, then sort by (entry, line).
    codes, _ = pd.factorize(lines["journal_id"], sort=False)
    order = np.lexsort((lines["line_no"].to_numpy(dtype=np.int64), codes))
    grouped = codes[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ends = np.r_[starts[1:], len(order)].tolist()
    first = order[starts]

    def column(name: str, rows: np.ndarray) -> list[Any]:
        values = lines[name].to_numpy(dtype=object, na_value=None)
        return values[rows].tolist()

    line_objs = [
        {"account_id": a, "direction": d, "amount_minor": m, "currency": c}
        for a, d, m, c in zip(
            column("account_id", order), column("direction", order),
            lines["amount_minor"].to_numpy(dtype=np.int64)[order].tolist(),
            column("currency", order),
        )
    ]
    ts = lines["ts_us"].to_numpy(dtype=np.int64)[first].tolist()
    fields = {name: column(name, first) for name in (
        "journal_id", "kind", "memo", "batch_id", "provider", "provider_reference",
        "reverses", "posted_by", "reviewed_by")}
    jids = fields["journal_id"]
    # str comparison is code point order, as the proof requires.
    ranked = sorted(range(len(jids)), key=lambda k: (ts[k], jids[k]))
    starts_list = starts.tolist()
    return [
        {
            "journal_id": jids[k],
            "ts": format_ts_us(ts[k]),
            "kind": fields["kind"][k],
            "memo": fields["memo"][k],
            "batch_id": fields["batch_id"][k],
            "provider": fields["provider"][k],
            "provider_reference": fields["provider_reference"][k],
            "reverses": fields["reverses"][k],
            "posted_by": fields["posted_by"][k],
            "reviewed_by": fields["reviewed_by"][k],
            "lines": line_objs[starts_list[k]:ends[k]],
        }
        for k in ranked
    ]
