import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_bytes, canonical_str

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_matches_reference_rfc8785_implementation(value):
    assert canonical_bytes(value) == rfc8785.dumps(value)


def test_members_sorted_by_utf16_code_units_not_code_points():
    # U+1F600 is a surrogate pair (D83D...) and sorts before U+FFFF in UTF-16.
    assert canonical_str({"\uffff": 1, "\U0001F600": 2}) == '{"\U0001F600":2,"\uffff":1}'


def test_escapes_follow_jcs():
    assert canonical_str("a\"\\\n\t\x01\u2028é") == '"a\\"\\\\\\n\\t\\u0001\u2028é"'


@pytest.mark.parametrize("bad", [1.5, 0.0, float("nan")])
def test_floats_are_rejected_with_the_path(bad):
    with pytest.raises(CanonicalJSONError, match=r"\$\.lines\[0\]\.amount_minor: float"):
        canonical_str({"lines": [{"amount_minor": bad}]})


def test_integers_beyond_2_pow_53_are_rejected():
    with pytest.raises(CanonicalJSONError, match="outside"):
        canonical_str(2**53)
