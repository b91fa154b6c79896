"""The reference builder of the proof tests: a package from journal entries and records, one
by one, with the statement's rules spelled out (the pipeline's builder is export/prove.prove_day,
column-wise; finance_pipeline_tests/perf compares the two byte for byte)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Mapping, Sequence

from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_bytes
from finance_pipeline.domain.journal import ENTRY_FIELDS, JournalEntry
from finance_pipeline.domain.strict_json import loads_strict
from finance_pipeline.domain.timeutil import TimestampError, format_ts_us, parse_ts_us
from finance_pipeline.proof.package import (
    SPEC_FILES,
    Package,
    PackageError,
    _bounds,
    _check_int as check_int,
    _SAFE_NAME,
    build_statement,
    ledger_entries_bytes,
    package_json,
    provider_records_bytes,
    statement_bytes,
    totals_rows,
)


def sort_leaves(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    """Entries in ledger file order: by the instant ``ts`` denotes, then ``journal_id``
    (Python compares str by code point, which is the spec's order)."""
    return sorted(entries, key=lambda e: (e.ts_us, e.journal_id))


def statement_of_leaves(*, ledger_leaves: Sequence[bytes], **members: Any) -> dict[str, Any]:
    """``build_statement`` of the ledger file these leaves make."""
    return build_statement(ledger_file=ledger_entries_bytes(ledger_leaves), **members)


def report_counts(report_bytes: bytes) -> tuple[int, int]:
    """(matched, total discrepancies) from a `finance-reconciliation/1` report's summary."""
    try:
        summary = loads_strict(report_bytes)["summary"]
        matched = summary["matched"]
        counts = summary["discrepancies"]
        total = sum(counts.values())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PackageError(f"reconciliation report: cannot read summary.matched and "
                           f"summary.discrepancies ({exc})") from None
    return check_int("report summary.matched", matched), check_int("report discrepancies", total)


def _check_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise PackageError(f"extra file name {name!r}: use letters, digits, '.', '_' or '-' only")
    return name


@dataclass(frozen=True)
class Draft:
    """A statement and its data files, waiting for signatures."""

    statement: dict[str, Any]
    ledger_entries: bytes
    provider_records: bytes
    reconciliation_report: bytes

    @property
    def signed_bytes(self) -> bytes:
        """``S``, what every signer signs."""
        return statement_bytes(self.statement)

    @property
    def proof_id(self) -> str:
        return self.statement["proof_id"]

    def package(self, signatures: Sequence[Mapping[str, Any]],
                extra_files: Mapping[str, bytes] | None = None) -> Package:
        pkg = Package(self.ledger_entries, self.provider_records, self.reconciliation_report,
                      package_json(self.statement, signatures))
        for name, data in (extra_files or {}).items():
            if name in SPEC_FILES:
                raise PackageError(f"extra file {name!r} would replace a spec file")
            pkg.extra_files[_check_name(name)] = bytes(data)
        return pkg


def _ledger_item(item: JournalEntry | Mapping[str, Any], i: int) -> tuple[int, str, bytes, list]:
    """(ts_us, journal_id, leaf bytes, lines) of an entry or of an eleven-member leaf dict."""
    if isinstance(item, JournalEntry):
        return item.ts_us, item.journal_id, item.leaf_bytes(), [ln.to_leaf() for ln in item.lines]
    if not isinstance(item, Mapping) or set(item) != set(ENTRY_FIELDS):
        raise PackageError(f"entry {i}: must be a JournalEntry or a leaf with exactly the members "
                           f"{', '.join(ENTRY_FIELDS)}")
    try:
        ts_us = parse_ts_us(item["ts"])
    except TimestampError as exc:
        raise PackageError(f"entry {item['journal_id']!r}: ts {exc}") from None
    try:
        leaf = canonical_bytes(dict(item))
    except CanonicalJSONError as exc:
        raise PackageError(f"entry {item['journal_id']!r}: {exc}") from None
    return ts_us, item["journal_id"], leaf, list(item["lines"])


def prepare(*, day: str | date, entries: Iterable[JournalEntry | Mapping[str, Any]],
            provider_records: Iterable[Mapping[str, Any]], report_bytes: bytes,
            previous: Mapping[str, str] | None, extra: Mapping[str, Any] | None = None) -> Draft:
    """Everything but the signatures: sorts, checks the day, counts and totals.

    ``entries`` are `JournalEntry` objects or leaf dicts in the spec's eleven-member shape
    (as the ledger extract yields them); leaf dicts are trusted to follow the journal rules.
    """
    items = sorted((_ledger_item(e, i) for i, e in enumerate(entries)), key=lambda t: (t[0], t[1]))
    lo, hi = _bounds(day)
    seen: set[str] = set()
    sums: dict[str, list[int]] = {}
    lines = 0
    for ts_us, journal_id, _, entry_lines in items:
        if not lo <= ts_us < hi:
            raise PackageError(f"entry {journal_id}: ts {format_ts_us(ts_us)} is outside the interval "
                               f"[{format_ts_us(lo)}, {format_ts_us(hi)}); pass only that day's entries")
        if journal_id in seen:
            raise PackageError(f"entry {journal_id}: appears twice; journal ids are unique")
        seen.add(journal_id)
        lines += len(entry_lines)
        for ln in entry_lines:
            pair = sums.setdefault(ln["currency"], [0, 0])
            pair[0 if ln["direction"] == "debit" else 1] += ln["amount_minor"]
    leaves = [leaf for _, _, leaf, _ in items]
    records = list(provider_records)
    providers_file = provider_records_bytes(records)
    matched, discrepancies = report_counts(report_bytes)
    statement = statement_of_leaves(
        day=day, ledger_leaves=leaves, ledger_lines=lines, totals=totals_rows(sums),
        provider_records_bytes=providers_file, provider_records=len(records),
        report_bytes=report_bytes, matched=matched, discrepancies=discrepancies,
        previous=previous, extra=extra)
    return Draft(statement, ledger_entries_bytes(leaves), providers_file, bytes(report_bytes))
