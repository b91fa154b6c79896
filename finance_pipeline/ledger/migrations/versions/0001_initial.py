"""Initial ledger schema: accounts, batches, entries, lines, payouts, approvals, audit, proofs.

Posted journal entries, their lines and audit events are append-only: triggers refuse UPDATE
and DELETE (and TRUNCATE on PostgreSQL), whoever connects.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the rules at this revision (never import the live schema into a migration).
_APPEND_ONLY = {
    "journal_entries": "post a correcting adjustment or reversal entry instead",
    "journal_lines": "post a correcting adjustment or reversal entry instead",
    "audit_events": "audit events are append-only; record a new event instead",
}


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("type IN ('asset', 'liability', 'equity', 'revenue', 'expense')",
                           name=op.f("ck_accounts_type")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_accounts_currency")),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
    )
    op.create_index(op.f("ix_accounts_role"), "accounts", ["role"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(64), nullable=False),
        sa.Column("subject_id", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_subject"), "audit_events", ["subject_type", "subject_id"])
    op.create_index(op.f("ix_audit_events_ts_us"), "audit_events", ["ts_us"])

    op.create_table(
        "journal_batches",
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("expected_entries", sa.Integer(), nullable=False),
        sa.Column("staged_payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("applied_at_us", sa.BigInteger(), nullable=True),
        sa.Column("source", sa.String(500), nullable=True),
        sa.CheckConstraint("expected_entries >= 0", name=op.f("ck_journal_batches_expected_entries")),
        sa.CheckConstraint("status IN ('staged', 'applied')", name=op.f("ck_journal_batches_status")),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_journal_batches")),
    )

    op.create_table(
        "payouts",
        sa.Column("payout_id", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("initiated_by", sa.String(200), nullable=False),
        sa.Column("provider_reference", sa.String(255), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payouts_amount_minor")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_payouts_currency")),
        sa.CheckConstraint("status IN ('requested', 'pending', 'settled', 'failed')",
                           name=op.f("ck_payouts_status")),
        sa.PrimaryKeyConstraint("payout_id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("provider_reference", name=op.f("uq_payouts_provider_reference")),
    )
    op.create_index(op.f("ix_payouts_status"), "payouts", ["status"])

    op.create_table(
        "proofs",
        sa.Column("proof_id", sa.String(128), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("merkle_root", sa.String(64), nullable=False),
        sa.Column("statement_sha256", sa.String(64), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("published_at_us", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.CheckConstraint("length(day) = 10", name=op.f("ck_proofs_day")),
        sa.PrimaryKeyConstraint("proof_id", name=op.f("pk_proofs")),
    )
    op.create_index(op.f("ix_proofs_day"), "proofs", ["day"])

    op.create_table(
        "journal_entries",
        sa.Column("journal_id", sa.String(64), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=True),
        sa.Column("provider_reference", sa.String(255), nullable=True),
        sa.Column("reverses", sa.String(64), nullable=True),
        sa.Column("posted_by", sa.String(200), nullable=False),
        sa.Column("reviewed_by", sa.String(200), nullable=True),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("posted_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('standard', 'adjustment', 'reversal')",
                           name=op.f("ck_journal_entries_kind")),
        sa.CheckConstraint("kind <> 'reversal' OR reverses IS NOT NULL",
                           name=op.f("ck_journal_entries_reversal_target")),
        sa.CheckConstraint(
            "kind <> 'adjustment' OR (reviewed_by IS NOT NULL AND reviewed_by <> posted_by)",
            name=op.f("ck_journal_entries_adjustment_review"),
        ),
        sa.ForeignKeyConstraint(["batch_id"], ["journal_batches.batch_id"],
                                name=op.f("fk_journal_entries_batch_id_journal_batches")),
        sa.ForeignKeyConstraint(["reverses"], ["journal_entries.journal_id"],
                                name=op.f("fk_journal_entries_reverses_journal_entries")),
        sa.PrimaryKeyConstraint("journal_id", name=op.f("pk_journal_entries")),
    )
    op.create_index(op.f("ix_journal_entries_batch_id"), "journal_entries", ["batch_id"])
    op.create_index(op.f("ix_journal_entries_provider_reference"), "journal_entries",
                    ["provider_reference"])
    op.create_index(op.f("ix_journal_entries_reverses"), "journal_entries", ["reverses"])
    op.create_index(op.f("ix_journal_entries_ts_us"), "journal_entries", ["ts_us", "journal_id"])

    op.create_table(
        "payout_approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payout_id", sa.String(64), nullable=False),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("approved_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("expires_at_us > approved_at_us", name=op.f("ck_payout_approvals_expiry")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.payout_id"],
                                name=op.f("fk_payout_approvals_payout_id_payouts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_approvals")),
        sa.UniqueConstraint("payout_id", "approver",
                            name=op.f("uq_payout_approvals_payout_id_approver")),
    )

    op.create_table(
        "journal_lines",
        sa.Column("journal_id", sa.String(64), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(6), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.CheckConstraint("line_no >= 0", name=op.f("ck_journal_lines_line_no")),
        sa.CheckConstraint("direction IN ('debit', 'credit')", name=op.f("ck_journal_lines_direction")),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_journal_lines_amount_minor")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_journal_lines_currency")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.account_id"],
                                name=op.f("fk_journal_lines_account_id_accounts")),
        sa.ForeignKeyConstraint(["journal_id"], ["journal_entries.journal_id"],
                                name=op.f("fk_journal_lines_journal_id_journal_entries")),
        sa.PrimaryKeyConstraint("journal_id", "line_no", name=op.f("pk_journal_lines")),
    )
    op.create_index(op.f("ix_journal_lines_account_id"), "journal_lines", ["account_id"])

    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'integrity_constraint_violation', HINT = TG_ARGV[0];
            END
            $$
            """
        )
        for table, hint in _APPEND_ONLY.items():
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change('{hint}')"
            )
            # TRUNCATE skips row triggers, so it needs its own.
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change('{hint}')"
            )
    elif dialect == "sqlite":
        for table, hint in _APPEND_ONLY.items():
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused; {hint}'); END"
                )
    else:
        raise NotImplementedError(f"no append-only triggers for dialect {dialect!r}")


def _drop_append_only_triggers() -> None:
    dialect = op.get_context().dialect.name
    for table in _APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")


def downgrade() -> None:
    _drop_append_only_triggers()
    op.drop_table("journal_lines")
    op.drop_table("payout_approvals")
    op.drop_table("journal_entries")
    op.drop_table("proofs")
    op.drop_table("payouts")
    op.drop_table("journal_batches")
    op.drop_table("audit_events")
    op.drop_table("accounts")
