"""The verifier's columnar path: ``proof.verify``'s ledger and provider checks made on whole
files at once, for files that pass them.

Checking a million leaves one by one (strict JSON parse, journal validation, canonical
re-encoding) takes minutes. When a file is valid, the checks can be made column-wise instead:
parse the file with Arrow against the leaf schema, write every leaf back with the columnar
canonical encoder and compare the bytes (equal bytes prove each line is the canonical form of
exactly the values parsed), then apply parse_entry's rules, the interval, uniqueness and order
as vectorised conditions. Only if all of that holds is the result taken: ``try_ledger`` and
``try_providers`` return None on anything else, and proof/verify.py's per-leaf checks run and
say what is wrong. finance_pipeline_tests/columnar/test_verify.py gives both paths the same
packages, valid and tampered with, and compares every check's verdict and detail.
"""

from __future__ import annotations

from typing import Any

from finance_pipeline.columnar.canonical import arrow_json_safe, canonical_object_lines, canonical_text_lines, is_utf8
from finance_pipeline.domain.canonical import CanonicalJSONError
from finance_pipeline.domain.journal import DIRECTIONS, KINDS, MAX_ID_LEN, PROVIDERS
from finance_pipeline.domain.money import known_currencies
from finance_pipeline.proof.package import totals_rows

# Tests switch the columnar path off to compare both paths on the same packages.
ENABLED = True
# Files are checked in pieces of about this size (whole lines), so the columns of one piece
# at a time are in memory.
PIECE_BYTES = 48 << 20


def try_ledger(data: bytes, lo: int, hi: int) -> tuple[int, int, list[dict]] | None:
    """(entries, journal lines, totals) when every line is the canonical leaf of a valid entry
    inside [lo, hi), ids are unique and the order holds; None otherwise."""
    if not ENABLED or not data or not data.endswith(b"\n"):
        return None
    try:
        return _check_ledger(data, lo, hi)
    except (ImportError, CanonicalJSONError):
        # No pyarrow (the verifier works without it), or a value the encoder refuses.
        return None


def try_providers(data: bytes) -> int | None:
    """The record count when every line is a canonical object with string provider and id,
    in strictly increasing (provider, id) order (checked column-wise, piece by piece); None
    otherwise."""
    if not ENABLED or not data or not data.endswith(b"\n"):
        return None
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:  # pragma: no cover
        return None
    buf = pa.py_buffer(data)
    total = 0
    previous: tuple[str, str] | None = None
    for a, b in _pieces(data):
        count = data.count(b"\n", a, b)
        parsed = canonical_object_lines(buf.slice(a, b - a), count)
        if parsed is None:
            return None
        table, _ = parsed
        keys = []
        for name in ("provider", "id"):
            if name not in table.column_names:
                return None
            c = table.column(name).combine_chunks()
            if not pa.types.is_string(c.type) or c.null_count:
                return None
            keys.append(c)
        p, i = keys
        first, last = (p[0].as_py(), i[0].as_py()), (p[count - 1].as_py(), i[count - 1].as_py())
        if previous is not None and not first > previous:
            return None
        if count > 1:
            p_prev, p_next, i_prev, i_next = p.slice(0, count - 1), p.slice(1), i.slice(0, count - 1), i.slice(1)
            up = pc.or_(pc.greater(p_next, p_prev), pc.and_(pc.equal(p_next, p_prev), pc.greater(i_next, i_prev)))
            if not pc.all(up).as_py():
                return None
        previous = last
        total += count
    return total


def _pieces(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of consecutive runs of whole lines of about PIECE_BYTES bytes."""
    size = PIECE_BYTES  # read at each call: tests cut files into small pieces
    out, at = [], 0
    while at < len(data):
        cut = data.find(b"\n", min(at + size, len(data)) - 1)
        cut = len(data) if cut < 0 else cut + 1
        out.append((at, cut))
        at = cut
    return out


def _check_ledger(data: bytes, lo: int, hi: int) -> tuple[int, int, list[dict]] | None:
    import numpy as np
    import pyarrow as pa

    from finance_pipeline.columnar.hashing import all_distinct

    buf = pa.py_buffer(data)
    if not is_utf8(buf):
        return None  # Arrow's JSON reader takes invalid UTF-8 in strings as it is
    results = []
    for a, b in _pieces(data):
        piece = _check_leaf_piece(buf.slice(a, b - a))
        if piece is None:
            return None
        results.append(piece)
    n = sum(r["n"] for r in results)
    previous = None
    for r in results:
        if r["ts_range"][0] < lo or r["ts_range"][1] >= hi:
            return None
        # Ordered by (ts, journal_id) across pieces too (within one, the piece checked it).
        if previous is not None and r["first"] < previous:
            return None
        previous = r["last"]
    # Unique ids: different hashes prove it (40 MB at five million entries, where Arrow's
    # count of distinct strings took 0.7 GB). Equal hashes are left to the per-leaf path,
    # which says exactly what repeats (a collision of two ids is that path's work too).
    if not all_distinct(np.concatenate([r["jid_hashes"] for r in results])):
        return None
    sums: dict[str, list[int]] = {}
    for r in results:
        for cur, (d, c) in r["totals"].items():
            pair = sums.setdefault(cur, [0, 0])
            pair[0] += d
            pair[1] += c
    return n, sum(r["lines"] for r in results), totals_rows(sums)


_LEAF_FIELDS = ("journal_id", "ts", "kind", "memo", "batch_id", "provider", "provider_reference",
                "reverses", "posted_by", "reviewed_by")


def _leaf_schema():
    import pyarrow as pa

    line = pa.struct([("account_id", pa.string()), ("direction", pa.string()),
                      ("amount_minor", pa.int64()), ("currency", pa.string())])
    return pa.schema([(name, pa.string()) for name in _LEAF_FIELDS] + [("lines", pa.list_(line))])


def _check_leaf_piece(buf) -> dict | None:
    """One piece of the ledger file: parse, write back and compare, and parse_entry's rules."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    from finance_pipeline.columnar.hashing import text_hashes

    if not arrow_json_safe(buf):
        return None
    n = int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8) == 10))
    try:
        table = pa_json.read_json(
            pa.BufferReader(buf),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, min(buf.size // 4 + 1, 16 << 20))),
            parse_options=pa_json.ParseOptions(explicit_schema=_leaf_schema(), unexpected_field_behavior="error",
                                               newlines_in_values=False),
        )
    except Exception:  # noqa: BLE001 - whatever Arrow refuses, the per-leaf path explains
        return None
    if table.num_rows != n:
        return None
    col = {name: (c.combine_chunks() if c.num_chunks != 1 else c.chunk(0))
           for name, c in zip(table.column_names, table.columns)}
    del table
    # 1. Canonical form: the leaves written back from the parsed values are the piece.
    again = canonical_text_lines(pa.StructArray.from_arrays(list(col.values()), names=list(col)))
    if again is None:
        return None
    offsets = np.frombuffer(again.buffers()[1], dtype=np.int64)[again.offset:again.offset + len(again) + 1]
    if offsets[-1] - offsets[0] != buf.size or not again.buffers()[2].slice(int(offsets[0]), buf.size).equals(buf):
        return None
    del again

    def valid(a) -> np.ndarray:
        return a.is_valid().to_numpy(zero_copy_only=False)

    def length(a) -> np.ndarray:
        return pc.utf8_length(a).fill_null(0).to_numpy(zero_copy_only=False)

    def member_of(a, values) -> np.ndarray:
        return pc.is_in(a, value_set=pa.array(sorted(values), a.type)).fill_null(False).to_numpy(zero_copy_only=False)

    def text_ok(name: str, *, nullable: bool, max_len: int | None = None, allow_empty: bool = False) -> np.ndarray:
        a = col[name]
        has, size = valid(a), length(a)
        ok = size >= (0 if allow_empty else 1)
        if max_len is not None:
            ok &= size <= max_len
        return np.where(has, ok, nullable)

    # 2. parse_entry's rules, every entry at once.
    jid, kind = col["journal_id"], col["kind"]
    is_reversal = pc.equal(kind, "reversal").fill_null(False).to_numpy(zero_copy_only=False)
    is_adjustment = pc.equal(kind, "adjustment").fill_null(False).to_numpy(zero_copy_only=False)
    ok = text_ok("journal_id", nullable=False, max_len=MAX_ID_LEN)
    ok &= member_of(kind, KINDS)
    ok &= text_ok("memo", nullable=False, allow_empty=True)
    ok &= text_ok("batch_id", nullable=True, max_len=MAX_ID_LEN)
    ok &= np.where(valid(col["provider"]), member_of(col["provider"], PROVIDERS), True)
    ok &= text_ok("provider_reference", nullable=True)
    ok &= ~valid(col["provider_reference"]) | valid(col["provider"])
    ok &= text_ok("reverses", nullable=True, max_len=MAX_ID_LEN)
    ok &= valid(col["reverses"]) == is_reversal
    ok &= pc.not_equal(col["reverses"], jid).fill_null(True).to_numpy(zero_copy_only=False)
    ok &= text_ok("posted_by", nullable=False)
    ok &= text_ok("reviewed_by", nullable=True)
    reviewed = valid(col["reviewed_by"]) & pc.not_equal(col["reviewed_by"], col["posted_by"]).fill_null(
        True).to_numpy(zero_copy_only=False)
    ok &= ~is_adjustment | reviewed
    lines = col["lines"]
    counts = pc.list_value_length(lines).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ok &= valid(lines) & (counts >= 2)
    if not ok.all():
        return None
    flat = pc.list_flatten(lines)
    if flat.null_count or len(flat) != counts.sum():
        return None
    account, direction = flat.field("account_id"), flat.field("direction")
    amount_arr, currency = flat.field("amount_minor"), flat.field("currency")
    if account.null_count or amount_arr.null_count or (len(flat) and length(account).min() < 1):
        return None
    if not member_of(direction, DIRECTIONS).all() or not member_of(currency, known_currencies()).all():
        return None
    amount = amount_arr.to_numpy(zero_copy_only=False).astype(np.int64)
    if len(amount) and (amount.min() <= 0 or int(amount.max()) * int(counts.max()) >= 2**53):
        return None
    debit = pc.equal(direction, "debit").to_numpy(zero_copy_only=False)
    codes_arr = pc.dictionary_encode(currency)
    codes = codes_arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = codes_arr.dictionary.to_pylist()
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    signed = np.where(debit, amount, -amount).astype(np.float64)  # exact: |partial sums| < 2^53
    if np.any(np.bincount(owner * len(names) + codes, weights=signed, minlength=n * len(names)) != 0):
        return None  # some entry is unbalanced in some currency
    # 3. ts: canonical, so it is format_ts_us of the instant it denotes.
    ts_us = _canonical_ts_us(col["ts"])
    if ts_us is None:
        return None
    # 4. Ordered by (ts, journal_id) within the piece (code point order = UTF-8 byte order);
    # _check_ledger joins the pieces by their first and last keys.
    step = np.diff(ts_us)
    tied = np.flatnonzero(step == 0)
    if np.any(step < 0) or (len(tied) and pc.any(pc.less(jid.take(pa.array(tied + 1)),
                                                         jid.take(pa.array(tied)))).as_py()):
        return None
    totals = {}
    for code, cur in enumerate(names):
        mine = codes == code
        totals[cur] = (int(amount[mine & debit].sum()), int(amount[mine & ~debit].sum()))
    return {"n": n, "lines": int(counts.sum()), "totals": totals, "ts_range": (int(ts_us.min()), int(ts_us.max())),
            "first": (int(ts_us[0]), jid[0].as_py()), "last": (int(ts_us[-1]), jid[n - 1].as_py()),
            "jid_hashes": text_hashes(jid)}


_TS_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)
_TS_SEPARATORS = ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"))


def _canonical_ts_us(ts) -> Any:
    """The instants of a string column when every value is exactly ``format_ts_us`` of its
    instant (``YYYY-MM-DDTHH:MM:SSZ`` or with ``.ffffff``, a real calendar date, year 1000 or
    later, the fraction not zero); None otherwise. Read straight off the bytes with numpy."""
    import numpy as np
    import pyarrow as pa

    if ts.null_count or not len(ts):
        return None if ts.null_count else np.zeros(0, dtype=np.int64)
    buffers = ts.buffers()
    wide = pa.types.is_large_string(ts.type)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[
        ts.offset:ts.offset + len(ts) + 1].astype(np.int64)
    size = np.diff(offsets)
    short = size == 20
    if not np.all(short | (size == 27)):
        return None
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    window = offsets[:-1, None] + np.arange(27)
    chars = data[np.minimum(window, len(data) - 1)]
    digits = chars.astype(np.int64) - 48

    def is_digit(cols) -> bool:
        block = chars[:, cols]
        return bool(np.all((block >= 48) & (block <= 57)))

    if not is_digit(list(_TS_DIGITS)):
        return None
    for at, sep in _TS_SEPARATORS:
        if not np.all(chars[:, at] == ord(sep)):
            return None
    long_ = ~short
    if not np.all(np.where(short, chars[:, 19] == ord("Z"), chars[:, 19] == ord("."))):
        return None
    if long_.any():
        tail = chars[long_]
        block = tail[:, 20:26]
        if not (np.all((block >= 48) & (block <= 57)) and np.all(tail[:, 26] == ord("Z"))):
            return None
    y = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    m = digits[:, 5] * 10 + digits[:, 6]
    d = digits[:, 8] * 10 + digits[:, 9]
    hh = digits[:, 11] * 10 + digits[:, 12]
    mm = digits[:, 14] * 10 + digits[:, 15]
    ss = digits[:, 17] * 10 + digits[:, 18]
    frac = np.zeros(len(ts), dtype=np.int64)
    if long_.any():
        f = digits[long_][:, 20:26]
        frac[long_] = f @ np.array([100000, 10000, 1000, 100, 10, 1], dtype=np.int64)
        if np.any(frac[long_] == 0):
            return None  # format_ts_us writes no fraction then
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    if not (np.all(y >= 1000) and np.all((m >= 1) & (m <= 12)) and np.all(hh <= 23) and np.all(mm <= 59)
            and np.all(ss <= 59)):
        return None
    if not np.all((d >= 1) & (d <= month_days[m] + ((m == 2) & leap))):
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    yy = y - (m <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return ((days * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000 + frac).astype(np.int64)
