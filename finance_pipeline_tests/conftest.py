from __future__ import annotations

pytest_plugins = [
    "finance_pipeline_tests.fixtures.postgres",
    "finance_pipeline_tests.fixtures.sandboxes",
    "finance_pipeline_tests.fixtures.aws",
    "finance_pipeline_tests.fixtures.world",
    "finance_pipeline_tests.fixtures.ledger",
    "finance_pipeline_tests.fixtures.api",
    "finance_pipeline_tests.fixtures.oncall",
]
