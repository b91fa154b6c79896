import pytest

from finance_pipeline.domain.money import CurrencyError, Money, is_currency, minor_exponent
from finance_pipeline.domain.timeutil import (
    TimestampError,
    day_bounds_us,
    day_of_us,
    format_ts_us,
    parse_ts_us,
)


def test_minor_units():
    assert minor_exponent("USD") == 2
    assert minor_exponent("JPY") == 0
    assert minor_exponent("KWD") == 3
    assert is_currency("EUR") and not is_currency("eur") and not is_currency("XYZ")
    with pytest.raises(CurrencyError, match="ISO 4217"):
        minor_exponent("usd")


def test_money_rejects_floats_and_mixing_currencies():
    with pytest.raises(TypeError):
        Money(12.5, "USD")
    with pytest.raises(CurrencyError):
        Money(1, "USD") + Money(1, "EUR")
    assert (Money(150, "USD") - Money(200, "USD")).format() == "USD -0.50"
    assert Money(123456, "JPY").format() == "JPY 123,456"
    assert Money(1234567, "KWD").format() == "KWD 1,234.567"


def test_timestamps_round_trip_in_the_spec_form():
    us = parse_ts_us("2026-11-02T10:15:00Z")
    assert format_ts_us(us) == "2026-11-02T10:15:00Z"
    assert format_ts_us(parse_ts_us("2026-11-02T10:15:00.5Z")) == "2026-11-02T10:15:00.500000Z"
    # Another offset is converted to UTC, which can change the day.
    assert format_ts_us(parse_ts_us("2026-11-02T01:00:00+02:00")) == "2026-11-01T23:00:00Z"
    assert format_ts_us(parse_ts_us("2026-11-02T10:15:00.123456000Z")) == "2026-11-02T10:15:00.123456Z"


@pytest.mark.parametrize(
    "bad",
    ["2026-11-02T10:15:00", "2026-11-02 10:15:00Z", "2026-13-02T10:15:00Z", "yesterday", 1700000000,
     "2026-11-02T10:15:00.1234567Z", "2026-11-02T10:15:00.123456789Z"],
)
def test_bad_timestamps_are_rejected(bad):
    with pytest.raises(TimestampError):
        parse_ts_us(bad)


def test_day_bounds_are_half_open():
    lo, hi = day_bounds_us("2026-11-02")
    assert format_ts_us(lo) == "2026-11-02T00:00:00Z"
    assert format_ts_us(hi) == "2026-11-03T00:00:00Z"
    assert day_of_us(hi - 1).isoformat() == "2026-11-02"
    assert day_of_us(hi).isoformat() == "2026-11-03"


def test_timestamps_render_in_the_specs_form_for_every_year():
    from finance_pipeline.domain.timeutil import format_ts_us, parse_ts_us

    for text in ("0001-01-01T00:00:00Z", "0999-12-31T23:59:59.000001Z", "2026-11-02T10:15:00Z",
                 "9999-12-31T23:59:59Z"):
        assert format_ts_us(parse_ts_us(text)) == text
