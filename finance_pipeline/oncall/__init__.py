"""On-call operations as plain Python (no Dagster): incident queries, alerts, repairs.

The Dagster sensors and jobs in ``finance_pipeline.defs.oncall`` and the ``finance-pipeline``
commands in ``finance_pipeline.cli.oncall`` are thin wrappers over these modules.
"""
