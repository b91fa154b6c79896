"""Building the files of a `finance-proof/1` package (see `proof-package.md`).

Everything here is deterministic: the same ledger, provider records, report and previous link
give the same bytes and the same ``proof_id``. Only the signatures (made elsewhere) may vary.

``proof_id`` is derived from the statement's other members so an auditor can recompute it::

    proof_id = "fp1-" + YYYYMMDD + "-" + hex(SHA-256(JCS(statement without proof_id)))[:24]

where YYYYMMDD is the date of ``interval.from`` and JCS is RFC 8785 canonical JSON. Two
statements with the same ledger, report and previous link therefore get the same id, and any
change to a signed member changes it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_bytes
from finance_pipeline.domain.journal import JournalEntry
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us
from finance_pipeline.proof.merkle import tree_head_of_lines

FORMAT = "finance-proof/1"
ALGORITHM = "ECDSA_P256_SHA256"
MAX_STATEMENT_BYTES = 4096  # AWS KMS signs at most 4096 bytes as a RAW message

LEDGER_FILE = "ledger_entries.jsonl"
PROVIDERS_FILE = "provider_records.jsonl"
REPORT_FILE = "reconciliation_report.json"
PROOF_FILE = "proof_package.json"
SPEC_FILES = (LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE, PROOF_FILE)
# The optional file of the package format; its hash is `reconciliation.context_sha256`.
CONTEXT_FILE = "reconciliation_context.json"
CONTEXT_FORMAT = "finance-reconciliation-context/1"

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")


class PackageError(ValueError):
    """Inputs that cannot make a valid package; the message names the field and the fix."""


class StatementTooLarge(PackageError):
    """The canonical statement exceeds the 4096 bytes KMS can sign as a RAW message."""


class PackageLoadError(Exception):
    """A package that could not be read at all (missing or unreadable files, unknown scheme)."""


# --- strict JSON: one home, domain/strict_json.py (re-exported: the verifier's readers use it)
from finance_pipeline.domain.strict_json import loads_strict  # noqa: E402,F401


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the data files ------------------------------------------------------------------------

def split_lines(data: bytes) -> list[bytes]:
    """The lines of a `.jsonl` file without their ``\\n`` (a missing final newline keeps the
    last partial line, so a verifier still sees it and can complain)."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _jsonl(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def ledger_entries_bytes(leaves: Iterable[bytes]) -> bytes:
    """`ledger_entries.jsonl`: canonical leaves, each followed by ``\\n``; no leaves -> b""."""
    out = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, (bytes, bytearray)) or b"\n" in leaf or not leaf:
            raise PackageError(f"ledger leaf {i}: must be non-empty canonical JSON bytes without a "
                               "newline; use JournalEntry.leaf_bytes()")
        out.append(bytes(leaf))
    return _jsonl(out)


def provider_records_bytes(records: Iterable[Mapping[str, Any]]) -> bytes:
    """`provider_records.jsonl`: canonical records ordered by (provider, id) in code point order."""
    keyed: list[tuple[tuple[str, str], bytes]] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise PackageError(f"provider record {i}: must be an object with provider and id members")
        for name in ("provider", "id"):
            if not isinstance(rec.get(name), str) or not rec[name]:
                raise PackageError(f"provider record {i}: member {name!r} is required (a non-empty "
                                   "string) so records can be ordered and identified")
        try:
            line = canonical_bytes(dict(rec))
        except CanonicalJSONError as exc:
            raise PackageError(f"provider record {i} ({rec['provider']}, {rec['id']}): {exc}") from None
        keyed.append(((rec["provider"], rec["id"]), line))
    keyed.sort(key=lambda kv: kv[0])
    for (a, _), (b, _) in zip(keyed, keyed[1:]):
        if a == b:
            raise PackageError(f"provider records: ({a[0]!r}, {a[1]!r}) appears twice; each "
                               "(provider, id) must be unique - deduplicate the pull first")
    return _jsonl(line for _, line in keyed)


def ledger_totals(entries: Iterable[JournalEntry]) -> list[dict[str, Any]]:
    """``ledger.totals``: debits and credits per currency, sorted by currency."""
    sums: dict[str, list[int]] = {}
    for entry in entries:
        for line in entry.lines:
            pair = sums.setdefault(line.currency, [0, 0])
            pair[0 if line.direction == "debit" else 1] += line.amount_minor
    return totals_rows(sums)


def totals_rows(sums: Mapping[str, Sequence[int]]) -> list[dict[str, Any]]:
    """``ledger.totals`` rows of per-currency (debits, credits) sums, sorted by currency."""
    return [{"currency": cur, "debits_minor": d, "credits_minor": c}
            for cur, (d, c) in sorted(sums.items())]


# --- statement -----------------------------------------------------------------------------

def interval_of(day: str | date) -> dict[str, str]:
    """The half-open UTC interval of one daily partition."""
    lo, hi = _bounds(day)
    return {"from": format_ts_us(lo), "to": format_ts_us(hi)}


def compute_proof_id(statement: Mapping[str, Any]) -> str:
    """``fp1-<YYYYMMDD of interval.from>-<first 24 hex of SHA-256(JCS(statement - proof_id))>``."""
    try:
        day = date.fromisoformat(statement["interval"]["from"][:10])
    except (KeyError, TypeError, ValueError):
        raise PackageError("statement.interval.from: must be 'YYYY-MM-DDT00:00:00Z' to derive the "
                           "proof_id") from None
    rest = {k: v for k, v in statement.items() if k != "proof_id"}
    return f"fp1-{day:%Y%m%d}-{sha256_hex(canonical_bytes(rest))[:24]}"


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """``S``: the canonical bytes that are signed; at most 4096 bytes."""
    data = canonical_bytes(statement)
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementTooLarge(
            f"statement: canonical form is {len(data)} bytes, over the {MAX_STATEMENT_BYTES}-byte "
            "limit KMS can sign as a RAW message; move bulky extra members into a separate file "
            "and sign its SHA-256 instead")
    return data


def statement_sha256(statement: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_bytes(statement))


def previous_link(statement: Mapping[str, Any]) -> dict[str, str]:
    """The ``previous`` member for the day after ``statement``."""
    return {"proof_id": statement["proof_id"], "statement_sha256": statement_sha256(statement)}


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PackageError(f"{name}: must be a non-negative integer, got {value!r}")
    return value


def _check_totals(totals: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(totals):
        if not isinstance(t, Mapping) or set(t) != {"currency", "debits_minor", "credits_minor"}:
            raise PackageError(f"totals[{i}]: must have exactly currency, debits_minor, credits_minor")
        if not isinstance(t["currency"], str) or not t["currency"]:
            raise PackageError(f"totals[{i}].currency: must be a currency code such as 'USD'")
        out.append({"currency": t["currency"],
                    "debits_minor": _check_int(f"totals[{i}].debits_minor", t["debits_minor"]),
                    "credits_minor": _check_int(f"totals[{i}].credits_minor", t["credits_minor"])})
    out.sort(key=lambda t: t["currency"])
    for a, b in zip(out, out[1:]):
        if a["currency"] == b["currency"]:
            raise PackageError(f"totals: currency {a['currency']} appears twice; sum it into one row")
    return out


def _check_previous(previous: Any) -> dict[str, str] | None:
    if previous is None:
        return None
    if (not isinstance(previous, Mapping) or set(previous) != {"proof_id", "statement_sha256"}
            or not isinstance(previous["proof_id"], str) or not previous["proof_id"]
            or not isinstance(previous["statement_sha256"], str)
            or not _HEX64.match(previous["statement_sha256"])):
        raise PackageError("previous: must be null or {proof_id, statement_sha256 (64 lowercase hex)}; "
                           "build it with previous_link(<previous statement>)")
    return {"proof_id": previous["proof_id"], "statement_sha256": previous["statement_sha256"]}


def _merge_extra(base: dict[str, Any], extra: Mapping[str, Any], path: str) -> None:
    """Add ``extra`` members into ``base``; objects merge recursively, nothing is overwritten."""
    for key, value in extra.items():
        at = f"{path}.{key}"
        if key not in base:
            base[key] = copy.deepcopy(value)
        elif isinstance(base[key], dict) and isinstance(value, Mapping):
            _merge_extra(base[key], value, at)
        else:
            raise PackageError(f"extra {at}: would overwrite a member the spec defines; "
                               "choose another member name")


def _ledger_file_entries(ledger_file: bytes) -> int:
    """The number of leaves of a written `ledger_entries.jsonl`, which must be non-empty lines
    each ended by ``\\n`` (what ``ledger_entries_bytes`` writes)."""
    if not ledger_file:
        return 0
    if not ledger_file.endswith(b"\n") or ledger_file.startswith(b"\n") or b"\n\n" in ledger_file:
        raise PackageError("ledger file: must be non-empty canonical leaves, each followed by one newline; "
                           "write it with ledger_entries_bytes()")
    return ledger_file.count(b"\n")


def _given_entries(ledger_file: bytes, entries: Any) -> int:
    """The caller's leaf count, with the checks that cost nothing (the self-verification before
    publishing reads every line)."""
    count = _check_int("ledger_entries", entries)
    malformed = bool(ledger_file) and (not ledger_file.endswith(b"\n") or ledger_file.startswith(b"\n"))
    if malformed or (count == 0) != (not ledger_file):
        raise PackageError("ledger file: must be non-empty canonical leaves, each followed by one newline; "
                           "write it with ledger_entries_bytes()")
    return count


def build_statement(*, day: str | date, ledger_file: bytes, ledger_lines: int,
                    totals: Sequence[Mapping[str, Any]], provider_records_bytes: bytes,
                    provider_records: int, report_bytes: bytes, matched: int, discrepancies: int,
                    previous: Mapping[str, str] | None,
                    extra: Mapping[str, Any] | None = None,
                    merkle_root: bytes | None = None,
                    ledger_entries: int | None = None) -> dict[str, Any]:
    """The spec's ``statement``, ``proof_id`` included, of the written `ledger_entries.jsonl`
    (its lines are the leaves; see ``ledger_entries_bytes``); ``extra`` members are signed too.
    A caller holding the file need not split it into a million leaves. ``merkle_root``
    and ``ledger_entries``: the file's tree head and its number of leaves, when the caller
    already computed them (``tree_head_and_size_of_lines``); the file is not scanned again."""
    statement: dict[str, Any] = {
        "format": FORMAT,
        "interval": interval_of(day),
        "ledger": {
            "entries": (_ledger_file_entries(ledger_file) if ledger_entries is None
                        else _given_entries(ledger_file, ledger_entries)),
            "lines": _check_int("ledger_lines", ledger_lines),
            "file_sha256": sha256_hex(ledger_file),
            "merkle_root": (merkle_root if merkle_root is not None else tree_head_of_lines(ledger_file)).hex(),
            "totals": _check_totals(totals),
        },
        "providers": {
            "records": _check_int("provider_records", provider_records),
            "file_sha256": sha256_hex(provider_records_bytes),
        },
        "reconciliation": {
            "report_sha256": sha256_hex(report_bytes),
            "matched": _check_int("matched", matched),
            "discrepancies": _check_int("discrepancies", discrepancies),
        },
        "previous": _check_previous(previous),
    }
    if extra:
        if "proof_id" in extra:
            raise PackageError("extra.proof_id: proof_id is derived from the statement; do not set it")
        _merge_extra(statement, extra, "statement")
    statement["proof_id"] = compute_proof_id(statement)
    statement_bytes(statement)  # fail here, not at signing time, when it is too big
    return statement


def signature_entry(*, key_id: str, role: str, der_signature: bytes) -> dict[str, str]:
    """One member of ``signatures`` in the spec's shape."""
    return {"key_id": key_id, "role": role, "algorithm": ALGORITHM,
            "signature": base64.b64encode(der_signature).decode("ascii")}


def package_json(statement: Mapping[str, Any] | bytes, signatures: Sequence[Mapping[str, Any]]) -> bytes:
    """`proof_package.json`: canonical JSON, signatures ordered by key_id. ``statement`` is the
    statement or ``S``, its canonical bytes, as ``statement_bytes`` gave them.

    Being canonical, the file reads ``{"signatures":[...],"statement":{...}}`` ("signatures"
    sorts first) and ``S`` is the exact byte range after ``"statement":`` up to the final ``}``
    (the auditor guide uses this), so the file is written around ``S`` itself.
    """
    sigs = sorted((dict(s) for s in signatures), key=lambda s: (str(s.get("key_id")), str(s.get("signature"))))
    if isinstance(statement, bytes):
        if not statement.startswith(b"{") or len(statement) > MAX_STATEMENT_BYTES:
            raise PackageError("statement: pass the statement, or S as statement_bytes() gave it "
                               f"(a JSON object of at most {MAX_STATEMENT_BYTES} bytes)")
        s_bytes = statement
    else:
        s_bytes = statement_bytes(statement)
    return b'{"signatures":' + canonical_bytes(sigs) + b',"statement":' + s_bytes + b"}"


# --- the package on disk ----------------------------------------------------------------------

@dataclass
class Package:
    """The files of one package, by their spec names; ``None`` for a file that is absent."""

    ledger_entries: bytes | None = None
    provider_records: bytes | None = None
    reconciliation_report: bytes | None = None
    proof_package: bytes | None = None
    extra_files: dict[str, bytes] = field(default_factory=dict)
    # Entries of a package folder that are no readable regular file of a usable name
    # (symlinks, sub-folders, hidden or oddly named files): never part of a package.
    foreign: list[str] = field(default_factory=list)

    _ATTRS = {LEDGER_FILE: "ledger_entries", PROVIDERS_FILE: "provider_records",
              REPORT_FILE: "reconciliation_report", PROOF_FILE: "proof_package"}

    def files(self) -> dict[str, bytes]:
        """Present files by name, spec files first."""
        out = {name: getattr(self, attr) for name, attr in self._ATTRS.items()
               if getattr(self, attr) is not None}
        out.update(sorted(self.extra_files.items()))
        return out

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> "Package":
        """The package of these files; a name no package file could have (a path, an odd
        character) is kept in ``foreign``, for the verifier to refuse, not raised here."""
        pkg = cls()
        for name, data in files.items():
            if name in cls._ATTRS:
                setattr(pkg, cls._ATTRS[name], bytes(data))
            elif _SAFE_NAME.match(name):
                pkg.extra_files[name] = bytes(data)
            else:
                pkg.foreign.append(name)
        return pkg

    def missing(self) -> list[str]:
        return [name for name, attr in self._ATTRS.items() if getattr(self, attr) is None]

    def document(self) -> dict[str, Any]:
        """The parsed `proof_package.json` (strict JSON)."""
        if self.proof_package is None:
            raise PackageLoadError(f"{PROOF_FILE} is missing")
        return loads_strict(self.proof_package)

    def statement(self) -> dict[str, Any]:
        return self.document()["statement"]

    @classmethod
    def load_dir(cls, path: str | Path, *, require_all: bool = True) -> "Package":
        """Read a package folder; with ``require_all`` every spec file must be there."""
        root = Path(path)
        if not root.is_dir():
            raise PackageLoadError(f"{root}: not a package folder (expected the files "
                                   f"{', '.join(SPEC_FILES)})")
        files: dict[str, bytes] = {}
        foreign: list[str] = []
        try:
            for entry in sorted(os.scandir(root), key=lambda e: e.name):
                if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                    foreign.append(entry.name)
                elif entry.name in SPEC_FILES or _SAFE_NAME.match(entry.name):
                    files[entry.name] = Path(entry.path).read_bytes()
                else:
                    foreign.append(entry.name)
        except OSError as exc:
            raise PackageLoadError(f"{root}: cannot read ({exc.strerror or exc})") from None
        pkg = cls.from_files(files)
        pkg.foreign = foreign
        absent = pkg.missing() if require_all else ([PROOF_FILE] if pkg.proof_package is None else [])
        if absent:
            raise PackageLoadError(f"{root}: missing {', '.join(absent)}; a package has "
                                   f"{', '.join(SPEC_FILES)}")
        return pkg

    def write_dir(self, path: str | Path) -> Path:
        """Write the files into ``path`` (created if needed); existing files are replaced."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        for name, data in self.files().items():
            tmp = root / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, root / name)  # never leave a half-written file under the real name
        return root


def _bounds(day: str | date) -> tuple[int, int]:
    if isinstance(day, str) and not re.match(r"^\d{4}-\d{2}-\d{2}\Z", day):
        raise PackageError(f"day: {day!r} is not a date; write it as YYYY-MM-DD")
    try:
        return day_bounds_us(day)
    except (TypeError, ValueError):
        raise PackageError(f"day: {day!r} is not a date; write it as YYYY-MM-DD") from None


__all__ = [
    "ALGORITHM", "CONTEXT_FILE", "CONTEXT_FORMAT", "FORMAT", "LEDGER_FILE", "MAX_STATEMENT_BYTES", "PROOF_FILE",
    "PROVIDERS_FILE", "Package", "PackageError", "PackageLoadError", "REPORT_FILE", "SPEC_FILES",
    "StatementTooLarge", "build_statement", "compute_proof_id", "interval_of", "ledger_entries_bytes",
    "ledger_totals", "loads_strict", "package_json", "previous_link", "provider_records_bytes",
    "signature_entry", "split_lines", "statement_bytes", "statement_sha256", "totals_rows",
]
