"""Dagster definitions, one folder per domain; thin wrappers over the plain modules."""
