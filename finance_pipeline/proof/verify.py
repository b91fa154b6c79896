"""The offline verifier of `finance-proof/1` packages.

It reads nothing but the package's files and a keyring, and reports a fixed list of named
checks in a stable order (`CHECKS`), each passed, failed or skipped (skipped only when it
cannot run: the statement did not parse, or a file is absent and ``require_files`` is off).
Keys named inside a package are never trusted: only keyring keys count.

The checks of the two data files are written here leaf by leaf and record by record. A valid
file of a million leaves is proven valid column-wise instead (``columnar.try_ledger`` and
``columnar.try_providers``, finance_pipeline/columnar/verify.py); they return None for any file
they cannot prove valid, and the checks here run and say what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from finance_pipeline.columnar import verify as columnar
from finance_pipeline.domain.canonical import CanonicalJSONError, canonical_bytes
from finance_pipeline.domain.journal import JournalEntry, JournalValidationError, parse_entry
from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.proof.keyring import Keyring, KeyringKey
from finance_pipeline.proof.merkle import tree_head_of_lines
from finance_pipeline.proof.package import (
    ALGORITHM,
    CONTEXT_FILE,
    FORMAT,
    LEDGER_FILE,
    MAX_STATEMENT_BYTES,
    PROOF_FILE,
    PROVIDERS_FILE,
    REPORT_FILE,
    Package,
    PackageError,
    compute_proof_id,
    interval_of,
    ledger_totals,
    loads_strict,
    previous_link,
    sha256_hex,
    split_lines,
)

REPORT_FORMAT = "finance-reconciliation/1"
CHECKS = (
    "proof_package.parse", "statement.size", "proof_id",
    "ledger.file_sha256", "ledger.entries", "ledger.lines", "ledger.merkle_root",
    "ledger.leaves", "ledger.totals",
    "providers.file_sha256", "providers.records", "providers.order",
    "reconciliation.report_sha256", "reconciliation.summary", "reconciliation.context_sha256",
    "package.files",
    "signatures", "quorum",
)
PREVIOUS_CHECK = "previous"
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_DAY_START = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00Z\Z")
_MAX_LISTED = 5  # problems named per check; the rest are counted


@dataclass(frozen=True)
class Computed:
    """The tree head a caller computed over these very bytes (``data``, checked by identity),
    so a package that was just built is checked without building its Merkle tree twice.

    Only ``data`` itself (the same object) is covered; any other bytes get their tree built as
    usual. The same deterministic code over the same bytes gives the same head, so the
    check's outcome is unchanged. File hashes are always computed (cheap, off the GIL). An
    auditor's verification never passes this.
    """

    data: bytes
    merkle_root: bytes


def _computed(computed: dict[str, Computed], file: str, data: bytes | None) -> Computed | None:
    known = computed.get(file)
    return known if known is not None and data is not None and known.data is data else None


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else ("ok" if self.ok else "FAIL")


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)
    proof_id: str | None = None
    statement: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def text(self) -> str:
        verdict = "VALID" if self.ok else "INVALID (failed: " + ", ".join(self.failed) + ")"
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"proof {self.proof_id or '?'}: {verdict}"]
        lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.detail}".rstrip() for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "proof_id": self.proof_id, "failed": self.failed,
                "checks": [{"name": c.name, "status": c.status, "ok": c.ok, "detail": c.detail}
                           for c in self.checks]}


def _listed(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    return shown + (f"; and {more} more" if more > 0 else "")


def _member(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


_MISSING = object()


def _hex_field(statement: dict, dotted: str) -> tuple[str | None, str]:
    value = _member(statement, f"{dotted}")
    if not isinstance(value, str) or not _HEX64.match(value):
        return None, f"statement.{dotted} is missing or not 64 lowercase hex digits"
    return value, ""


def _int_field(statement: dict, dotted: str) -> tuple[int | None, str]:
    value = _member(statement, dotted)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None, f"statement.{dotted} is missing or not a non-negative integer"
    return value, ""


class _Run:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, bool(ok), detail))

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, True, why, skipped=True))


def _parse_statement(pkg: Package) -> tuple[dict | None, dict | None, bytes | None, str]:
    """(document, statement, S, problem)."""
    if pkg.proof_package is None:
        return None, None, None, f"{PROOF_FILE} is missing"
    try:
        # floats are valid JSON; the canonicalization below says why they are refused
        doc = loads_strict(pkg.proof_package, allow_float=True)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, None, None, f"{PROOF_FILE} is not valid JSON: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("statement"), dict):
        return None, None, None, f"{PROOF_FILE} has no statement object"
    st = doc["statement"]
    if st.get("format") != FORMAT:
        return doc, None, None, f"statement.format is {st.get('format')!r}, expected {FORMAT!r}"
    try:
        s_bytes = canonical_bytes(st)
    except (CanonicalJSONError, UnicodeEncodeError, RecursionError) as exc:
        return doc, None, None, f"statement cannot be canonicalized (RFC 8785): {type(exc).__name__}: {exc}"
    frm, to = _member(st, "interval.from"), _member(st, "interval.to")
    try:
        day_ok = isinstance(frm, str) and bool(_DAY_START.match(frm)) and to == interval_of(frm[:10])["to"]
    except (ValueError, PackageError):  # a date that does not exist, such as 2026-02-30
        day_ok = False
    if not day_ok:
        return doc, None, None, (f"statement.interval must be one UTC day "
                                 f"{{from: D T00:00:00Z, to: D+1 T00:00:00Z}}, got {frm!r} .. {to!r}")
    return doc, st, s_bytes, ""


def verify_package(pkg: Package, keyring: Keyring, *, require_files: bool = True,
                   previous_package: Package | None = None,
                   computed: dict[str, Computed] | None = None) -> VerifyResult:
    """Run every check of `CHECKS` (and ``previous`` when a previous package is given).
    ``computed``: tree heads the caller computed over these files' very bytes (`Computed`)."""
    run = _Run()
    doc, st, s_bytes, problem = _parse_statement(pkg)
    names = CHECKS + ((PREVIOUS_CHECK,) if previous_package is not None else ())
    if st is None:
        run.add("proof_package.parse", False, problem)
        for name in names[1:]:
            run.skip(name, "not run: proof_package.parse failed")
        return VerifyResult(run.checks)
    interval = st["interval"]
    run.add("proof_package.parse", True, f"{FORMAT}, {interval['from']} .. {interval['to']}")
    result = VerifyResult(run.checks, st.get("proof_id") if isinstance(st.get("proof_id"), str) else None, st)

    run.add("statement.size", len(s_bytes) <= MAX_STATEMENT_BYTES,
            f"{len(s_bytes)} bytes (limit {MAX_STATEMENT_BYTES})")

    expected_id = compute_proof_id(st)
    run.add("proof_id", st.get("proof_id") == expected_id,
            expected_id if st.get("proof_id") == expected_id
            else f"statement says {st.get('proof_id')!r}, recomputed {expected_id}")

    # Whatever the files hold, every check ends as a named verdict, never a traceback.
    with _Work(pkg, st, computed or {}) as work:
        _guarded(run, _LEDGER_CHECKS, _ledger_checks, pkg.ledger_entries, st, require_files, work)
        _guarded(run, _PROVIDER_CHECKS, _provider_checks, pkg.provider_records, st, require_files, work)
    _guarded(run, ("reconciliation.report_sha256", "reconciliation.summary"), _report_checks,
             pkg.reconciliation_report, st, require_files)
    _guarded(run, ("reconciliation.context_sha256",), _context_check, pkg.extra_files.get(CONTEXT_FILE), st)
    _guarded(run, ("package.files",), _files_check, pkg)
    _guarded(run, ("signatures", "quorum"), _signature_checks, doc, s_bytes, keyring)
    if previous_package is not None:
        _guarded(run, (PREVIOUS_CHECK,), _previous_check, st, previous_package)
    return result


_LEDGER_CHECKS = ("ledger.file_sha256", "ledger.entries", "ledger.lines", "ledger.merkle_root",
                  "ledger.leaves", "ledger.totals")
_PROVIDER_CHECKS = ("providers.file_sha256", "providers.records", "providers.order")


def _guarded(run: _Run, names: tuple[str, ...], check, *args: Any) -> None:
    """Run one group of checks; an error they did not foresee fails the checks not yet given."""
    before = len(run.checks)
    try:
        check(run, *args)
    except Exception as exc:  # noqa: BLE001 - hostile input must end as a verdict
        done = {c.name for c in run.checks[before:]}
        reason = f"{type(exc).__name__}: {exc}"
        for name in names:
            if name not in done:
                run.add(name, False, f"could not be checked on these bytes ({reason[:200]})")


class _Work:
    """The heavy computations over the two data files, started together on a few threads
    (Arrow's kernels and hashlib release the GIL), taken in the checks' order."""

    def __init__(self, pkg: Package, st: dict, computed: dict[str, Computed]) -> None:
        self._pool = None
        self._futures: dict[str, Any] = {}
        self._known: dict[str, Any] = {}
        known = _computed(computed, LEDGER_FILE, pkg.ledger_entries)
        if known is not None:
            self._known["root"] = known.merkle_root
        if not columnar.ENABLED:
            return
        from concurrent.futures import ThreadPoolExecutor

        ledger, providers = pkg.ledger_entries, pkg.provider_records
        self._pool = ThreadPoolExecutor(max_workers=3)
        if ledger is not None:
            lo, hi = parse_ts_us(st["interval"]["from"]), parse_ts_us(st["interval"]["to"])
            self._futures["ledger"] = self._pool.submit(columnar.try_ledger, ledger, lo, hi)
            if "root" not in self._known:
                self._futures["root"] = self._pool.submit(tree_head_of_lines, ledger)
        if providers is not None:
            self._futures["providers"] = self._pool.submit(columnar.try_providers, providers)

    def get(self, name: str, compute):
        if name in self._known:
            return self._known[name]
        future = self._futures.get(name)
        return future.result() if future is not None else compute()

    def __enter__(self) -> "_Work":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)



def _absent(run: _Run, names: tuple[str, ...], file: str, require_files: bool) -> None:
    for name in names:
        if require_files:
            run.add(name, False, f"{file} is missing")
        else:
            run.skip(name, f"{file} not provided")


def _compare_hash(run: _Run, name: str, st: dict, dotted: str, data: bytes, file: str) -> None:
    want, err = _hex_field(st, dotted)
    got = sha256_hex(data)
    if want is None:
        run.add(name, False, err)
    else:
        run.add(name, want == got, got if want == got else f"statement says {want}, {file} hashes to {got}")


def _compare_int(run: _Run, name: str, st: dict, dotted: str, got: int | None, what: str,
                 why_unknown: str = "") -> None:
    want, err = _int_field(st, dotted)
    if want is None:
        run.add(name, False, err)
    elif got is None:
        run.add(name, False, why_unknown)
    else:
        run.add(name, want == got, f"{got} {what}" if want == got else f"statement says {want}, found {got} {what}")


def _newline_problem(data: bytes, file: str) -> list[str]:
    return [f"{file} does not end with a newline"] if data and not data.endswith(b"\n") else []


def _ledger_checks(run: _Run, data: bytes | None, st: dict, require_files: bool, work: _Work | None = None) -> None:
    names = ("ledger.file_sha256", "ledger.entries", "ledger.lines", "ledger.merkle_root",
             "ledger.leaves", "ledger.totals")
    if data is None:
        _absent(run, names, LEDGER_FILE, require_files)
        return
    _compare_hash(run, "ledger.file_sha256", st, "ledger.file_sha256", data, LEDGER_FILE)
    lo = parse_ts_us(st["interval"]["from"])
    hi = parse_ts_us(st["interval"]["to"])
    # The columnar path's verdict on a file it proves valid; None: the checks below decide.
    fast = work.get("ledger", lambda: columnar.try_ledger(data, lo, hi)) if work else columnar.try_ledger(data, lo, hi)
    root = work.get("root", lambda: tree_head_of_lines(data)) if work else tree_head_of_lines(data)
    if fast is not None:
        count, line_count, got_totals = fast
        _compare_int(run, "ledger.entries", st, "ledger.entries", count, "entries")
        _compare_int(run, "ledger.lines", st, "ledger.lines", line_count, "journal lines")
        _merkle_check(run, st, root)
        run.add("ledger.leaves", True, f"{count} canonical entries in order, inside the interval")
        _totals_check(run, st, got_totals)
        return
    leaves = split_lines(data)
    _compare_int(run, "ledger.entries", st, "ledger.entries", len(leaves), "entries")

    problems = _newline_problem(data, LEDGER_FILE)
    entries: list[JournalEntry | None] = []
    line_count: int | None = 0
    seen: set[str] = set()
    prev_key: tuple[int, str] | None = None
    for i, leaf in enumerate(leaves):
        entry, obj = None, None
        try:
            obj = loads_strict(leaf)
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"line {i + 1}: not JSON ({exc})")
        if isinstance(obj, dict) and isinstance(obj.get("lines"), list):
            if line_count is not None:
                line_count += len(obj["lines"])
        else:
            line_count = None
        if obj is not None:
            try:
                entry = parse_entry(obj)
            except JournalValidationError as exc:
                problems.append(f"line {i + 1}: {exc}")
        entries.append(entry)
        if entry is None:
            continue
        if entry.leaf_bytes() != leaf:
            problems.append(f"line {i + 1} ({entry.journal_id}): not the RFC 8785 canonical form of "
                            "the eleven-member entry")
        if not lo <= entry.ts_us < hi:
            problems.append(f"line {i + 1} ({entry.journal_id}): ts {entry.ts} is outside the interval")
        if entry.journal_id in seen:
            problems.append(f"line {i + 1}: journal_id {entry.journal_id} appears twice")
        seen.add(entry.journal_id)
        key = (entry.ts_us, entry.journal_id)
        if prev_key is not None and key < prev_key:
            problems.append(f"line {i + 1} ({entry.journal_id}): out of order (by ts, then journal_id)")
        prev_key = key

    _compare_int(run, "ledger.lines", st, "ledger.lines", line_count, "journal lines",
                 "cannot count journal lines: some ledger lines are not entries with a lines list")
    _merkle_check(run, st, root)
    run.add("ledger.leaves", not problems,
            _listed(problems) if problems else f"{len(leaves)} canonical entries in order, inside the interval")

    if any(e is None for e in entries):
        run.add("ledger.totals", False, "cannot total: some ledger lines are not valid entries")
    else:
        _totals_check(run, st, ledger_totals(e for e in entries if e is not None))


def _merkle_check(run: _Run, st: dict, head: bytes) -> None:
    root = head.hex()
    want, err = _hex_field(st, "ledger.merkle_root")
    if want is None:
        run.add("ledger.merkle_root", False, err)
    else:
        run.add("ledger.merkle_root", want == root,
                root if want == root else f"statement says {want}, tree head of {LEDGER_FILE} is {root}")


def _totals_check(run: _Run, st: dict, got: list[dict]) -> None:
    claimed = _member(st, "ledger.totals")
    shown = ", ".join(f"{t['currency']} {t['debits_minor']}/{t['credits_minor']}" for t in got) or "none"
    run.add("ledger.totals", claimed == got,
            f"debits/credits {shown}" if claimed == got
            else f"statement says {'nothing' if claimed is _MISSING else repr(claimed)}, "
                 f"entries total {got!r}")


def _provider_checks(run: _Run, data: bytes | None, st: dict, require_files: bool,
                     work: _Work | None = None) -> None:
    names = ("providers.file_sha256", "providers.records", "providers.order")
    if data is None:
        _absent(run, names, PROVIDERS_FILE, require_files)
        return
    _compare_hash(run, "providers.file_sha256", st, "providers.file_sha256", data, PROVIDERS_FILE)
    # As for the ledger: a count when the columnar path proves the file valid, else None.
    count = work.get("providers", lambda: columnar.try_providers(data)) if work else columnar.try_providers(data)
    if count is not None:
        _compare_int(run, "providers.records", st, "providers.records", count, "records")
        run.add("providers.order", True, f"{count} canonical records ordered by (provider, id)")
        return
    lines = split_lines(data)
    _compare_int(run, "providers.records", st, "providers.records", len(lines), "records")
    problems = _newline_problem(data, PROVIDERS_FILE)
    prev: tuple[str, str] | None = None
    for i, line in enumerate(lines):
        try:
            rec = loads_strict(line)
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"line {i + 1}: not JSON ({exc})")
            continue
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("provider", "id")):
            problems.append(f"line {i + 1}: needs string members provider and id")
            continue
        try:
            canonical = canonical_bytes(rec) == line
        except CanonicalJSONError:
            canonical = False
        if not canonical:
            problems.append(f"line {i + 1}: not RFC 8785 canonical JSON")
        key = (rec["provider"], rec["id"])
        if prev is not None and key <= prev:
            problems.append(f"line {i + 1} ({key[0]}, {key[1]}): "
                            + ("repeats the previous record" if key == prev else "out of (provider, id) order"))
        prev = key
    run.add("providers.order", not problems,
            _listed(problems) if problems else f"{len(lines)} canonical records ordered by (provider, id)")


def _context_check(run: _Run, data: bytes | None, st: dict) -> None:
    """`reconciliation_context.json` hashes to `reconciliation.context_sha256`; either both
    are there or neither (a context file the statement does not sign is refused)."""
    name = "reconciliation.context_sha256"
    signed = _member(st, "reconciliation.context_sha256") is not _MISSING
    if not signed and data is None:
        run.add(name, True, f"no {CONTEXT_FILE} (optional)")
    elif not signed:
        run.add(name, False, f"{CONTEXT_FILE} is present but the statement has no "
                             "reconciliation.context_sha256 to vouch for it")
    elif data is None:
        run.add(name, False, f"the statement signs reconciliation.context_sha256 but {CONTEXT_FILE} is missing")
    else:
        _compare_hash(run, name, st, "reconciliation.context_sha256", data, CONTEXT_FILE)


def _files_check(run: _Run, pkg: Package) -> None:
    """No file is part of a package but those of the format: anything else is unsigned."""
    extra = sorted(n for n in pkg.extra_files if n != CONTEXT_FILE) + sorted(pkg.foreign)
    if extra:
        shown = ", ".join(repr(n) for n in extra[:_MAX_LISTED])
        more = f" and {len(extra) - _MAX_LISTED} more" if len(extra) > _MAX_LISTED else ""
        run.add("package.files", False, f"files that are not part of the format (unsigned): {shown}{more}")
    else:
        run.add("package.files", True, "only the files of the format")


def _report_checks(run: _Run, data: bytes | None, st: dict, require_files: bool) -> None:
    names = ("reconciliation.report_sha256", "reconciliation.summary")
    if data is None:
        _absent(run, names, REPORT_FILE, require_files)
        return
    _compare_hash(run, "reconciliation.report_sha256", st, "reconciliation.report_sha256", data, REPORT_FILE)
    problems: list[str] = []
    matched, err_m = _int_field(st, "reconciliation.matched")
    total, err_d = _int_field(st, "reconciliation.discrepancies")
    problems += [e for e in (err_m, err_d) if e]
    try:
        report = loads_strict(data)
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        run.add("reconciliation.summary", False, f"{REPORT_FILE} is not a JSON object ({exc})")
        return
    if report.get("format") != REPORT_FORMAT:
        problems.append(f"report format is {report.get('format')!r}, expected {REPORT_FORMAT!r}")
    if report.get("interval") != st["interval"]:
        problems.append(f"report interval {report.get('interval')!r} differs from the statement's")
    r_matched = _member(report, "summary.matched")
    counts = _member(report, "summary.discrepancies")
    if isinstance(r_matched, bool) or not isinstance(r_matched, int):
        problems.append("report summary.matched is missing or not an integer")
    elif matched is not None and r_matched != matched:
        problems.append(f"report matched {r_matched}, statement {matched}")
    if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                               for v in counts.values()):
        problems.append("report summary.discrepancies is missing or not an object of integer counts")
    else:
        r_total = sum(counts.values())
        if total is not None and r_total != total:
            problems.append(f"report discrepancies total {r_total}, statement {total}")
        rows = report.get("discrepancies")
        if not isinstance(rows, list) or len(rows) != r_total:
            problems.append(f"report lists {len(rows) if isinstance(rows, list) else 'no'} discrepancies "
                            f"but its summary counts {r_total}")
    run.add("reconciliation.summary", not problems,
            _listed(problems) if problems else f"matched {matched}, discrepancies {total}, same interval")


def _signature_problem(sig: dict, key: KeyringKey, s_bytes: bytes) -> str:
    if sig.get("algorithm") != ALGORITHM:
        return f"algorithm is {sig.get('algorithm')!r}, expected {ALGORITHM}"
    if sig.get("role") != key.role:
        return f"role is {sig.get('role')!r} but the keyring gives this key the role {key.role!r}"
    text = sig.get("signature")
    if not isinstance(text, str):
        return "signature is missing"
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return "signature is not base64"
    if base64.b64encode(der).decode("ascii") != text:
        # lenient decoders ignore stray padding bits; insist on the one encoding of these bytes
        return "signature is not canonical base64"
    try:
        key.public_key.verify(der, s_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "does not verify over S (the statement's canonical bytes)"
    return ""


def _signature_checks(run: _Run, doc: dict, s_bytes: bytes, keyring: Keyring) -> None:
    sigs = doc.get("signatures")
    valid: dict[str, str] = {}
    problems: list[str] = []
    ignored: list[str] = []
    if not isinstance(sigs, list):
        problems.append(f"{PROOF_FILE} has no signatures list")
        sigs = []
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict) or not isinstance(sig.get("key_id"), str):
            problems.append(f"signatures[{i}] is not an object with a string key_id")
            continue
        key = keyring.get(sig["key_id"])
        if key is None:
            ignored.append(sig["key_id"])
            continue
        problem = _signature_problem(sig, key, s_bytes)
        if problem:
            problems.append(f"signatures[{i}] by {key.key_id}: {problem}")
        else:
            valid[key.key_id] = key.role
    note = f"; ignored (not in keyring): {', '.join(ignored)}" if ignored else ""
    if problems:
        run.add("signatures", False, _listed(problems) + note)
    else:
        run.add("signatures", True, f"{len(valid)} valid by keyring keys" + note)

    q = keyring.quorum
    roles = sorted(set(valid.values()))
    count = len(roles) if q.distinct_roles else len(valid)
    unit = "distinct roles" if q.distinct_roles else "keys"
    run.add("quorum", count >= q.min_signatures,
            f"{count} of {q.min_signatures} required {unit} "
            f"(valid: {', '.join(f'{k} [{r}]' for k, r in sorted(valid.items())) or 'none'})")


def _previous_check(run: _Run, st: dict, previous_package: Package) -> None:
    try:
        prev_st = previous_package.statement()
        expected = previous_link(prev_st)
        prev_to = prev_st["interval"]["to"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, CanonicalJSONError) as exc:
        run.add(PREVIOUS_CHECK, False, f"previous package's statement is unreadable ({exc})")
        return
    link = st.get("previous")
    problems = []
    if link != expected:
        problems.append(f"statement.previous is {link!r}, the previous package gives {expected!r}")
    if prev_to != st["interval"]["from"]:
        problems.append(f"previous interval ends {prev_to}, this one starts {st['interval']['from']}")
    run.add(PREVIOUS_CHECK, not problems,
            _listed(problems) if problems else f"chained to {expected['proof_id']}")


__all__ = ["CHECKS", "Check", "PREVIOUS_CHECK", "VerifyResult", "verify_package"]
