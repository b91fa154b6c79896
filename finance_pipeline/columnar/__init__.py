"""The fast paths: numpy, Arrow and C-encoder versions of rules written plainly elsewhere.

Each one gives byte for byte what the plain code it accelerates gives (the reference:
``domain.canonical``, ``proof.verify``'s per-leaf checks, ``ledger.extract.entries_from_lines``),
and finance_pipeline_tests/columnar proves it on random and tampered inputs. Where a fast path
cannot decide, it says so (None) and the plain code runs. Plain Python; no Dagster here.
"""
