"""finance_pipeline/memory.py: freed buffers leave the process's RSS (glibc, as on our machines)."""

from __future__ import annotations

import subprocess
import sys

# Frees 40 buffers of 8 MB, each followed on the heap by a small one that stays (so the heap's
# top cannot simply be trimmed), after a 30 MB buffer was freed (which by default raises glibc's
# mmap threshold past 8 MB). Prints how many MB the RSS fell.
_PROBE = r"""
import sys
from finance_pipeline import memory
if sys.argv[1] == "lean":
    memory.use_lean_heap()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = b"\x01" * (30 << 20)
del big
bufs, pins = [], []
for _ in range(40):
    bufs.append(b"\x01" * (8 << 20))
    pins.append(b"\x02" * 4000)
before = rss_mb()
del bufs
print(round(before - rss_mb()))
"""


def _fell_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def test_a_lean_heap_hands_freed_buffers_back_at_once():
    assert _fell_mb("lean") >= 300  # the 320 MB of buffers
    # The probe can tell: with glibc's default the freed buffers stay resident.
    assert _fell_mb("default") < 100
