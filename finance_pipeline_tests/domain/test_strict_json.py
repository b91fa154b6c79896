"""One strict JSON reader for packages, request bodies and journal files."""

import pytest

from finance_pipeline.domain.strict_json import loads_strict


@pytest.mark.parametrize("text, message", [
    ('{"a": 1, "a": 2}', "member 'a' appears twice"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('[Infinity]', "Infinity is not a JSON number"),
    ('{"amount_minor": 12.5}', "non-integer number 12.5"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_what_a_lenient_parser_would_read_silently_is_an_error(text, message):
    with pytest.raises(ValueError, match=message):
        loads_strict(text)


def test_floats_only_when_allowed_and_bytes_must_be_utf8():
    assert loads_strict(b'{"rate": 1.25}', allow_float=True) == {"rate": 1.25}
    assert loads_strict('{"a": [1, "\\u00e9"]}') == {"a": [1, "é"]}
    with pytest.raises(UnicodeDecodeError):
        loads_strict(b'{"a": "\xff"}')
