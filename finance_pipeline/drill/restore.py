"""The restore drill: does a restored ledger database still prove what was published?

For every proof in the restored database's registry (the ``proofs`` table), the drill reads
the published package from its location, regenerates the day's statement from the restored
ledger - the same extract and bundle code the ``proof_package`` asset runs - and compares the
canonical statement bytes with the published ones, byte for byte.

What comes from where:

* ledger entries (the day, widened by the published time tolerance for the boundary
  context): the restored database, ``extract_day_lines``;
* provider records and the reconciliation report: the published package (they are what the
  reconciliation read and produced on the day; the drill tests the ledger, not the providers);
* tolerances: the published ``reconciliation_context.json``;
* the ``previous`` link: the published statement.

A day matches when every package registered for it regenerates to identical statement bytes
and its registry row agrees with the package (proof id, statement hash, Merkle root). Nothing
is written anywhere: the drill only reads the restored database and the packages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

MATCH, MISMATCH, ERROR = "match", "mismatch", "error"


@dataclass
class PackageCheck:
    """One registered package of one day."""

    day: str
    proof_id: str
    location: str
    status: str
    published_statement_sha256: str | None = None
    regenerated_statement_sha256: str | None = None
    differences: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class DayResult:
    day: str
    status: str
    packages: list[PackageCheck]


@dataclass
class DrillReport:
    database: str  # the restored database's URL, password hidden
    days: list[DayResult]
    format: str = "finance-restore-drill/1"

    @property
    def matched(self) -> list[str]:
        return [d.day for d in self.days if d.status == MATCH]

    @property
    def mismatched(self) -> list[str]:
        return [d.day for d in self.days if d.status == MISMATCH]

    @property
    def errors(self) -> list[str]:
        return [d.day for d in self.days if d.status == ERROR]

    @property
    def ok(self) -> bool:
        return bool(self.days) and all(d.status == MATCH for d in self.days)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "database": self.database, "ok": self.ok,
            "matched": self.matched, "mismatched": self.mismatched, "errors": self.errors,
            "days": [asdict(d) for d in self.days],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def markdown(self) -> str:
        rows = ["| day | result | proof | detail |", "| --- | --- | --- | --- |"]
        for d in self.days:
            for p in d.packages:
                detail = p.error or ("; ".join(p.differences) if p.differences else "statement bytes identical")
                rows.append(f"| {d.day} | {p.status.upper()} | `{p.proof_id}` | {detail.replace('|', '/')} |")
        if not self.days:
            rows.append("| - | - | - | no published proof in the restored registry |")
        return "\n".join(rows)


class DrillError(RuntimeError):
    """The drill cannot run at all (unreachable database, no ledger schema)."""


def _redacted(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported by the engine, not here
        return "<unparseable url>"


def _diff_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths of the members whose values differ between two JSON documents."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                out.append(sub)
            else:
                out.extend(_diff_paths(a[key], b[key], sub))
        return out
    return [] if a == b else [path or "<statement>"]


def _line_diff(name: str, published: bytes | None, regenerated: bytes) -> str | None:
    if published == regenerated:
        return None
    old = (published or b"").split(b"\n")
    new = regenerated.split(b"\n")
    changed = [i for i in range(max(len(old), len(new)))
               if i >= len(old) or i >= len(new) or old[i] != new[i]]
    first = changed[0] + 1 if changed else 0
    return f"{name}: {len(changed)} line(s) differ, first at line {first}"


def provider_frames(provider_records: bytes, context: dict | None = None):
    """The frames the reconciliation read, rebuilt from the published records and context."""
    from finance_pipeline.export.replay import provider_frames as frames

    return frames([json.loads(line) for line in provider_records.decode("utf-8").splitlines() if line],
                  (context or {}).get("stripe_payouts"))


def regenerate(engine: sa.Engine, pkg) -> tuple[dict, dict[str, bytes]]:
    """The statement (and data files) the restored ledger gives for the package's day."""
    from finance_pipeline.domain.timeutil import parse_ts_us, recon_window_us
    from finance_pipeline.export.prove import prove_day
    from finance_pipeline.ledger.extract import extract_day_lines, extract_entries_lines
    from finance_pipeline.proof.package import CONTEXT_FILE
    from finance_pipeline.reconciliation.engine import Tolerances

    statement = pkg.statement()
    day = statement["interval"]["from"][:10]
    if CONTEXT_FILE not in pkg.extra_files:
        raise DrillError(f"the package lacks {CONTEXT_FILE}, so its tolerances are unknown")
    context = json.loads(pkg.extra_files[CONTEXT_FILE])
    tol_doc = context["tolerances"]
    tol = Tolerances(time_s=int(tol_doc["time_s"]), amount_minor=int(tol_doc["amount_minor"]),
                     per_class_minor={k: int(v) for k, v in tol_doc["per_class_minor"].items()})
    w_lo, w_hi = recon_window_us(day, tol.time_s)
    # The window alone, not extract_day: its continuation entries are read below by id, as
    # the package names them.
    lines = extract_day_lines(engine, w_lo, w_hi)
    # The entries beyond the window that the reconciliation read (the rest of a claim, a
    # followed reference), read back by id from the restored database: exactly the ones the
    # package names, so an entry posted after publication does not count as a difference.
    followed = {e.get("journal_id") for e in context.get("boundary_entries", [])
                if isinstance(e, dict) and not (w_lo <= parse_ts_us(str(e.get("ts"))) < w_hi)}
    counterparts = extract_entries_lines(engine, {j for j in followed if isinstance(j, str)})
    stripe, payouts, stripe_payouts = provider_frames(pkg.provider_records or b"", context)
    report = json.loads(pkg.reconciliation_report)
    bundle = prove_day(day, lines, stripe, payouts, report, tol, statement["previous"],
                       counterparts=counterparts, stripe_payouts=stripe_payouts)
    return bundle.statement, bundle.files


def check_package(engine: sa.Engine, record, s3_client: Any | None = None) -> PackageCheck:
    """Regenerate one registered package's statement and compare it byte for byte."""
    from finance_pipeline.proof.package import CONTEXT_FILE, LEDGER_FILE, sha256_hex, statement_bytes
    from finance_pipeline.publication import load_package

    check = PackageCheck(day=record.day, proof_id=record.proof_id, location=record.location, status=ERROR)
    try:
        pkg = load_package(record.location, s3_client=s3_client)
        published = pkg.statement()
        published_bytes = statement_bytes(published)
        check.published_statement_sha256 = sha256_hex(published_bytes)
        regenerated, files = regenerate(engine, pkg)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding of the drill
        check.error = f"{type(exc).__name__}: {exc}"
        return check
    regenerated_bytes = statement_bytes(regenerated)
    check.regenerated_statement_sha256 = sha256_hex(regenerated_bytes)
    if regenerated_bytes != published_bytes:
        check.differences.extend(f"statement.{p}" for p in _diff_paths(published, regenerated))
        for name, data in ((LEDGER_FILE, pkg.ledger_entries), (CONTEXT_FILE, pkg.extra_files.get(CONTEXT_FILE))):
            diff = _line_diff(name, data, files[name])
            if diff:
                check.differences.append(diff)
    for what, registered, in_package in (
        ("proof_id", record.proof_id, published.get("proof_id")),
        ("statement_sha256", record.statement_sha256, check.published_statement_sha256),
        ("merkle_root", record.merkle_root, published.get("ledger", {}).get("merkle_root")),
    ):
        if registered != in_package:
            check.differences.append(f"registry.{what}: the restored row says {registered}, the package {in_package}")
    check.status = MISMATCH if check.differences else MATCH
    return check


def published_records(engine: sa.Engine, days: list[str] | None = None) -> list:
    """Registry rows of the restored database, by day then publication time."""
    from finance_pipeline.export.registry import ProofRecord
    from finance_pipeline.ledger.schema import proofs

    query = sa.select(proofs).order_by(proofs.c.day, proofs.c.published_at_us, proofs.c.proof_id)
    if days:
        query = query.where(proofs.c.day.in_(sorted(set(days))))
    try:
        with engine.connect() as conn:
            return [ProofRecord(**row._mapping) for row in conn.execute(query)]
    except sa.exc.SQLAlchemyError as exc:
        raise DrillError(f"cannot read the proof registry of the restored database: "
                         f"{str(exc).splitlines()[0]}") from None


def run_restore_drill(restored_database_url: str, days: list[str] | None = None,
                      s3_client: Any | None = None, *, aws_endpoint_url: str | None = None,
                      aws_region: str | None = None) -> DrillReport:
    """Check every published day (or only ``days``) against the restored database.

    ``restored_database_url`` may be an ``aws-sm://`` reference (resolved here). Days asked for
    but absent from the restored registry are reported as errors: a restore that lost them
    must not pass. Secrets Manager and S3 (without ``s3_client``) are reached at
    ``aws_endpoint_url`` in ``aws_region``.
    """
    from finance_pipeline.ledger.engine import create_ledger_engine
    from finance_pipeline.secrets import resolve_secret

    url = resolve_secret(restored_database_url, endpoint_url=aws_endpoint_url, region=aws_region)
    engine = create_ledger_engine(url)
    try:
        records = published_records(engine, days)
        if s3_client is None and any(r.location.startswith("s3://") for r in records):
            from finance_pipeline.publication.s3 import s3_client as make_s3_client

            s3_client = make_s3_client(aws_endpoint_url, aws_region)
        by_day: dict[str, list[PackageCheck]] = {}
        for record in records:
            by_day.setdefault(record.day, []).append(check_package(engine, record, s3_client))
    finally:
        engine.dispose()
    results = []
    for day in sorted(set(by_day) | set(days or [])):
        checks = by_day.get(day, [])
        if not checks:
            checks = [PackageCheck(day=day, proof_id="-", location="-", status=ERROR,
                                   error="no proof for this day in the restored registry")]
        statuses = {c.status for c in checks}
        status = ERROR if ERROR in statuses else (MISMATCH if MISMATCH in statuses else MATCH)
        results.append(DayResult(day=day, status=status, packages=checks))
    return DrillReport(database=_redacted(url), days=results)
