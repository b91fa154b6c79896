"""Re-run a day's reconciliation from a published bundle and compare the report's bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from finance_pipeline.domain.timeutil import parse_ts_us
from finance_pipeline.proof.package import CONTEXT_FILE, LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE


@dataclass
class ReplayResult:
    identical: bool
    published: bytes
    replayed: bytes


class ReplayError(ValueError):
    """The bundle lacks what a replay needs."""


class UnsignedInputError(ReplayError):
    """A file the replay would read is not the one the signed statement vouches for."""


# Each input of the replay and the statement member that signs its hash.
_SIGNED = {LEDGER_FILE: ("ledger", "file_sha256"), PROVIDERS_FILE: ("providers", "file_sha256"),
           REPORT_FILE: ("reconciliation", "report_sha256"),
           CONTEXT_FILE: ("reconciliation", "context_sha256")}


def _check_signed(files: dict[str, bytes]) -> None:
    """Every input is the file the statement signs: a replay of other bytes proves nothing.
    (The signatures themselves are `verify`'s to check.)"""
    import hashlib

    from finance_pipeline.proof.package import PROOF_FILE, PackageError, loads_strict

    if PROOF_FILE not in files:
        raise ReplayError(f"bundle lacks {PROOF_FILE}, so nothing says which files were signed")
    try:
        statement = loads_strict(files[PROOF_FILE])["statement"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, PackageError) as exc:
        raise ReplayError(f"{PROOF_FILE} is not a package statement ({exc})") from None
    for name, (section, member) in _SIGNED.items():
        signed = statement.get(section, {}).get(member) if isinstance(statement.get(section), dict) else None
        actual = hashlib.sha256(files[name]).hexdigest()
        if signed != actual:
            raise UnsignedInputError(
                f"{name} hashes to {actual} but the statement signs {section}.{member} = {signed!r}: "
                "it is not the file that was published, so the replay would prove nothing")


def _jsonl(data: bytes, name: str) -> list[dict]:
    try:
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    except ValueError as exc:
        raise ReplayError(f"{name}: not JSON lines ({exc})") from None


def provider_frames(records: list[dict], stripe_payouts: list[dict] | None = None):
    """The frames the reconciliation read, rebuilt from the published provider records and the
    context's Stripe payout objects: Stripe's balance transactions, the payout provider's
    records, Stripe's payouts (None without any)."""
    from finance_pipeline.providers.payout_pull import settlements_frame
    from finance_pipeline.providers.stripe_payouts import payouts_frame
    from finance_pipeline.providers.stripe_pull import balance_transactions_frame

    stripe, payouts = [], []
    for rec in records:
        rec = dict(rec)
        provider = rec.pop("provider")
        (stripe if provider == "stripe" else payouts).append(rec)
    stripe_payouts = list(stripe_payouts or [])
    return (balance_transactions_frame(stripe), settlements_frame(payouts),
            payouts_frame(stripe_payouts) if stripe_payouts else None)


def replay_files(files: dict[str, bytes]) -> ReplayResult:
    from finance_pipeline.reconciliation import Tolerances, build_report, reconcile, report_bytes
    from finance_pipeline.reconciliation.inputs import lines_frame

    missing = [n for n in (LEDGER_FILE, PROVIDERS_FILE, REPORT_FILE, CONTEXT_FILE) if n not in files]
    if missing:
        raise ReplayError(f"bundle lacks {', '.join(missing)}")
    _check_signed(files)
    try:
        context = json.loads(files[CONTEXT_FILE])
        tol = Tolerances(time_s=int(context["tolerances"]["time_s"]),
                         amount_minor=int(context["tolerances"]["amount_minor"]),
                         per_class_minor=dict(context["tolerances"]["per_class_minor"]))
        boundary, roles = list(context["boundary_entries"]), context["account_roles"]
        day_payouts = list(context.get("stripe_payouts", []))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ReplayError(f"{CONTEXT_FILE} is not a reconciliation context ({type(exc).__name__}: {exc})") from None
    entries = _jsonl(files[LEDGER_FILE], LEDGER_FILE) + boundary
    lines = lines_frame(entries, roles)
    stripe, payouts, stripe_payouts = provider_frames(_jsonl(files[PROVIDERS_FILE], PROVIDERS_FILE), day_payouts)
    lo = parse_ts_us(context["interval"]["from"])
    hi = parse_ts_us(context["interval"]["to"])
    rec = reconcile(lines, stripe, payouts, lo, hi, tol, stripe_payouts)
    replayed = report_bytes(build_report(rec))
    return ReplayResult(replayed == files[REPORT_FILE], files[REPORT_FILE], replayed)


def replay_dir(path: Path) -> ReplayResult:
    path = Path(path)
    if not path.is_dir():
        raise ReplayError(f"{path}: not a directory; pass the folder of one day's package")
    return replay_files({p.name: p.read_bytes() for p in path.iterdir() if p.is_file()})
