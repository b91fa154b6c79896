"""Gate verdicts: which gates passed for exactly which inputs of a day.

Publication asks here, not the run it happens to be in: a proof may be materialized alone, in
a later run, by a backfill or a retry, and Dagster's blocking checks gate only the later steps
of their own run. A verdict names its inputs by digests of the stored bytes the gates read
(the ledger extract and the two provider pulls), of the report's canonical bytes and of the
settings the reconciliation and the parity gate used, so it vouches for nothing else.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from finance_pipeline.domain.canonical import canonical_bytes
from finance_pipeline.ledger.audit import now_us
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.schema import gate_verdicts

# The blocking gates, in the order they are reported.
GATES = ("ledger_suite", "provider_suites", "parity")
# The inputs a verdict covers, by name.
INPUTS = ("ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements",
          "ledger_counterparts", "reconciliation_report")


def check_command(day: str) -> str:
    """The command that runs every gate for ``day`` without publishing."""
    return f"finance-pipeline check {day} {day}"


class GatesNotPassedError(RuntimeError):
    """The gates did not pass for the inputs a proof would sign; nothing was signed."""


@dataclass(frozen=True)
class GateInputs:
    """What a day's gates ran on: digests of the inputs' bytes and the settings used."""

    day: str
    digests: Mapping[str, str]
    settings: Mapping[str, Any]

    def __post_init__(self) -> None:
        missing = [n for n in INPUTS if n not in self.digests]
        if missing:
            raise ValueError(f"gate inputs lack digests for {missing}")

    def document(self) -> dict[str, Any]:
        return {"day": self.day, "inputs": {n: self.digests[n] for n in INPUTS},
                "settings": dict(self.settings)}

    def sha256(self) -> str:
        return hashlib.sha256(canonical_bytes(self.document())).hexdigest()


@dataclass(frozen=True)
class Verdict:
    verdict_id: str
    day: str
    inputs_sha256: str
    passed: bool
    detail: dict[str, Any]
    run_id: str | None
    recorded_at_us: int

    @property
    def failed_gates(self) -> list[str]:
        return [name for name, gate in self.detail["gates"].items() if not gate["passed"]]

    def failed_expectations(self) -> list[str]:
        """One line per failed expectation, gate first."""
        return [f"{name}: {line}" for name, gate in self.detail["gates"].items() for line in gate["failed"]]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _failure_line(suite: str, failure: Any) -> str:
    where = f" [{failure.column}]" if failure.column else ""
    count = "" if failure.unexpected_count is None else f" ({failure.unexpected_count} unexpected)"
    return f"{suite} {failure.expectation}{where}{count}: {failure.description}"


def record(engine: sa.Engine, inputs: GateInputs, results: Mapping[str, Iterable[Any]],
           run_id: str | None = None) -> Verdict:
    """Store what every gate decided for ``inputs``; ``results`` maps a gate to its GateResults."""
    unknown = sorted(set(results) - set(GATES))
    missing = [g for g in GATES if g not in results]
    if unknown or missing:
        raise ValueError(f"a verdict needs exactly the gates {list(GATES)}: unknown {unknown}, missing {missing}")
    gates: dict[str, dict[str, Any]] = {}
    for name in GATES:
        parts = list(results[name])
        gates[name] = {
            "passed": bool(parts) and all(r.success for r in parts),
            "failed": [_failure_line(r.name, f) for r in parts for f in r.failures],
        }
    detail = {**inputs.document(), "gates": gates}
    verdict = Verdict(
        verdict_id=uuid.uuid4().hex, day=inputs.day, inputs_sha256=inputs.sha256(),
        passed=all(g["passed"] for g in gates.values()), detail=detail, run_id=run_id,
        recorded_at_us=now_us(),
    )
    with begin_write(engine) as conn:
        conn.execute(gate_verdicts.insert().values(
            verdict_id=verdict.verdict_id, day=verdict.day, inputs_sha256=verdict.inputs_sha256,
            passed=verdict.passed, detail=canonical_bytes(detail).decode(), run_id=run_id,
            recorded_at_us=verdict.recorded_at_us,
        ))
    return verdict


def _verdict(row: Any) -> Verdict:
    m = row._mapping
    return Verdict(verdict_id=m["verdict_id"], day=m["day"], inputs_sha256=m["inputs_sha256"],
                   passed=bool(m["passed"]), detail=json.loads(m["detail"]), run_id=m["run_id"],
                   recorded_at_us=int(m["recorded_at_us"]))


def latest(engine: sa.Engine, day: str, inputs_sha256: str | None = None) -> Verdict | None:
    """The newest verdict of ``day`` (for exactly those inputs when ``inputs_sha256`` is given)."""
    query = sa.select(gate_verdicts).where(gate_verdicts.c.day == day)
    if inputs_sha256 is not None:
        query = query.where(gate_verdicts.c.inputs_sha256 == inputs_sha256)
    query = query.order_by(gate_verdicts.c.recorded_at_us.desc(), gate_verdicts.c.verdict_id.desc()).limit(1)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _verdict(row) if row is not None else None


def require_passed(engine: sa.Engine, inputs: GateInputs) -> Verdict:
    """The passing verdict for exactly ``inputs``; else GatesNotPassedError saying why and what to run."""
    day = inputs.day
    verdict = latest(engine, day, inputs.sha256())
    if verdict is not None and verdict.passed:
        return verdict
    fix = (f"nothing was signed or published and {day} stays open. Correct the ledger as the runbook "
           f"says (adjusting entries through POST /finance/journal), then run the gates again: "
           f"`{check_command(day)}`")
    if verdict is not None:
        lines = verdict.failed_expectations()
        shown = "\n".join(f"  - {line}" for line in lines[:20])
        more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
        raise GatesNotPassedError(
            f"{day} is blocked: the gates {', '.join(verdict.failed_gates)} failed for exactly these "
            f"inputs (run {verdict.run_id or '-'}); {fix}.\nFailed expectations:\n{shown}{more}")
    other = latest(engine, day)
    if other is None:
        raise GatesNotPassedError(
            f"{day}: no gate results for these inputs, so the proof is not signed; run the gates "
            f"first: `{check_command(day)}` (or materialize the whole day, not proof_package alone)")
    changed = [name for name in INPUTS
               if other.detail["inputs"].get(name) != inputs.digests[name]]
    if other.detail.get("settings") != canonical_value(inputs.settings):
        changed.append("reconciliation settings")
    raise GatesNotPassedError(
        f"{day}: the gates last ran on other inputs ({', '.join(changed) or 'unknown'} changed since "
        f"run {other.run_id or '-'}), so the proof is not signed; run them again on what would be "
        f"published: `{check_command(day)}` (or materialize the whole day)")


def canonical_value(value: Any) -> Any:
    """``value`` as it reads back from canonical JSON (tuples become lists, and so on)."""
    return json.loads(canonical_bytes(value))
