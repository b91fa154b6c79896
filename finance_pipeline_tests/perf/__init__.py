"""Property tests for the fast paths: each one gives exactly what the reference path gives.

The speed itself is measured by the benchmark (`make bench`), not here.
"""
