"""Fast paths of RFC 8785 canonical JSON: many values at once, each text exactly what
``domain.canonical.canonical_str`` writes for it (the reference; finance_pipeline_tests/columnar
compares the two on random values).

- ``canonical_strs_of_json`` (and ``_text``): values decoded from JSON, written by json's C
  encoder or orjson where a scan proves the text is the canonical one.
- ``canonical_texts`` / ``canonical_text_lines``: every element of an Arrow array, written with
  vectorised string operations.
- ``canonical_object_lines``: a file of JSON object lines parsed column-wise, accepted only when
  every line is written back byte for byte.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from itertools import accumulate
from typing import Any, Callable, Mapping, Sequence

from finance_pipeline.domain.canonical import (
    MAX_SAFE_INT,
    CanonicalJSONError,
    canonical_str,
    encode_string,
    utf16_key,
)

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode
# Where json.dumps and RFC 8785 may differ: a float ("1.5", "1e-07"), an integer beyond 2^53
# (16 digits or more), and member names outside ASCII (code point vs UTF-16 order). In compact
# output a number starts the text or follows ':', '[' or ','; a match inside a string only sends
# the value down the exact path. (Starting on a literal keeps the scan fast: re looks for it first.)
_NUMBER = r"-?[0-9]+(?:[.eE]|(?<=[0-9]{16}))"
_MAYBE_DIFFERENT = [re.compile(_NUMBER).match] + [re.compile(re.escape(c) + _NUMBER).search for c in ":[,"]


def canonical_str_of_json(value: Any) -> str:
    """``canonical_str(value)`` for a value decoded from JSON text, written in C where that gives
    the same text: an all-ASCII result with no float and no integer beyond 2^53 is what the exact
    writer would produce; anything else takes the exact path. Member names must be strings (as
    json.loads gives them): json.dumps would quietly write an int name as text."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError):
        return canonical_str(value)  # raises the precise error, with its path
    if text.isascii() and not any(search(text) for search in _MAYBE_DIFFERENT):
        return text
    return canonical_str(value)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def _c_encoder() -> Callable[[Any], str]:
    # json's C encoder built once: `_dumps` builds it again on every call, a third of the cost
    # for a small object. The same arguments as `_dumps`; plain `_dumps` where there is no C.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _dumps
    encoder = make({}, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, False)
    return lambda value: "".join(encoder(value, 0))


_encode_c = _c_encoder()
# The scans of `_MAYBE_DIFFERENT` over many texts joined by newlines (a newline never occurs in
# compact JSON, so after one a text starts).
_FIND_MAYBE_DIFFERENT = [re.compile(re.escape(c) + _NUMBER).finditer for c in ":[,\n"]


def canonical_strs_of_json(values: Sequence[Any],
                           prepare: Callable[[Any], Any] | None = None) -> list[str]:
    """``[canonical_str_of_json(v) for v in values]``, with one scan over the whole batch.

    ``prepare`` turns a value that cannot be written as it is (say, one holding a float) into
    one that can; it is only called for those values, after the exact path refused them.
    """
    texts: list[str] = []
    suspects: set[int] = set()
    for i, value in enumerate(values):
        try:
            texts.append(_encode_c(value))
        except (TypeError, ValueError):
            texts.append("null")
            suspects.add(i)
    joined = "\n".join(texts)
    if not joined.isascii():
        suspects.update(i for i, t in enumerate(texts) if not t.isascii())
    if _MAYBE_DIFFERENT[0](joined):
        suspects.add(0)
    starts: list[int] | None = None
    for finditer in _FIND_MAYBE_DIFFERENT:
        for match in finditer(joined):
            if starts is None:
                starts = list(accumulate((len(t) + 1 for t in texts), initial=0))
            suspects.add(bisect_right(starts, match.end() - 1) - 1)  # the text holding the number
    for i in sorted(suspects):
        value = values[i]
        if prepare is None:
            texts[i] = canonical_str(value)  # the exact text, or the precise error with its path
            continue
        try:
            texts[i] = canonical_str(value)
        except CanonicalJSONError:
            texts[i] = canonical_str(prepare(value))
    return texts


def _plain_json_text(text: str) -> bool:
    """Whether every value ``json.loads(text)`` gives is written the same by orjson and by
    RFC 8785: the text is ASCII without a backslash (so every string is plain ASCII), and no
    number outside a string has a fraction, an exponent or 16 digits (so every number is an
    integer within 2^53; NaN and Infinity are refused by name)."""
    import numpy as np

    if not text.isascii() or "\\" in text or "NaN" in text or "Infinity" in text:
        return False
    b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    outside = (np.cumsum(b == 34) & 1) == 0  # no backslash: every '"' opens or closes a string
    digit = ((b - 48) < 10) & outside  # uint8 arithmetic wraps: '0'..'9' only
    if (digit[:-1] & ((b[1:] == 46) | ((b[1:] | 32) == 101))).any():  # a digit then '.', 'e' or 'E'
        return False
    edges = np.diff(digit.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    return not len(edges) or int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0)) < 16


_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.-]*")


def canonical_strs_of_json_text(values: Sequence[Any], text: str,
                                prepare: Callable[[Any], Any] | None = None, *,
                                add: Mapping[str, str] | None = None) -> list[str]:
    """``canonical_strs_of_json(values, prepare)`` for values that ``json.loads`` decoded out of
    ``text`` (say, the records of one HTTP page). When one scan of the text shows that no value
    can be written differently (``_plain_json_text``), orjson writes them: the same compact
    form, members in code point order (for ASCII names, RFC 8785's order), several times
    faster than json's encoder. Anything else takes ``canonical_strs_of_json``.

    ``add``: members to add to every value, which must be an object without them (names and
    values plain words: ASCII letters, digits, '_', '.', '-', so the text's verdict holds).
    """
    if add:
        for name, member in add.items():
            if not (isinstance(name, str) and isinstance(member, str)
                    and _PLAIN_WORD.fullmatch(name) and _PLAIN_WORD.fullmatch(member)):
                raise ValueError(f"add: {name!r}: {member!r} is not a plain word member")
        out = []
        for i, value in enumerate(values):
            if not isinstance(value, dict):
                raise ValueError(f"value {i} is not a JSON object; cannot add {', '.join(add)} to it")
            taken = [name for name in add if name in value]
            if taken:
                raise ValueError(f"value {i} already has a {taken[0]!r} member")
            out.append({**value, **add})
        values = out
    try:
        import orjson
    except ImportError:  # pragma: no cover - a declared dependency; the json path is the same text
        return canonical_strs_of_json(values, prepare)
    if not _plain_json_text(text):
        return canonical_strs_of_json(values, prepare)
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    try:
        return [dumps(value, option=option).decode("ascii") for value in values]
    except TypeError:  # orjson.JSONEncodeError: a value json.loads cannot give (or too deep)
        return canonical_strs_of_json(values, prepare)


# --- Arrow arrays ---------------------------------------------------------------------------
#
# The proof files hold millions of small objects of a few fixed shapes. Encoding them one by
# one with `canonical_str` costs tens of microseconds each; the columnar encoder below writes the canonical
# text of every element of an Arrow array with vectorised string operations instead. It emits
# exactly what `canonical_str` emits for the element's Python value (``array.to_pylist()[i]``):
# members sorted by their UTF-16 code units, strings escaped by the same JSON encoder when they
# hold a character RFC 8785 escapes (``"``, ``\``, U+0000..U+001F) and copied between quotes
# otherwise (the encoder leaves every other character as it is), integers in decimal. The
# property tests in finance_pipeline_tests/columnar compare the two on random values.


def canonical_text_lines(array: Any) -> Any | None:
    """``canonical_texts(array)`` with a newline after each text, written in the same pass; None
    when an element cannot be written (an integer beyond +-2^53)."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    parts, bad = _parts(array, "$")
    if bad is not None and bad.any():
        return None
    return _join_parts(parts + ["\n"], len(array))


def canonical_texts(array: Any, *, errors: str = "raise") -> Any:
    """The canonical JSON text of each element of an Arrow array, as a ``large_string`` array.

    Supported types: null, boolean, integers, (large_)string, struct (field names are member
    names) and (large_)list of those. An element holding an integer outside +-(2^53 - 1)
    raises CanonicalJSONError, or comes out null with ``errors="null"`` so the caller can take
    the general path for that element. Other types (floats, binary, maps, ...) raise
    CanonicalJSONError.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if errors not in ("raise", "null"):
        raise ValueError(f"errors must be 'raise' or 'null', got {errors!r}")
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    tokens, bad = _texts(array, "$")
    if bad is not None and bad.any():
        if errors == "raise":
            i = int(np.flatnonzero(bad)[0])
            raise CanonicalJSONError(f"$[{i}]: an integer is outside +-2^53")
        tokens = pc.if_else(pa.array(bad, pa.bool_()), pa.scalar(None, pa.large_string()), tokens)
    return tokens


def _texts(arr: Any, path: str) -> tuple[Any, Any]:
    """(tokens, rows with an out-of-range integer or None) for one Arrow array."""
    parts, bad = _parts(arr, path)
    return _join_parts(parts, len(arr)), bad


def _join_parts(parts: list[Any], n: int) -> Any:
    """Concatenate, element by element, text literals (str) and large_string arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ls = pa.large_string()
    merged: list[Any] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    if len(merged) == 1 and not isinstance(merged[0], str):
        return merged[0]
    if all(isinstance(p, str) for p in merged):
        return pc.fill_null(pa.nulls(n, ls), pa.scalar("".join(merged), ls))
    return pc.binary_join_element_wise(*[pa.scalar(p, ls) if isinstance(p, str) else p for p in merged],
                                       pa.scalar("", ls))


def _escape_rows(s: Any) -> Any:
    """Rows of a large_string array holding a character RFC 8785 escapes (``"``, ``\\``,
    U+0000..U+001F), found by scanning the UTF-8 bytes (those are ASCII, never inside a
    multi-byte sequence); None when there are none."""
    import numpy as np

    buffers = s.buffers()
    if buffers[2] is None or not len(s):
        return None
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[s.offset:s.offset + len(s) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    hits = []
    step = 1 << 24
    for lo in range(int(offsets[0]), int(offsets[-1]), step):
        block = data[lo:min(lo + step, int(offsets[-1]))]
        found = np.flatnonzero((block < 0x20) | (block == 0x22) | (block == 0x5C))
        if len(found):
            hits.append(found + lo)
    if not hits:
        return None
    rows = np.searchsorted(offsets, np.concatenate(hits), side="right") - 1
    mask = np.zeros(len(s), dtype=bool)
    mask[rows] = True
    if s.null_count:
        mask &= s.is_valid().to_numpy(zero_copy_only=False)
    return mask if mask.any() else None


def _parts(arr: Any, path: str) -> tuple[list[Any], Any]:
    """The canonical text of each element of ``arr`` as parts to concatenate (text literals
    and large_string arrays), and the rows holding an out-of-range integer (or None).

    Parts rather than one array so a struct can write its members' quotes and names in the
    same pass that copies their values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ls = pa.large_string()
    t = arr.type
    n = len(arr)

    def lit(text: str) -> Any:
        return pa.scalar(text, ls)

    if pa.types.is_dictionary(t):
        return _parts(arr.dictionary_decode(), path)
    if pa.types.is_null(t):
        return ["null"], None
    if pa.types.is_boolean(t):
        tok = pc.if_else(arr, lit("true"), lit("false"))
        return [pc.fill_null(tok, lit("null")) if arr.null_count else tok], None
    if pa.types.is_integer(t):
        bad = None
        if t.bit_width == 64:
            out = pc.or_(pc.less(arr, -MAX_SAFE_INT), pc.greater(arr, MAX_SAFE_INT))
            bad = out.fill_null(False).to_numpy(zero_copy_only=False)
            if not bad.any():
                bad = None
        tok = pc.cast(arr, ls)
        return [pc.fill_null(tok, lit("null")) if arr.null_count else tok], bad
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = arr.cast(ls) if not pa.types.is_large_string(t) else arr
        needs = _escape_rows(s)
        if needs is None and not s.null_count:
            return ['"', s, '"'], None  # the quotes go into the caller's literals
        quoted = pc.binary_join_element_wise(lit('"'), s, lit('"'), lit(""))
        if needs is not None:
            escaped = [encode_string(v) for v in s.filter(pa.array(needs)).to_pylist()]
            quoted = pc.replace_with_mask(quoted, pa.array(needs), pa.array(escaped, ls))
        return [pc.fill_null(quoted, lit("null")) if s.null_count else quoted], None
    if pa.types.is_struct(t):
        names = [t.field(i).name for i in range(t.num_fields)]
        if len(set(names)) != len(names):
            raise CanonicalJSONError(f"{path}: struct has repeated member names {names}")
        order = sorted(range(len(names)), key=lambda i: utf16_key(names[i]))
        parts: list[Any] = ["{"]
        bad = None
        children = arr.flatten() if names else []
        for k, i in enumerate(order):
            child, child_bad = _parts(children[i], f"{path}.{names[i]}")
            parts += [("," if k else "") + encode_string(names[i]) + ":", *child]
            if child_bad is not None:
                bad = child_bad if bad is None else (bad | child_bad)
        parts.append("}")
        if arr.null_count:
            return [pc.if_else(arr.is_valid(), _join_parts(parts, n), lit("null"))], bad
        return parts, bad
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = pc.list_flatten(arr)
        if len(flat) != offsets[-1]:  # pragma: no cover - list_flatten skips null lists
            raise CanonicalJSONError(f"{path}: inconsistent list offsets")
        child, child_bad = _texts(flat, f"{path}[]")
        joined = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), child), lit(","))
        bad = None
        if child_bad is not None:
            owners = np.searchsorted(offsets, np.flatnonzero(child_bad), side="right") - 1
            bad = np.zeros(n, dtype=bool)
            bad[owners] = True
        if arr.null_count:
            tok = pc.if_else(arr.is_valid(), _join_parts(["[", joined, "]"], n), lit("null"))
            return [tok], bad
        return ["[", joined, "]"], bad
    raise CanonicalJSONError(f"{path}: Arrow type {t} has no canonical JSON form here")


def is_utf8(data: Any) -> bool:
    """Whether a buffer is valid UTF-8 (as ``bytes.decode`` checks it), without decoding it."""
    import numpy as np
    import pyarrow as pa

    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, buf.size], dtype=np.int64)), buf])
    try:
        whole.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _texts_not_times(table: Any, lines: Any) -> Any:
    """Arrow infers ISO 8601 strings as timestamps; read those members again as the strings
    they are (only the rows that have one). None when a nested member was taken for one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    def temporal(t: Any) -> bool:
        return pa.types.is_temporal(t)

    def nested_temporal(t: Any) -> bool:
        if pa.types.is_struct(t):
            return any(temporal(t.field(i).type) or nested_temporal(t.field(i).type) for i in range(t.num_fields))
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return temporal(t.value_type) or nested_temporal(t.value_type)
        return False

    times = [f.name for f in table.schema if temporal(f.type)]
    if any(nested_temporal(f.type) for f in table.schema):
        return None
    if not times:
        return table
    has = np.zeros(table.num_rows, dtype=bool)
    for name in times:
        has |= table.column(name).is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(has)
    again = pc.binary_join_element_wise(lines.take(pa.array(rows)), pa.scalar(b"", pa.large_binary()))
    sub = pa_json.read_json(
        pa.BufferReader(again.buffers()[2].slice(0, int(np.frombuffer(again.buffers()[1], np.int64)[len(rows)]))),
        parse_options=pa_json.ParseOptions(explicit_schema=pa.schema([(n, pa.string()) for n in times]),
                                           unexpected_field_behavior="ignore", newlines_in_values=False))
    if sub.num_rows != len(rows):
        return None
    mask = pa.array(has)
    for name in times:
        text = pc.replace_with_mask(pa.nulls(table.num_rows, pa.string()), mask, sub.column(name).combine_chunks())
        table = table.set_column(table.schema.get_field_index(name), name, text)
    return table


# Arrow's JSON parser recurses once per nesting level, on a thread's stack (about 500 bytes a
# level: 8 MiB overflow, a segfault, near 16,000 levels). Lines that could nest deeper than
# this (more opening brackets in one line) are never handed to it; they take the general path.
MAX_COLUMNAR_DEPTH = 4096


def arrow_json_safe(buf: Any) -> bool:
    """Whether Arrow's JSON reader may be given ``buf``: every line starts with '{' (a line that
    is a bare ``null`` crashes pyarrow 26.0.1's reader outright) and no line holds more than
    MAX_COLUMNAR_DEPTH of '[' and '{' together, so none can nest deep enough to overflow it.
    Lines that fail this are no canonical object lines anyway: the general path explains why."""
    import numpy as np

    b = np.frombuffer(buf, dtype=np.uint8)
    if b.size == 0:
        return True
    ends = np.flatnonzero(b == 10)
    starts = np.concatenate(([0], ends + 1))
    starts = starts[starts < b.size]  # every line's first byte, an unterminated last line's too
    if not bool((b[starts] == 123).all()):
        return False
    bounds = np.concatenate(([-1], ends, [b.size - 1]))
    if int(np.diff(bounds).max(initial=0)) <= MAX_COLUMNAR_DEPTH:
        return True  # no line is even that long (the usual case)
    opens = np.flatnonzero((b == 91) | (b == 123))
    if opens.size <= MAX_COLUMNAR_DEPTH:
        return True
    per_line = np.bincount(np.searchsorted(ends, opens), minlength=1)
    return int(per_line.max()) <= MAX_COLUMNAR_DEPTH


def canonical_object_lines(jsonl: Any, count: int, *, add: Mapping[str, Any] | None = None,
                           ) -> tuple[Any, Any] | None:
    """Parse ``count`` JSON objects, one per line (each line ends with ``\\n``), column-wise.

    Returns ``(table, texts)``: the objects as an Arrow table (one column per member name met)
    and, per line, the canonical text of the line's object with the members of ``add`` (Arrow
    arrays of ``count`` values) added, followed by a newline. Returns None unless every line
    already *is* the canonical text of its object: each line is written back from the parsed
    columns and must come out byte for byte, which also proves the parse exact. Objects of
    different shapes are fine: a member null in a row is written as ``null`` or left out as
    the row's own text has it (rows are grouped by that, and every row is compared). A member
    named in ``add`` that an object already has, anything Arrow cannot parse or encode: None
    as well, and the caller takes the general path.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    add = dict(add or {})
    buf = jsonl if isinstance(jsonl, pa.Buffer) else pa.py_buffer(jsonl)
    ls = pa.large_string()
    if count == 0:
        return (None, pa.array([], ls)) if buf.size == 0 else None
    if not arrow_json_safe(buf):
        return None
    try:
        table = pa_json.read_json(
            pa.BufferReader(buf),
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, min(buf.size // 8 + 1, 64 << 20))),
            parse_options=pa_json.ParseOptions(newlines_in_values=False),
        )
    except Exception:  # noqa: BLE001 - anything the columnar parser refuses goes the general way
        return None
    if table.num_rows != count or set(add) & set(table.column_names):
        return None
    nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
    if len(nl) != count or nl[-1] != buf.size - 1:
        return None
    # The input lines (each with its newline), as a zero-copy binary array to compare with.
    line_offsets = np.zeros(count + 1, dtype=np.int64)
    line_offsets[1:] = nl + 1
    del nl
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(line_offsets), buf])
    if not is_utf8(buf):
        return None  # Arrow's JSON reader takes invalid UTF-8 in strings as it is
    table = _texts_not_times(table, lines)
    if table is None:
        return None
    names = list(table.column_names)
    columns = {name: (c.combine_chunks() if c.num_chunks != 1 else c.chunk(0))
               for name, c in zip(names, table.columns)}
    try:
        parts = {name: _parts(c, f"$.{name}") for name, c in columns.items()}
        parts.update({k: _parts(v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v, f"$.{k}")
                      for k, v in add.items()})
    except CanonicalJSONError:
        return None
    if any(bad is not None for _, bad in parts.values()):
        return None
    all_names = sorted(names + list(add), key=utf16_key)
    nullable = [name for name in names if columns[name].null_count]

    def marker(name: str) -> str:
        return encode_string(name) + ":"  # how the member's name appears in a canonical line

    def line_text(row: int) -> str:
        return bytes(buf[int(line_offsets[row]):int(line_offsets[row + 1])]).decode("utf-8")

    # Which null members a line leaves out: as the first line with the same null members has it,
    # then checked (and the lines that disagree read one by one from their own text).
    absent_of_row = np.zeros(count, dtype=np.int64)  # index into `shapes`
    shapes: list[frozenset[str]] = []
    if nullable:
        signature = np.zeros(count, dtype=object if len(nullable) > 62 else np.int64)
        for name in nullable:
            signature = signature * 2 + columns[name].is_null().to_numpy(zero_copy_only=False).astype(np.int64)
        uniq, first_rows, inverse = np.unique(signature, return_index=True, return_inverse=True)
        shape_of_group = []
        for g, row in enumerate(first_rows.tolist()):
            text = line_text(row)
            absent = frozenset(n for n in nullable if columns[n][row].as_py() is None and marker(n) not in text)
            if absent not in shapes:
                shapes.append(absent)
            shape_of_group.append(shapes.index(absent))
        absent_of_row = np.asarray(shape_of_group, dtype=np.int64)[inverse]
    else:
        shapes.append(frozenset())

    def encode(rows: np.ndarray | None, absent: frozenset[str]) -> tuple[Any, Any]:
        """(plain texts, texts with the added members), each followed by a newline. The
        members are written once, in runs between the added ones, and the runs spliced."""
        n = count if rows is None else len(rows)
        take = None if rows is None else pa.array(rows)
        runs: list[list[Any]] = [[]]  # runs of the object's own members, split at added members
        added: list[str] = []
        for name in all_names:
            if name in add:
                runs.append([])
                added.append(name)
                continue
            if name in absent:
                continue
            run = runs[-1]
            run.append(("," if run else "") + encode_string(name) + ":")
            run += [p if isinstance(p, str) or take is None else p.take(take) for p in parts[name][0]]
        texts = [_join_parts(run, n) if run else None for run in runs]
        plain: list[Any] = ["{"]
        for t in texts:
            if t is not None:
                plain += ([","] if len(plain) > 1 else []) + [t]
        plain_nl = _join_parts(plain + ["}\n"], n)
        if not add:
            return plain_nl, plain_nl
        out: list[Any] = ["{"]
        for k, t in enumerate(texts):
            if k:
                value = [p if isinstance(p, str) or take is None else p.take(take) for p in parts[added[k - 1]][0]]
                out += [("," if len(out) > 1 else "") + encode_string(added[k - 1]) + ":", *value]
            if t is not None:
                out += ([","] if len(out) > 1 else []) + [t]
        return plain_nl, _join_parts(out + ["}\n"], n)

    def same(rows: np.ndarray | None, texts_nl: Any) -> np.ndarray:
        if rows is None:
            data = texts_nl.buffers()[2]
            offs = np.frombuffer(texts_nl.buffers()[1], dtype=np.int64)[texts_nl.offset:texts_nl.offset + count + 1]
            if offs[-1] - offs[0] == buf.size and data.slice(int(offs[0]), buf.size).equals(buf):
                return np.ones(count, dtype=bool)
            rows_arr = lines
        else:
            rows_arr = lines.take(pa.array(rows))
        return pc.equal(texts_nl.cast(pa.large_binary()), rows_arr).to_numpy(zero_copy_only=False)

    out_rows: list[np.ndarray | None] = []
    out_texts: list[Any] = []
    pending: list[tuple[np.ndarray | None, frozenset[str], bool]] = []
    for k, absent in enumerate(shapes):
        rows = None if len(shapes) == 1 else np.flatnonzero(absent_of_row == k)
        pending.append((rows, absent, False))
    while pending:
        rows, absent, regrouped = pending.pop()
        plain, with_added = encode(rows, absent)
        ok = same(rows, plain)
        if not ok.all():
            if regrouped or not ok.any() or not nullable:
                return None  # no reading of the null members makes these lines canonical
            everyone = np.arange(count) if rows is None else rows
            misfits = everyone[~ok]
            text = lines.take(pa.array(misfits)).cast(ls)
            # Regroup the lines that disagree by which null members their own text leaves out.
            sub = np.zeros(len(misfits), dtype=object if len(nullable) > 62 else np.int64)
            for name in nullable:
                gone = columns[name].is_null().to_numpy(zero_copy_only=False)[misfits] & ~pc.match_substring(
                    text, marker(name)).to_numpy(zero_copy_only=False)
                sub = sub * 2 + gone.astype(np.int64)
            _, first_sub, inv = np.unique(sub, return_index=True, return_inverse=True)
            for g, row in enumerate(first_sub.tolist()):
                bits = int(sub[row])
                gone_set = frozenset(n for k, n in enumerate(reversed(nullable)) if bits >> k & 1)
                pending.append((misfits[inv == g], gone_set, True))
            rows, with_added = everyone[ok], with_added.filter(pa.array(ok))
        out_rows.append(rows)
        out_texts.append(with_added)
    if len(out_texts) == 1 and out_rows[0] is None:
        return table, out_texts[0]
    back = pa.array(np.argsort(np.concatenate([np.arange(count) if r is None else r for r in out_rows]),
                               kind="stable"))
    return table, pa.concat_arrays(out_texts).take(back)
