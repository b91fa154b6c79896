"""Re-run a day's reconciliation from a published bundle and compare the report's bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.export.bundle import CONTEXT_FILE, LEDGER_FILE, PROVIDER_FILE, REPORT_FILE


@dataclass
class ReplayResult:
    identical: bool
    published: bytes
    replayed: bytes


class ReplayError(ValueError):
    """The bundle lacks what a replay needs."""


def _jsonl(data: bytes, name: str) -> list[dict]:
    try:
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    except ValueError as exc:
        raise ReplayError(f"{name}: not JSON lines ({exc})") from None


def replay_files(files: dict[str, bytes]) -> ReplayResult:
    from finance_pipeline.providers.payout_pull import settlements_frame
    from finance_pipeline.providers.stripe_pull import balance_transactions_frame
    from finance_pipeline.reconciliation import Tolerances, build_report, reconcile, report_bytes
    from finance_pipeline.reconciliation.inputs import lines_frame

    missing = [n for n in (LEDGER_FILE, PROVIDER_FILE, REPORT_FILE, CONTEXT_FILE) if n not in files]
    if missing:
        raise ReplayError(f"bundle lacks {', '.join(missing)}")
    context = json.loads(files[CONTEXT_FILE])
    tol = Tolerances(time_s=int(context["tolerances"]["time_s"]),
                     amount_minor=int(context["tolerances"]["amount_minor"]),
                     per_class_minor=dict(context["tolerances"]["per_class_minor"]))
    entries = _jsonl(files[LEDGER_FILE], LEDGER_FILE) + list(context["boundary_entries"])
    lines = lines_frame(entries, context["account_roles"])
    stripe, payouts = [], []
    for rec in _jsonl(files[PROVIDER_FILE], PROVIDER_FILE):
        provider = rec.pop("provider")
        (stripe if provider == "stripe" else payouts).append(rec)
    lo = parse_ts_us(context["interval"]["from"])
    hi = parse_ts_us(context["interval"]["to"])
    rec = reconcile(lines, balance_transactions_frame(stripe), settlements_frame(payouts), lo, hi, tol)
    replayed = report_bytes(build_report(rec))
    return ReplayResult(replayed == files[REPORT_FILE], files[REPORT_FILE], replayed)


def replay_dir(path: Path) -> ReplayResult:
    path = Path(path)
    if not path.is_dir():
        raise ReplayError(f"{path}: not a directory; pass the folder of one day's package")
    return replay_files({p.name: p.read_bytes() for p in path.iterdir() if p.is_file()})
