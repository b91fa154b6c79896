"""`finance-pipeline` command line. Each command group lives in its own module."""

from __future__ import annotations

import click

from finance_pipeline.cli import accounts, db, demo, export, journal, oncall, proofs, sandbox, serve, signing


@click.group()
@click.version_option(package_name="finance-pipeline")
def main() -> None:
    """Ledger reconciliation and signed proof packages for finance teams."""


for _module in (db, accounts, journal, export, proofs, signing, sandbox, demo, oncall, serve):
    for _command in _module.COMMANDS:
        main.add_command(_command)
