"""canonical_str_of_json and canonical_strs_of_json (json.dumps where it agrees with RFC 8785)
equal canonical_str."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.columnar.canonical import (
    canonical_str_of_json,
    canonical_strs_of_json,
    canonical_strs_of_json_text,
)
from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_str

# Texts that reach every branch: ASCII only, control characters, astral and high-BMP names
# (their UTF-16 order differs from code point order), and digits next to dots and letters.
texts = st.text(alphabet=st.sampled_from(list("ab.eE09\"\\/\x00\x1f\x7f é\ue000\U0001f600")), max_size=6)
ints = st.integers(-(2**60), 2**60)
scalars = st.none() | st.booleans() | ints | texts | st.floats(allow_nan=True, allow_infinity=True)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                      max_leaves=20)


def _exact(value):
    try:
        return canonical_str(value)
    except CanonicalJSONError as exc:
        return exc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_same_text_or_same_error_as_the_exact_writer(value):
    expected = _exact(value)
    if isinstance(expected, CanonicalJSONError):
        with pytest.raises(CanonicalJSONError) as caught:
            canonical_str_of_json(value)
        assert str(caught.value) == str(expected)
    else:
        assert canonical_str_of_json(value) == expected


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_decoded_from_json_text(value):
    try:
        decoded = json.loads(json.dumps(value))
    except ValueError:
        return
    expected = _exact(decoded)
    if not isinstance(expected, CanonicalJSONError):
        assert canonical_str_of_json(decoded) == expected


@pytest.mark.parametrize(("value", "text"), [
    ({"b": 1, "a": [True, None, "x"]}, '{"a":[true,null,"x"],"b":1}'),
    ({"\ue000": 1, "\U0001f600": 2}, '{"\U0001f600":2,"\ue000":1}'),  # UTF-16 order, not code points
    ({"n": 9007199254740991}, '{"n":9007199254740991}'),
    ({"s": "1.5e3"}, '{"s":"1.5e3"}'),
    ({"s": "\x00\x1f\x7f"}, '{"s":"\\u0000\\u001f\x7f"}'),
])
def test_known_texts(value, text):
    assert canonical_str_of_json(value) == text


@pytest.mark.parametrize("value", [{"n": 2**53}, {"rate": 1.5}, {"x": float("nan")}])
def test_refused_like_the_exact_writer(value):
    with pytest.raises(CanonicalJSONError):
        canonical_str_of_json(value)


def _prepared(value):
    """A `prepare` for the batch: floats as text (what the Stripe pull does with exchange_rate)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {k: _prepared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_prepared(v) for v in value]
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values, max_size=12))
def test_a_batch_is_the_exact_text_of_each_value(batch):
    expected = [_exact(v) for v in batch]
    first_error = next((e for e in expected if isinstance(e, CanonicalJSONError)), None)
    if first_error is None:
        assert canonical_strs_of_json(batch) == expected
    else:
        with pytest.raises(CanonicalJSONError) as caught:
            canonical_strs_of_json(batch)
        assert str(caught.value) == str(first_error)
    prepared = [_exact(_prepared(v)) if isinstance(e, CanonicalJSONError) else e for v, e in zip(batch, expected)]
    if not any(isinstance(e, CanonicalJSONError) for e in prepared):  # (big integers stay refused)
        assert canonical_strs_of_json(batch, _prepared) == prepared


def test_values_that_need_the_exact_path_are_found_anywhere_in_a_batch():
    plain = [{"id": f"r{i}", "n": i, "s": "x.5e3"} for i in range(50)]
    odd = {3: {"rate": 1.0834}, 17: {"n": 1234567890123456}, 29: {"\ue000": 1, "\U0001f600": 2},
           0: [1.5], 49: 2.5}
    batch = [odd.get(i, v) for i, v in enumerate(plain)]
    got = canonical_strs_of_json(batch, _prepared)
    for i, value in enumerate(batch):
        want = _exact(value)
        assert got[i] == (canonical_str(_prepared(value)) if isinstance(want, CanonicalJSONError) else want), i
    assert got[3] == '{"rate":"1.0834"}' and got[29] == '{"\U0001f600":2,"\ue000":1}'
    assert canonical_strs_of_json([]) == []


# --- canonical_strs_of_json_text: orjson where it writes the same text ---------------------

# Numbers as JSON text can spell what no Python literal above does: exponents, huge integers,
# NaN and Infinity (json.loads accepts them), numbers overflowing a double.
number_texts = st.sampled_from(["0", "-0", "1.5", "1e5", "-2E-3", "1e400", "-1e400", "NaN", "Infinity",
                                "-Infinity", "9007199254740993", "18446744073709551616", "1" * 320,
                                "1" * 320 + ".5", "123456789012345678901234567890", "123456789012345",
                                "-999999999999999", "42", "1234567890123456"])


@st.composite
def json_texts(draw):
    """(text, values): a JSON array of objects whose members are drawn values and number texts."""
    batch = draw(st.lists(st.tuples(values, st.lists(st.tuples(texts, number_texts), max_size=3)), max_size=8))
    items = []
    for value, numbers in batch:
        members = [f"{json.dumps(k)}:{n}" for k, n in numbers]
        items.append("{" + ",".join([f'"v":{json.dumps(value)}', *members]) + "}")
    text = "[" + ",".join(items) + "]"
    return text, json.loads(text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_texts())
def test_from_json_text_is_the_json_path(case):
    text, batch = case
    try:
        expected = canonical_strs_of_json(batch, _prepared)
    except CanonicalJSONError as exc:
        with pytest.raises(CanonicalJSONError) as caught:
            canonical_strs_of_json_text(batch, text, _prepared)
        assert str(caught.value) == str(exc)
        return
    assert canonical_strs_of_json_text(batch, text, _prepared) == expected


def test_from_json_text_non_finite_numbers_are_never_written_as_null():
    text = '[{"id":"txn_1e5","rate":1e999},{"id":"a","n":-Infinity},{"x":NaN}]'
    for record in json.loads(text):
        with pytest.raises(CanonicalJSONError):
            canonical_strs_of_json_text([record], text)
    got = canonical_strs_of_json_text(json.loads(text), text, _prepared)
    assert got == ['{"id":"txn_1e5","rate":"inf"}', '{"id":"a","n":"-inf"}', '{"x":"nan"}']


@pytest.mark.parametrize(("text", "plain"), [
    ('{"data":[{"id":"txn_1e5","n":123456789012345,"s":"Order 12E5 1.5","t":true}],"has_more":false}', True),
    ('[1, 2 ,3]', True),
    ('{"n":1234567890123456}', False),  # 16 digits: maybe beyond 2^53
    ('{"n":1.5}', False), ('{"n":1e5}', False), ('{"n":2E-1}', False), ('[NaN]', False), ('[-Infinity]', False),
    ('{"s":"\\u00e9"}', False), ('{"s":"\u00e9"}', False), ('{"s":"a\\"}', False),
])
def test_plain_json_text(text, plain):
    from finance_pipeline.columnar.canonical import _plain_json_text

    assert _plain_json_text(text) is plain


def test_from_json_text_plain_records_and_ids_that_look_like_numbers():
    from collections import OrderedDict

    text = '{"data":[{"id":"txn_1e5","b":[1,null,true],"a":"Order 1.5E3"},{"id":"ch_9E9","a":"x"}]}'
    records = json.loads(text, object_pairs_hook=OrderedDict)["data"]  # as the Stripe SDK decodes
    assert canonical_strs_of_json_text(records, text) == [
        '{"a":"Order 1.5E3","b":[1,null,true],"id":"txn_1e5"}', '{"a":"x","id":"ch_9E9"}']


def test_from_json_text_adds_plain_members_and_refuses_others():
    text = '[{"id":"b","z":1},{"id":"a"}]'
    values = json.loads(text)
    got = canonical_strs_of_json_text(values, text, add={"provider": "stripe"})
    assert got == ['{"id":"b","provider":"stripe","z":1}', '{"id":"a","provider":"stripe"}']
    assert values == json.loads(text)  # the caller's values are left as they were
    odd = '[{"id":"b","r":1.5}]'  # the json path adds them the same way
    assert canonical_strs_of_json_text(json.loads(odd), odd, _prepared, add={"provider": "p"}) == [
        '{"id":"b","provider":"p","r":"1.5"}']
    with pytest.raises(ValueError, match="value 1 already has a 'provider' member"):
        canonical_strs_of_json_text([{}, {"provider": "x"}], "[{},{}]", add={"provider": "stripe"})
    with pytest.raises(ValueError, match="value 0 is not a JSON object"):
        canonical_strs_of_json_text([[1]], "[[1]]", add={"provider": "stripe"})
    with pytest.raises(ValueError, match="not a plain word member"):
        canonical_strs_of_json_text([{}], "[{}]", add={"provider": 'a"b'})
