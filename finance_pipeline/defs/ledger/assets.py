"""The daily ledger extract.

No `from __future__ import annotations` in asset modules: Dagster inspects the real
annotation types of `context` and resources.
"""


import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from finance_pipeline.defs.io_managers import ParquetFile
from finance_pipeline.defs.reconciliation.assets import warm_up_gates
from finance_pipeline.defs.resources import LedgerResource, ReconciliationSettings
from finance_pipeline.columnar.totals import DayTally
from finance_pipeline.domain.timeutil import day_bounds_us, format_ts_us, recon_window_us

# A window read in slices while entries are posted into it is read again, this many times in all.
EXTRACT_ATTEMPTS = 3




def build_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name="ledger_extract",
        group_name="ledger",
        partitions_def=partitions_def,
        io_manager_key="parquet_io_manager",
        kinds={"sql", "pandas"},
        description=(
            "Every journal line whose entry's ts lies in the UTC day, widened by the reconciliation "
            "time tolerance on both sides, plus the entries of any date that share a provider "
            "reference with one in that window (the rest of each claim); all beyond the day only "
            "serve as counterparts. Money as integer minor units."
        ),
    )
    def ledger_extract(
        context: dg.AssetExecutionContext, ledger: LedgerResource, recon: ReconciliationSettings
    ) -> dg.Output:
        warm_up_gates(context)
        from finance_pipeline.ledger import reviews
        from finance_pipeline.ledger.audit import now_us
        from finance_pipeline.export.prove import write_day
        from finance_pipeline.ledger.extract import WindowMovedError

        lo, hi = day_bounds_us(context.partition_key)
        # People's entries of the day still waiting for their second person: not in the ledger
        # (nor in this extract) until approved.
        waiting = reviews.pending(ledger.engine(), now_us(), day=context.partition_key)
        w_lo, w_hi = recon_window_us(context.partition_key, recon.time_tolerance_s)
        # Written to a file a time slice at a time: a large day is never in memory whole.
        fd, spool = tempfile.mkstemp(prefix=f"ledger_extract-{context.partition_key}-", suffix=".parquet")
        os.close(fd)
        os.chmod(spool, 0o644)  # as the storage's other files: readable by the UI's user
        try:
            for attempt in range(1, EXTRACT_ATTEMPTS + 1):
                day = DayTally(lo, hi)
                try:
                    rows = write_day(ledger.engine(), context.partition_key, recon.tolerances(), spool, day.add)
                    break
                except WindowMovedError as exc:
                    if attempt == EXTRACT_ATTEMPTS:
                        raise WindowMovedError(f"{exc} ({EXTRACT_ATTEMPTS} attempts; the ledger is being "
                                               "posted into this day: run the extract when it is quiet)") from None
                    context.log.warning(f"{context.partition_key}: {exc} (attempt {attempt})")
        except BaseException:
            Path(spool).unlink(missing_ok=True)
            raise
        totals = pd.DataFrame(day.totals)
        return dg.Output(
            ParquetFile(Path(spool), rows),
            metadata={
                "entries": day.entries,
                "lines": day.lines,
                "boundary_lines": rows - day.lines,
                "window": f"[{format_ts_us(w_lo)}, {format_ts_us(w_hi - 1)}]",
                "totals": dg.MetadataValue.md(
                    totals.to_markdown(index=False) if not totals.empty else "_no entries_"
                ),
                "pending_reviews": dg.MetadataValue.int(len(waiting)),
                "pending_review_entries": dg.MetadataValue.md(
                    "\n".join(f"- `{w.journal_id}` ({w.entry['kind']}) by {w.submitted_by}: {w.entry['memo']}"
                              for w in waiting[:50]) or "_none_"),
            },
        )

    return [ledger_extract]
