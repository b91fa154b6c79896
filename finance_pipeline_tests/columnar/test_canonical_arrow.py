"""The columnar canonical encoder writes exactly what the per-value encoder writes."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar.canonical import (
    arrow_json_safe,
    canonical_object_lines,
    canonical_text_lines,
    canonical_texts,
    is_utf8,
)
from finance_pipeline.domain.canonical import MAX_SAFE_INT, CanonicalJSONError, canonical_str

# Text with everything RFC 8785 treats specially: quotes, backslashes, control characters,
# DEL, U+2028, non-BMP characters (surrogate pairs in UTF-16), combining marks.
SPECIAL = '"\\\x00\x01\x07\x08\t\n\x0b\x0c\r\x1f\x7f\u2028\u2029é€\U0001F600\U00010000\uffff\ue000'
texts = st.text(alphabet=st.sampled_from(SPECIAL) | st.characters(codec="utf-8"), max_size=12)
names = st.text(alphabet=st.sampled_from("ab_\U0001F600\uffff\ue000é\"\\\n") | st.characters(codec="utf-8"),
                min_size=0, max_size=5)
safe_ints = st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)


def arrow_types(depth: int = 3) -> st.SearchStrategy[pa.DataType]:
    scalars = st.sampled_from([pa.string(), pa.large_string(), pa.int64(), pa.int32(), pa.bool_(), pa.null()])
    if depth == 0:
        return scalars
    inner = arrow_types(depth - 1)
    return st.one_of(
        scalars,
        inner.map(pa.list_), inner.map(pa.large_list),
        st.dictionaries(names, inner, max_size=4).map(lambda d: pa.struct(list(d.items()))),
    )


def values_of(t: pa.DataType, *, big_ints: bool = False) -> st.SearchStrategy:
    if pa.types.is_null(t):
        return st.none()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        base = texts
    elif pa.types.is_int64(t):
        base = (st.integers(-(2**63), 2**63 - 1) | safe_ints) if big_ints else safe_ints
    elif pa.types.is_integer(t):
        base = st.integers(-(2**31), 2**31 - 1)
    elif pa.types.is_boolean(t):
        base = st.booleans()
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        base = st.lists(values_of(t.value_type, big_ints=big_ints), max_size=4)
    else:
        base = st.fixed_dictionaries({t.field(i).name: values_of(t.field(i).type, big_ints=big_ints)
                                      for i in range(t.num_fields)})
    return st.none() | base


@st.composite
def typed_columns(draw, big_ints: bool = False):
    t = draw(arrow_types())
    values = draw(st.lists(values_of(t, big_ints=big_ints), max_size=12))
    return t, values


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_columns())
def test_columnar_texts_equal_the_per_value_encoder(case):
    t, values = case
    arr = pa.array(values, type=t)
    assert canonical_texts(arr).to_pylist() == [canonical_str(v) for v in values]
    # and the reference RFC 8785 implementation agrees on what that is
    assert [canonical_str(v).encode() for v in values] == [rfc8785.dumps(v) for v in values]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_columns(), st.integers(0, 12), st.integers(0, 12))
def test_slices_and_chunks_encode_their_own_elements(case, a, b):
    t, values = case
    arr = pa.array(values, type=t)
    lo, hi = min(a, b, len(values)), min(max(a, b), len(values))
    assert canonical_texts(arr.slice(lo, hi - lo)).to_pylist() == [canonical_str(v) for v in values[lo:hi]]
    chunked = pa.chunked_array([arr.slice(0, lo), arr.slice(lo)], type=t)
    assert canonical_texts(chunked).to_pylist() == [canonical_str(v) for v in values]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_columns(big_ints=True))
def test_integers_beyond_2_pow_53_are_refused_row_by_row(case):
    t, values = case
    arr = pa.array(values, type=t)
    expected = []
    for v in values:
        try:
            expected.append(canonical_str(v))
        except CanonicalJSONError:
            expected.append(None)
    assert canonical_texts(arr, errors="null").to_pylist() == expected
    if None in expected:
        with pytest.raises(CanonicalJSONError):
            canonical_texts(arr)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_columns(big_ints=True))
def test_text_lines_are_the_texts_each_with_a_newline(case):
    t, values = case
    try:
        expected = [canonical_str(v) + "\n" for v in values]
    except CanonicalJSONError:
        expected = None  # an integer beyond 2^53 somewhere: no lines at all
    got = canonical_text_lines(pa.chunked_array([pa.array(values, type=t)], type=t))
    assert (got if got is None else got.to_pylist()) == expected


@pytest.mark.parametrize("t", [pa.float64(), pa.binary(), pa.map_(pa.string(), pa.int64()),
                               pa.timestamp("us")])
def test_types_without_a_canonical_form_are_refused(t):
    with pytest.raises(CanonicalJSONError):
        canonical_texts(pa.array([None], type=t))


def test_struct_with_repeated_member_names_is_refused():
    arr = pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(CanonicalJSONError):
        canonical_texts(arr)


def test_dictionary_arrays_encode_their_values():
    arr = pa.array(["b", None, "a\n", "b"]).dictionary_encode()
    assert canonical_texts(arr).to_pylist() == ['"b"', "null", '"a\\n"', '"b"']


# --- JSON object lines ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(names, json_values, max_size=5)


def _jsonl(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(objects, min_size=1, max_size=8))
def test_object_lines_are_only_accepted_when_each_is_canonical(objs):
    """Soundness: whatever comes back is what the per-record path computes."""
    lines = [canonical_str(o) for o in objs]
    parsed = canonical_object_lines(_jsonl(lines), len(lines))
    if parsed is not None:
        _table, out = parsed
        assert out.to_pylist() == [line + "\n" for line in lines]


def _perturbations(line: str) -> list[str]:
    obj = json.loads(line)
    out = [
        line.replace(":", ": ", 1),                              # insignificant space
        " " + line,
        line + " ",
        json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True),  # \\u escapes
        json.dumps(obj, separators=(",", ":")),                  # members in insertion order
        line[:-1] + ',"zz":1.5}' if line != "{}" else '{"zz":1.5}',  # a float
        line[:-1] + ',"zz":9007199254740993}' if line != "{}" else '{"zz":9007199254740993}',  # beyond 2^53
    ]
    if obj:
        k = next(iter(sorted(obj)))
        out.append(line[:-1] + "," + json.dumps(k, ensure_ascii=False) + ":null}")  # repeated member
    return [p for p in out if p != line]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(objects, min_size=1, max_size=6), st.data())
def test_a_single_non_canonical_line_is_never_accepted(objs, data):
    lines = [canonical_str(o) for o in objs]
    i = data.draw(st.integers(0, len(lines) - 1))
    candidates = _perturbations(lines[i])
    if not candidates:
        return
    lines[i] = data.draw(st.sampled_from(candidates))
    try:
        still_canonical = canonical_str(json.loads(lines[i])) == lines[i]
    except (ValueError, CanonicalJSONError):
        still_canonical = False
    # (an edit can land on another canonical object: '{"":null}' with a space is '{": ":null}')
    if not still_canonical:
        assert canonical_object_lines(_jsonl(lines), len(lines)) is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"id": texts, "n": safe_ints}, optional={"x": texts | st.none()}),
                min_size=1, max_size=10),
       st.lists(st.sampled_from(["stripe", "payout_sandbox", "é\U0001F600"]), min_size=10, max_size=10))
def test_added_members_are_written_in_place(objs, providers):
    lines = [canonical_str(o) for o in objs]
    add = pa.array(providers[:len(objs)])
    parsed = canonical_object_lines(_jsonl(lines), len(lines), add={"provider": add})
    assert parsed is not None  # one shape with an optional member: provable
    _table, out = parsed
    assert out.to_pylist() == [canonical_str({**o, "provider": p}) + "\n" for o, p in zip(objs, add.to_pylist())]


def test_an_added_member_the_objects_already_have_is_refused():
    lines = [canonical_str({"id": "a", "provider": "x"})]
    assert canonical_object_lines(_jsonl(lines), 1, add={"provider": pa.array(["y"])}) is None


@pytest.mark.parametrize("data,count", [
    (b'{"a":1}\n{"a":2}', 2),            # last line without its newline
    (b'{"a":1}\n\n{"a":2}\n', 3),        # an empty line
    (b'{"a":1} {"a":2}\n', 1),           # two objects on one line
    (b'[1]\n', 1),                       # not an object
    (b'{"a":"\xff"}\n', 1),              # not UTF-8
    (b'{"a":1}\r\n', 1),                 # CR
    (b'{"a":1}\n', 2),                   # count disagrees
])
def test_malformed_files_are_refused(data, count):
    assert canonical_object_lines(data, count) is None


def test_mixed_shapes_in_one_file():
    rows = [
        {"id": "txn_1", "amount": -5, "fee_details": [{"amount": 3, "application": None}], "exchange_rate": None},
        {"id": "txn_2", "amount": 7, "fee_details": [], "exchange_rate": "1.0834"},
        {"id": "stl_1", "amount_minor": 10, "settled_at": "2026-11-02T00:00:00Z", "status": "settled"},
        {"id": "p_1", "amount_minor": 10, "metadata": {}, "settled_at": None, "settlement_id": None},
    ]
    lines = [canonical_str(r) for r in rows]
    parsed = canonical_object_lines(_jsonl(lines), len(lines), add={"provider": pa.array(["s", "s", "p", "p"])})
    assert parsed is not None
    assert parsed[1].to_pylist() == [canonical_str({**r, "provider": p}) + "\n" for r, p in zip(rows, "sspp")]


def test_arrow_is_never_given_a_null_line_even_unterminated():
    good = b'{"a":1}\n' * 1000
    assert arrow_json_safe(good) and arrow_json_safe(good[:-1])
    assert not arrow_json_safe(b"null\n" + good)
    assert not arrow_json_safe(good + b"null")  # the last line, without its newline
    assert not arrow_json_safe(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}\n")


# Byte sequences that are not UTF-8 however they are placed: a UTF-16 surrogate, an overlong
# '/', a code point beyond U+10FFFF, a cut three-byte sequence, a lone continuation byte.
NOT_UTF8 = [b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=24)
       | st.lists(st.sampled_from(NOT_UTF8) | texts.map(lambda s: s.encode("utf-8")), max_size=6).map(b"".join))
def test_is_utf8_is_what_decode_accepts(data):
    try:
        data.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    assert is_utf8(data) is expected
    assert is_utf8(pa.py_buffer(data)) is expected
