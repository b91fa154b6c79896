"""Publication controls: gate verdicts (which gates passed for exactly which inputs of a day)
and day seals (a day whose proof is being published is closed to posting).

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
    op.create_table(
        "day_seals",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("proof_id", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("sealed_at_us", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("length(day) = 10", name=op.f("ck_day_seals_day")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_day_seals")),
    )


def downgrade() -> None:
    op.drop_table("day_seals")
    op.drop_index(op.f("ix_gate_verdicts_day_inputs_sha256"), table_name="gate_verdicts")
    op.drop_table("gate_verdicts")
