"""Publication controls: gate verdicts (which gates passed for exactly which inputs of a day),
day seals (a day whose proof is being published is closed to posting) and journal reviews
(manual postings waiting for a second person).

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
    op.create_table(
        "journal_reviews",
        sa.Column("journal_id", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("submitted_by", sa.String(200), nullable=False),
        sa.Column("submitted_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_by", sa.String(200), nullable=True),
        sa.Column("reviewed_at_us", sa.BigInteger(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'posted', 'rejected')", name=op.f("ck_journal_reviews_status")),
        sa.CheckConstraint("reviewed_by IS NULL OR reviewed_by <> submitted_by",
                           name=op.f("ck_journal_reviews_two_people")),
        sa.PrimaryKeyConstraint("journal_id", name=op.f("pk_journal_reviews")),
    )
    op.create_index(op.f("ix_journal_reviews_ts_us"), "journal_reviews", ["ts_us"])


def downgrade() -> None:
    op.drop_index(op.f("ix_journal_reviews_ts_us"), table_name="journal_reviews")
    op.drop_table("journal_reviews")
    op.drop_table("day_seals")
    op.drop_index(op.f("ix_gate_verdicts_day_inputs_sha256"), table_name="gate_verdicts")
    op.drop_table("gate_verdicts")
