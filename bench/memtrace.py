"""Where a bench stage's time and memory go: ``python -m bench.memtrace STAGE WORKDIR``.

Runs the stage like ``bench.stages`` does, samples the process's RSS every 20 ms in a thread
and prints a timeline: each timer step and each Dagster step start/end with the RSS then and
the peak since the previous mark. For finding the step that sets the peak, not for timing.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench import stages

_PAGE = 4096


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / (1 << 20)


class Trace:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.peak = 0.0
        self.marks: list[tuple[float, str, float, float]] = []
        self.samples: list[tuple[float, float]] = []  # (unix time, rss)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            rss = _rss_mib()
            self.samples.append((time.time(), rss))
            with self._lock:
                self.peak = max(self.peak, rss)

    def mark(self, what: str) -> None:
        rss = _rss_mib()
        with self._lock:
            peak, self.peak = max(self.peak, rss), rss
        self.marks.append((time.perf_counter() - self.t0, what, rss, peak))
        print(f"{self.marks[-1][0]:8.2f} s  rss {rss:7.0f} MiB  peak since last {peak:7.0f} MiB  {what}",
              flush=True)

    def __enter__(self) -> "Trace":
        self._thread.start()
        self.mark("start")
        return self

    def __exit__(self, *exc) -> None:
        self.mark("end")
        self._stop.set()


def _dagster_timeline(trace: Trace) -> None:
    """Each step event of the latest run, with the RSS peak since the event before."""
    import dagster as dg

    inst = dg.DagsterInstance.get()
    run = inst.get_runs(limit=1)[0]
    events = [e for e in inst.all_logs(run.run_id) if e.dagster_event is not None]
    t_prev = events[0].timestamp if events else 0.0
    t0 = t_prev
    for e in events:
        kind = e.dagster_event.event_type_value
        if kind not in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "LOADED_INPUT", "HANDLED_OUTPUT",
                        "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION", "STEP_OUTPUT", "RUN_SUCCESS"):
            continue
        peak = max((r for t, r in trace.samples if t_prev <= t <= e.timestamp), default=0.0)
        print(f"{e.timestamp - t0:8.2f} s  peak since last {peak:7.0f} MiB  {kind} {e.step_key or ''}")
        t_prev = e.timestamp


def main(argv: list[str]) -> int:
    stage, work = argv[0], Path(argv[1]).resolve()  # the stages derive DAGSTER_HOME from it: absolute
    with Trace() as trace:
        original = stages.Timer.step

        @contextmanager
        def step(self, name):
            trace.mark(f"> {name}")
            with original(self, name):
                yield
            trace.mark(f"< {name}")

        stages.Timer.step = step
        result = stages.STAGES[stage](work)
        if stage == "dagster":
            _dagster_timeline(trace)
    print({k: v for k, v in result.items() if k not in ("peak_rss_mib_after",)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
