"""UTC timestamps as the journal spec writes them, held as integer microseconds."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = 1_000_000
DAY_US = 86_400 * _US  # a UTC day: the partitions are UTC days, without leap seconds
# RFC 3339 date-time with a mandatory offset ('Z' or +hh:mm); fraction up to 9 digits.
_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,  # \d must not accept other scripts' digits
)


class TimestampError(ValueError):
    """A timestamp that is not an RFC 3339 date-time with an offset."""


def parse_ts_us(text: object) -> int:
    """Parse an RFC 3339 timestamp with an offset into UTC microseconds since the epoch.

    Offsets other than Z are converted to UTC; a missing offset is an error, because a
    naive time does not say which day it belongs to. Sub-microsecond digits must be zero.
    """
    if not isinstance(text, str):
        raise TimestampError("must be a string such as '2026-11-02T10:15:00Z'")
    m = _TS_RE.fullmatch(text)
    if not m:
        raise TimestampError(
            f"{text!r} is not a UTC timestamp; write it as 'YYYY-MM-DDTHH:MM:SSZ' "
            "(an explicit offset such as '+02:00' is also accepted)"
        )
    year, month, day, hh, mm, ss, frac, off = m.groups()
    frac = frac or ""
    if len(frac) > 6 and int(frac[6:]):
        raise TimestampError(f"{text!r} has more precision than microseconds")
    micro = int((frac[:6]).ljust(6, "0")) if frac else 0
    try:
        if off == "Z":
            tz = timezone.utc
        else:
            sign = 1 if off[0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
        dt = datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss), micro, tzinfo=tz)
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a valid date-time: {exc}") from None
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds


def format_ts_us(ts_us: int) -> str:
    """The spec's form: ``YYYY-MM-DDTHH:MM:SSZ``, or ``.ffffffZ`` when the fraction is not zero."""
    secs, micro = divmod(int(ts_us), _US)
    dt = _EPOCH + timedelta(seconds=secs)
    # Not strftime: glibc's %Y does not pad years below 1000 ("1-01-01").
    base = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    return f"{base}.{micro:06d}Z" if micro else f"{base}Z"


def day_bounds_us(day: date | str) -> tuple[int, int]:
    """Half-open [D 00:00Z, D+1 00:00Z) of one daily partition in microseconds."""
    if isinstance(day, str):
        day = date.fromisoformat(day)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    lo = int((start - _EPOCH).total_seconds()) * _US
    return lo, lo + DAY_US


def recon_window_us(day: date | str, tolerance_s: int) -> tuple[int, int]:
    """What a day's reconciliation reads, as a half-open [lo, hi) in microseconds: the day and
    everything within ``tolerance_s`` of it, both ends included (a counterpart exactly the
    tolerance away is within it, before midnight as after). One home for the window: the
    extract, both pulls, the restore drill and the bench use it."""
    lo, hi = day_bounds_us(day)
    return lo - tolerance_s * _US, hi + tolerance_s * _US + 1


def seconds_window(lo_us: int, hi_us: int) -> tuple[int, int]:
    """[lo, hi) in whole seconds (Stripe's ``created`` filters) covering every second that
    starts inside [lo_us, hi_us)."""
    return -(-lo_us // _US), -(-hi_us // _US)


def day_of_us(ts_us: int) -> date:
    """The UTC day an instant falls in."""
    return (_EPOCH + timedelta(microseconds=int(ts_us))).date()


def to_datetime(ts_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(ts_us))


def from_datetime(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise TimestampError("naive datetime: attach a timezone (UTC) first")
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _US + delta.microseconds
