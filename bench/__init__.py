"""Benchmark of one large day (`make bench`): generation, stage timings, references."""
