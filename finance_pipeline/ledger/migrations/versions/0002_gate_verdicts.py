"""Gate verdicts: which gates passed for exactly which inputs of a day (issue 15).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_verdicts",
        sa.Column("verdict_id", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("inputs_sha256", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("recorded_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("length(day) = 10", name=op.f("ck_gate_verdicts_day")),
        sa.PrimaryKeyConstraint("verdict_id", name=op.f("pk_gate_verdicts")),
    )
    op.create_index(op.f("ix_gate_verdicts_day_inputs_sha256"), "gate_verdicts", ["day", "inputs_sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_gate_verdicts_day_inputs_sha256"), table_name="gate_verdicts")
    op.drop_table("gate_verdicts")
