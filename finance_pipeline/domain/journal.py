"""Journal entries as in `finance-journal/1`: parsing, validation and the canonical leaf.

Everything here needs no database. Rules that do (accounts exist, closed days, idempotency)
live in the ledger's posting core.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.domain.money import is_currency
from finance_pipeline.domain.timeutil import TimestampError, format_ts_us, parse_ts_us

KINDS = ("standard", "adjustment", "reversal")
DIRECTIONS = ("debit", "credit")
PROVIDERS = ("stripe", "payout_sandbox")
ENTRY_FIELDS = (
    "journal_id", "ts", "kind", "memo", "batch_id", "provider", "provider_reference",
    "reverses", "posted_by", "reviewed_by", "lines",
)
LINE_FIELDS = ("account_id", "direction", "amount_minor", "currency")
MAX_ID_LEN = 64


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field, addressed like ``lines[1].amount_minor``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class JournalValidationError(ValueError):
    """An entry (or several) that breaks the journal rules; nothing was written."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = list(errors)
        super().__init__("invalid journal entry: " + "; ".join(map(str, self.errors)))


@dataclass(frozen=True, slots=True)
class JournalLine:
    account_id: str
    direction: str
    amount_minor: int
    currency: str

    def to_leaf(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "direction": self.direction,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
        }


@dataclass(frozen=True, slots=True)
class JournalEntry:
    journal_id: str
    ts_us: int
    kind: str
    memo: str
    batch_id: str | None
    provider: str | None
    provider_reference: str | None
    reverses: str | None
    posted_by: str
    reviewed_by: str | None
    lines: tuple[JournalLine, ...] = field(default_factory=tuple)

    @property
    def ts(self) -> str:
        return format_ts_us(self.ts_us)

    def to_leaf(self) -> dict[str, Any]:
        """The eleven members of the spec, nulls included, lines in posted order."""
        return {
            "journal_id": self.journal_id,
            "ts": self.ts,
            "kind": self.kind,
            "memo": self.memo,
            "batch_id": self.batch_id,
            "provider": self.provider,
            "provider_reference": self.provider_reference,
            "reverses": self.reverses,
            "posted_by": self.posted_by,
            "reviewed_by": self.reviewed_by,
            "lines": [line.to_leaf() for line in self.lines],
        }

    def leaf_bytes(self) -> bytes:
        return canonical_bytes(self.to_leaf())

    def body_sha256(self) -> str:
        return hashlib.sha256(self.leaf_bytes()).hexdigest()

    def totals(self) -> dict[str, tuple[int, int]]:
        """(debits, credits) in minor units per currency."""
        out: dict[str, list[int]] = {}
        for line in self.lines:
            pair = out.setdefault(line.currency, [0, 0])
            pair[0 if line.direction == "debit" else 1] += line.amount_minor
        return {cur: (d, c) for cur, (d, c) in out.items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Collector:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def add(self, name: str, message: str) -> None:
        self.errors.append(FieldError(f"{self.prefix}{name}", message))


def _bad_text(value: str) -> str | None:
    """Text no database stores faithfully: NUL, or a lone UTF-16 surrogate."""
    if "\x00" in value:
        return "must not contain the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
    return None


def _text(obj: dict, name: str, err: _Collector, *, nullable: bool, max_len: int | None = None,
          allow_empty: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if not nullable:
            err.add(name, "is required (a string)")
        return None
    if not isinstance(value, str):
        err.add(name, f"must be a string{' or null' if nullable else ''}, got {type(value).__name__}")
        return None
    if not value and not allow_empty:
        err.add(name, "must not be empty" + ("; use null instead" if nullable else ""))
        return None
    problem = _bad_text(value)
    if problem:
        err.add(name, problem)
        return None
    if max_len is not None and len(value) > max_len:
        err.add(name, f"must be at most {max_len} characters, got {len(value)}")
        return None
    return value


def parse_entry(obj: Any, *, index: str = "") -> JournalEntry:
    """Validate one entry in the spec's JSON shape and return it.

    ``index`` prefixes field names (e.g. ``entries[3].``) so errors in a batch say which
    entry they are about. All problems are collected before raising.
    """
    err = _Collector(index)
    if not isinstance(obj, dict):
        err.add("$" if not index else index.rstrip("."), "must be a JSON object with the journal entry members")
        raise JournalValidationError(err.errors)

    unknown = sorted(set(obj) - set(ENTRY_FIELDS))
    for name in unknown:
        err.add(name, f"is not a member of finance-journal/1 (allowed: {', '.join(ENTRY_FIELDS)})")

    journal_id = _text(obj, "journal_id", err, nullable=False, max_len=MAX_ID_LEN)

    ts_us = None
    if obj.get("ts") is None:
        err.add("ts", "is required, e.g. '2026-11-02T10:15:00Z'")
    else:
        try:
            ts_us = parse_ts_us(obj["ts"])
        except TimestampError as exc:
            err.add("ts", str(exc))

    kind = obj.get("kind")
    if kind not in KINDS:
        err.add("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")

    memo = _text(obj, "memo", err, nullable=False, allow_empty=True)
    batch_id = _text(obj, "batch_id", err, nullable=True, max_len=MAX_ID_LEN)

    provider = obj.get("provider")
    if provider is not None and provider not in PROVIDERS:
        err.add("provider", f"must be one of {', '.join(PROVIDERS)} or null, got {provider!r}")
    provider_reference = _text(obj, "provider_reference", err, nullable=True)
    if provider_reference is not None and provider is None:
        err.add("provider", "is required when provider_reference is set")

    reverses = _text(obj, "reverses", err, nullable=True, max_len=MAX_ID_LEN)
    if kind == "reversal" and reverses is None and "reverses" not in {e.field for e in err.errors}:
        err.add("reverses", "is required for kind=reversal: name the journal_id being reversed")
    if kind != "reversal" and reverses is not None:
        err.add("reverses", "is only allowed for kind=reversal")
    if reverses is not None and reverses == journal_id:
        err.add("reverses", "an entry cannot reverse itself")

    posted_by = _text(obj, "posted_by", err, nullable=False)
    reviewed_by = _text(obj, "reviewed_by", err, nullable=True)
    if kind == "adjustment":
        if reviewed_by is None and obj.get("reviewed_by") is None:
            err.add("reviewed_by", "is required for kind=adjustment (two-person review)")
        elif reviewed_by is not None and reviewed_by == posted_by:
            err.add("reviewed_by", "must be a different person than posted_by (two-person review)")

    lines = _parse_lines(obj.get("lines"), err)

    if err.errors:
        raise JournalValidationError(err.errors)
    return JournalEntry(
        journal_id=journal_id, ts_us=ts_us, kind=kind, memo=memo, batch_id=batch_id,
        provider=provider, provider_reference=provider_reference, reverses=reverses,
        posted_by=posted_by, reviewed_by=reviewed_by, lines=tuple(lines),
    )


def _parse_lines(raw: Any, err: _Collector) -> list[JournalLine]:
    if not isinstance(raw, list):
        err.add("lines", "is required: a list of at least two lines")
        return []
    if len(raw) < 2:
        err.add("lines", f"needs at least two lines (a debit and a credit), got {len(raw)}")
    lines: list[JournalLine] = []
    ok = True
    for i, line in enumerate(raw):
        at = f"lines[{i}]"
        if not isinstance(line, dict):
            err.add(at, "must be an object with account_id, direction, amount_minor, currency")
            ok = False
            continue
        for name in sorted(set(line) - set(LINE_FIELDS)):
            err.add(f"{at}.{name}", f"is not a line member (allowed: {', '.join(LINE_FIELDS)})")
            ok = False
        account_id = line.get("account_id")
        if not isinstance(account_id, str) or not account_id:
            err.add(f"{at}.account_id", "is required (the id of an existing account)")
            ok = False
        elif _bad_text(account_id):
            err.add(f"{at}.account_id", _bad_text(account_id))
            ok = False
        direction = line.get("direction")
        if direction not in DIRECTIONS:
            err.add(f"{at}.direction", f"must be 'debit' or 'credit', got {direction!r}")
            ok = False
        amount = line.get("amount_minor")
        if not _is_int(amount):
            hint = ""
            if isinstance(amount, float):
                hint = "; amounts are integers in minor units (send 1250 for 12.50)"
            err.add(f"{at}.amount_minor", f"must be an integer, got {type(amount).__name__} {amount!r}{hint}")
            ok = False
        elif amount <= 0:
            err.add(f"{at}.amount_minor", f"must be > 0, got {amount}; use the direction for the sign")
            ok = False
        currency = line.get("currency")
        if not is_currency(currency):
            hint = " in capitals" if isinstance(currency, str) and is_currency(currency.upper()) else ""
            err.add(f"{at}.currency", f"must be an ISO 4217 code{hint} such as 'USD', got {currency!r}")
            ok = False
        if ok:
            lines.append(JournalLine(account_id, direction, amount, currency))
    if ok and lines:
        totals: dict[str, list[int]] = {}
        for line in lines:
            pair = totals.setdefault(line.currency, [0, 0])
            pair[0 if line.direction == "debit" else 1] += line.amount_minor
        for currency in sorted(totals):
            debits, credits = totals[currency]
            if debits != credits:
                err.add("lines", f"unbalanced in {currency}: debits {debits} != credits {credits}; "
                        "every currency's debits must equal its credits")
    return lines


def entry_from_leaf(leaf: dict) -> JournalEntry:
    """Rebuild an entry from a canonical leaf (already valid when it was posted)."""
    return parse_entry(leaf)
