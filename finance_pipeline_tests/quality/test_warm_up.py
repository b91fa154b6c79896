"""gates.warm_up: one background import per process, and a second caller is never held up by it."""

from __future__ import annotations

import threading
import time

from finance_pipeline.quality import gates


def test_a_second_warm_up_returns_at_once_while_the_first_is_still_importing(monkeypatch):
    release = threading.Event()
    started = []

    def slow_runner():  # stands in for GX's import, which holds the gates' lock throughout
        with gates._LOCK:
            started.append(1)
            release.wait(5)

    monkeypatch.setattr(gates, "_runner", slow_runner)
    monkeypatch.setattr(gates, "_WARMING", [])
    first = gates.warm_up()
    while not started:
        time.sleep(0.01)
    t0 = time.perf_counter()
    second = gates.warm_up()
    waited = time.perf_counter() - t0
    release.set()
    first.join(5)
    assert second is first and started == [1]
    assert waited < 1.0, f"the second caller waited {waited:.2f} s for the import"
