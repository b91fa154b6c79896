"""Run the data-quality suites with Great Expectations 1.x and reduce the results to a GateResult.

GX is imported lazily (it takes seconds) and configured quietly: analytics off, no progress
bars, its loggers at WARNING unless the application set a level, no data-docs temp directory.
One ephemeral context per process is built on first use and cached; validations are serialised
by a process-wide lock (GX's context and stores are not thread-safe), so concurrent callers in
threads are safe but do not run in parallel. Validation results are dropped from the context's
in-memory store after each run, so a long-lived process does not accumulate them.

Samples in failures are at most five offending rows, the first ones in frame order (the frame's
index is replaced by positions before validation), restricted to identifying columns and
converted to plain JSON values.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from finance_pipeline.quality.gx import import_gx
from finance_pipeline.quality.suites import (
    JOURNAL_TOTALS_NEED,
    LEDGER,
    PARITY,
    PAYOUT,
    STRIPE,
    ParityPolicy,
    SuitePart,
    SuiteSpec,
    class_counts,
    journal_totals,
    stripe_frame,
)

if TYPE_CHECKING:  # pragma: no cover
    from great_expectations.core import ExpectationSuiteValidationResult

MAX_SAMPLES = 5
_MAX_TEXT = 200
# SUMMARY, not COMPLETE: we only need counts and the first few offending indices; COMPLETE
# materialises every unexpected value and index as Python lists (millions on a bad day).
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_SAMPLES,
    "return_unexpected_index_query": False,
}
# A part is first validated with BOOLEAN_ONLY (GX then computes no unexpected values or
# indices: half the time on a million rows) and only re-validated with RESULT_FORMAT when
# something failed, for the counts and samples of the failures. A passing part's result is
# the same either way.
QUICK_FORMAT: dict[str, Any] = {"result_format": "BOOLEAN_ONLY"}
_DATASOURCE = "finance_pipeline_quality"

__all__ = [
    "Failure", "GateResult", "ParityPolicy", "import_gx", "run_ledger_checks", "run_ledger_checks_in_pieces",
    "run_parity_checks", "run_payout_checks", "run_stripe_checks",
]


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Failure:
    """One failed expectation."""

    expectation: str
    column: str | None
    description: str
    unexpected_count: int | None
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "description": self.description,
            "unexpected_count": self.unexpected_count,
            "samples": [dict(s) for s in self.samples],
        }


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate: which suite and version, how many expectations, which failed."""

    name: str
    suite_version: str
    success: bool
    evaluated: int
    failures: list[Failure]
    rows: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe summary for Dagster metadata (plain str/int/bool/None/list/dict)."""
        meta: dict[str, Any] = {
            "suite": self.name,
            "suite_version": self.suite_version,
            "success": self.success,
            "rows": self.rows,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "failures": [f.to_dict() for f in self.failures],
        }
        if self.params:
            meta["params"] = self.params
        return meta

    def markdown(self) -> str:
        """A short Markdown summary: one table row per failed expectation."""
        head = f"**{self.name}** v{self.suite_version} ({self.rows} rows): "
        if self.success:
            return head + f"passed, {self.evaluated} expectations."
        lines = [
            head + f"**failed** {self.failed} of {self.evaluated} expectations.",
            "",
            "| expectation | column | unexpected | description |",
            "|---|---|---:|---|",
        ]
        for f in self.failures:
            count = "" if f.unexpected_count is None else str(f.unexpected_count)
            lines.append(
                f"| {_md(f.expectation)} | {_md(f.column or '')} | {count} | {_md(f.description)} |"
            )
        return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------
# GX, lazily and quietly

_LOCK = threading.RLock()
_RUNNER: _Runner | None = None


class _Runner:
    """The process's ephemeral GX context with one validation definition per suite."""

    def __init__(self) -> None:
        gx = import_gx()
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        self.gx = gx
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.datasource = self.context.data_sources.add_pandas(name=_DATASOURCE)
        self._validations: dict[str, Any] = {}

    def validation(self, spec: SuiteSpec, part: SuitePart, *args: Any, suffix: str = ""):
        name = spec.suite_name(part, suffix)
        vd = self._validations.get(name)
        if vd is None:
            gx = self.gx
            batch = self.datasource.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(
                name="whole"
            )
            suite = self.context.suites.add(gx.ExpectationSuite(
                name=name,
                expectations=part.build(*args),
                meta={"gate": spec.name, "suite_version": spec.version, "part": part.key},
            ))
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
            self._validations[name] = vd
        return vd

    def run(self, vd, frame: pd.DataFrame, result_format: dict[str, Any] | None = None
            ) -> ExpectationSuiteValidationResult:
        try:
            return vd.run(batch_parameters={"dataframe": frame}, result_format=result_format or RESULT_FORMAT)
        finally:
            store = self.context.validation_results_store
            for key in store.list_keys():
                store.remove_key(key)
            # The datasource's execution engine keeps every batch it loaded (the whole frame)
            # until the process ends: a day's extract and pulls, gigabytes, for nothing.
            batches = self.datasource.get_execution_engine().batch_manager
            batches.reset_batch_cache()
            batches.batch_data_cache.clear()


_WARMING: list[threading.Thread] = []
# Not _LOCK: the warm-up thread holds that one for the whole import, and a second caller (the
# run's next step) must not wait for it here.
_WARMING_LOCK = threading.Lock()


def warm_up() -> threading.Thread:
    """Import GX and build its context in a background thread (seconds, mostly waiting on the
    import system), so a caller can do other work meanwhile; the gates wait for it if needed.
    Once per process: later calls return the first call's thread at once."""
    with _WARMING_LOCK:
        if not _WARMING:
            thread = threading.Thread(target=_runner, name="gx-warm-up", daemon=True)
            thread.start()
            _WARMING.append(thread)
        return _WARMING[0]


def _runner() -> _Runner:
    global _RUNNER
    with _LOCK:
        if _RUNNER is None:
            _RUNNER = _Runner()
        return _RUNNER


# ---------------------------------------------------------------------------------------------
# Running a gate


@dataclass
class _PartRun:
    part: SuitePart
    frame: pd.DataFrame | None  # what GX validates; None when it cannot be derived
    samples_from: pd.DataFrame | None  # where sample rows come from (same positions)
    missing: list[str] = field(default_factory=list)  # why frame is None
    args: tuple[Any, ...] = ()
    suffix: str = ""


def _positional(df: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    # Copy-on-write makes this cheap; positions make GX's indices positions.
    return df.reset_index(drop=True)


def _run_gate(spec: SuiteSpec, runs: list[_PartRun], source: pd.DataFrame,
              params: dict[str, Any] | None = None) -> GateResult:
    return _run_gate_in_pieces(spec, [(runs, source)], params)


# One piece of a frame validated on its own: its part runs and the frame they derive from.
_Piece = tuple[list[_PartRun], pd.DataFrame]


def _run_gate_in_pieces(spec: SuiteSpec, pieces: Iterable[_Piece], params: dict[str, Any] | None = None
                        ) -> GateResult:
    """The gate over a frame given in pieces that its expectations can judge one at a time
    (a row's expectations read its own row only; a uniqueness or per-group expectation, keys
    that never span two pieces): the result the whole frame gives, with each failure's count,
    total and first samples added up over the pieces in order."""
    evaluated: int | None = None
    rows = count = 0
    part_rows: dict[int, int] = {}
    # (part, expectation) -> the failures of the pieces that failed it, in order.
    failed: dict[tuple[int, int], list[tuple[Failure, list[str] | None]]] = {}
    configs: dict[tuple[int, int], Any] = {}
    with _LOCK:
        runner = _runner()
        for runs, source in pieces:
            rows += len(source)
            count += 1
            piece_evaluated = 0
            for p, run in enumerate(runs):
                vd = runner.validation(spec, run.part, *run.args, suffix=run.suffix)
                expectations = vd.suite.expectations
                if not expectations:
                    continue
                if run.frame is None:
                    piece_evaluated += len(expectations)
                    for e, exp in enumerate(expectations):
                        failed.setdefault((p, e), []).append(_not_evaluated(exp.configuration, run.missing))
                    continue
                part_rows[p] = part_rows.get(p, 0) + len(run.frame)
                result = runner.run(vd, run.frame, QUICK_FORMAT)
                if not result.success:
                    result = runner.run(vd, run.frame)
                by_id = {r.expectation_config.id: r for r in result.results}
                piece_evaluated += len(result.results)
                for e, exp in enumerate(expectations):
                    r = by_id.get(exp.id)
                    if r is None:  # GX yields one result per expectation; be strict if it did not
                        cfg = exp.configuration
                        failed.setdefault((p, e), []).append((Failure(cfg.type, None, f"{cfg.description or cfg.type}: "
                                                                      "no result", None, []), None))
                    elif not r.success:
                        configs[(p, e)] = (run.part, r.expectation_config)
                        failed.setdefault((p, e), []).append(_failure(r, run, source))
            evaluated = piece_evaluated if evaluated is None else evaluated
            runs = source = run = result = by_id = None  # not held while the next piece is read
    failures = [failed[key][0] if count == 1 else
                _added_up(failed[key], *configs.get(key, (None, None)), part_rows.get(key[0], 0))
                for key in sorted(failed)]
    return GateResult(
        name=spec.name,
        suite_version=spec.version,
        success=not failures,
        evaluated=evaluated or 0,
        failures=_fold_missing(failures),
        rows=int(rows),
        params=params or {},
    )


def _added_up(found: list[tuple[Failure, list[str] | None]], part: SuitePart | None, config: Any,
              total: int) -> tuple[Failure, list[str] | None]:
    """One expectation's failures in the pieces that failed it, as the whole frame's failure:
    counted rows added up, out of the ``total`` rows of every piece, the first samples in
    order; any other failure is the same in every piece, and the first piece's stands."""
    counted = [f for f, _ in found if f.unexpected_count is not None]
    if len(counted) < len(found):  # not evaluated, or not by rows, in some piece: so not in the whole
        return next(item for item in found if item[0].unexpected_count is None)
    first, missing = found[0]
    if part is None or "parity_class" in (config.meta or {}):
        return first, missing
    count = sum(f.unexpected_count or 0 for f in counted)
    samples = [s for f in counted for s in f.samples][:MAX_SAMPLES]
    return replace(first, description=_counted_text(config.description or config.type, count, total, part.unit),
                   unexpected_count=count, samples=samples), missing


def _counted_text(desc: str, count: int, total: int, unit: str) -> str:
    """A failure counted by rows, as a whole frame's or its pieces' added up."""
    return f"{desc}: {count} of {total} {unit} fail"


def _fold_missing(failures: list[tuple[Failure, list[str] | None]]) -> list[Failure]:
    """Fold failures that were not evaluated for want of a column into that column's
    ``expect_column_to_exist`` failure, so one missing column is one line, not five."""
    absent = {f.column for f, _ in failures
              if f.expectation == "expect_column_to_exist" and f.unexpected_count is None}
    folded: dict[str, int] = {}
    kept: list[Failure] = []
    for f, missing in failures:
        if missing and set(missing) <= absent:
            for col in missing:
                folded[col] = folded.get(col, 0) + 1
            continue
        kept.append(f)
    out = []
    for f in kept:
        n = folded.get(f.column or "", 0) if f.expectation == "expect_column_to_exist" else 0
        if n:
            f = replace(f, description=f"{f.description} ({n} dependent "
                                       f"expectation{'s' if n > 1 else ''} not evaluated)")
        out.append(f)
    return out


def _columns_of(kwargs: dict[str, Any]) -> list[str]:
    if kwargs.get("column") is not None:
        return [kwargs["column"]]
    if kwargs.get("column_A") is not None:
        return [kwargs["column_A"], kwargs["column_B"]]
    return list(kwargs.get("column_list") or [])


def _not_evaluated(config, missing: list[str]) -> tuple[Failure, list[str]]:
    cols = _columns_of(config.kwargs)
    return Failure(
        expectation=config.type,
        column=cols[0] if len(cols) == 1 else None,
        description=f"{config.description or config.type}: not evaluated, "
                    f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
        unexpected_count=None,
        samples=[],
    ), missing


def _failure(r, run: _PartRun, source: pd.DataFrame) -> tuple[Failure, list[str] | None]:
    """The Failure of a failed result, and the missing input columns when it was not evaluated."""
    config = r.expectation_config
    kwargs = config.kwargs
    meta = config.meta or {}
    cols = _columns_of(kwargs)
    column = cols[0] if len(cols) == 1 else None
    desc = config.description or config.type
    result = r.result or {}
    frame = run.frame
    assert frame is not None

    absent = [c for c in cols if c not in frame.columns]
    if absent:
        needs = [c for c in meta.get("needs", cols) if c not in source.columns] or absent
        if config.type == "expect_column_to_exist":
            return Failure(config.type, column, f"{desc}: missing", None, []), None
        text = (f"{desc}: not evaluated, missing column{'s' if len(needs) > 1 else ''} "
                f"{', '.join(needs)}")
        return Failure(config.type, column, text, None, []), needs

    exc = r.exception_info or {}
    if exc.get("raised_exception"):
        msg = str(exc.get("exception_message") or "error").splitlines()[0][:_MAX_TEXT]
        return Failure(config.type, column, f"{desc}: could not be evaluated ({msg})", None, []), None

    if "parity_class" in meta:
        cls = meta["parity_class"]
        count = int(frame[cls].iloc[0]) if len(frame) else 0
        samples_from = run.samples_from
        picked: list[int] = []
        if samples_from is not None and "class" in samples_from.columns:
            hits = np.flatnonzero(samples_from["class"].eq(cls).fillna(False).to_numpy(dtype=bool))
            picked = hits[:MAX_SAMPLES].tolist()
        samples = _samples(samples_from, picked, list(PARITY.part("discrepancies").id_columns)
                           + ["provider_amount_minor", "ledger_amount_minor", "detail"])
        return Failure(config.type, "class", f"{desc}: {count} found", count, samples), None

    if "unexpected_count" in result:
        count = int(result["unexpected_count"])
        total = int(result.get("element_count") or 0)
        positions = sorted(int(i) for i in (result.get("partial_unexpected_index_list") or [])
                           if isinstance(i, (int, np.integer)))[:MAX_SAMPLES]
        show = list(run.part.id_columns) + cols + list(meta.get("show", []))
        samples = _samples(run.samples_from, positions, show)
        return Failure(config.type, column, _counted_text(desc, count, total, run.part.unit),
                       count, samples), None

    observed = result.get("observed_value")
    text = desc if observed is None else f"{desc}: found {_plain(observed)}"
    return Failure(config.type, column, text, None, []), None


def _samples(frame: pd.DataFrame | None, positions: list[int], columns: list[str]) -> list[dict]:
    if frame is None or not positions:
        return []
    cols = [c for c in dict.fromkeys(columns) if c in frame.columns]
    picked = frame.iloc[positions][cols]
    data = {c: picked[c].to_numpy(dtype=object).tolist() for c in cols}
    return [{c: _plain(data[c][i]) for c in cols} for i in range(len(positions))]


def _plain(value: Any) -> Any:
    """A JSON-safe plain Python value: int/float/bool/str/None (NaN and NA become None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "..."
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return _plain(str(value))


# ---------------------------------------------------------------------------------------------
# Public gates


def run_ledger_checks(df: pd.DataFrame) -> GateResult:
    """Ledger extract: schema, keys, amounts, currencies, directions, kinds, balance per journal."""
    return run_ledger_checks_in_pieces([df])


def run_ledger_checks_in_pieces(pieces: Iterable[pd.DataFrame]) -> GateResult:
    """``run_ledger_checks`` of the frame the pieces make, one piece in memory at a time. Each
    piece must hold whole entries, and an entry's lines only one piece (an extract in file
    order cut between entries): (journal_id, line_no) is then unique in the frame when it is
    in each piece, and every journal's balance is its piece's."""
    def runs() -> Iterable[_Piece]:
        for df in pieces:
            lines = _positional(df)
            missing = [c for c in JOURNAL_TOTALS_NEED if c not in lines.columns]
            totals = None if missing else journal_totals(lines)
            yield [_PartRun(LEDGER.part("lines"), lines, lines),
                   _PartRun(LEDGER.part("journals"), totals, totals, missing)], lines
            del df, lines, totals  # not held while the next piece is read

    return _run_gate_in_pieces(LEDGER, runs())


def run_stripe_checks(df: pd.DataFrame) -> GateResult:
    """Stripe balance transactions: schema, ids, currencies, ``net == amount - fee``, fee >= 0."""
    records = _positional(df)
    return _run_gate(STRIPE, [_PartRun(STRIPE.parts[0], stripe_frame(records), records)],
                     source=records)


def run_payout_checks(df: pd.DataFrame) -> GateResult:
    """Payout-provider records: schema, ids, currencies, amount > 0, status."""
    records = _positional(df)
    return _run_gate(PAYOUT, [_PartRun(PAYOUT.parts[0], records, records)],
                     source=records)


def run_parity_checks(discrepancies_df: pd.DataFrame,
                      policy: ParityPolicy | None = None) -> GateResult:
    """Reconciliation parity: per blocking class, count <= the policy's max_allowed."""
    policy = policy or ParityPolicy()
    disc = _positional(discrepancies_df)
    counts = class_counts(disc, policy)
    return _run_gate(PARITY, [
        _PartRun(PARITY.part("discrepancies"), disc, disc),
        _PartRun(PARITY.part("counts"), counts, disc, args=(policy,),
                 suffix="." + hashlib.sha256(policy.key().encode()).hexdigest()[:16]),
    ], source=disc, params=policy.to_dict())
