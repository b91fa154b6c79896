"""Tables of the ledger store (SQLAlchemy Core). The Alembic migrations must produce exactly this.

Times are BIGINT UTC microseconds since the epoch: identical on SQLite and PostgreSQL, exact,
and cheap to range-scan for a day. Money is BIGINT minor units plus a 3-letter currency.
"""

from __future__ import annotations

import sqlalchemy as sa

ACCOUNT_TYPES = ("asset", "liability", "equity", "revenue", "expense")
# Roles the reconciliation looks accounts up by.
ACCOUNT_ROLES = (
    "stripe_clearing", "stripe_fees", "payout_clearing", "bank",
    "revenue", "refunds", "creator_payable", "suspense",
    # Stripe's other balances and fee kinds (reconciliation/stripe_types.py).
    "stripe_reserve", "stripe_issuing", "stripe_application_fees", "stripe_fee_taxes",
)
ENTRY_KINDS = ("standard", "adjustment", "reversal")
DIRECTIONS = ("debit", "credit")
BATCH_STATUSES = ("staged", "applied")
PAYOUT_STATUSES = ("requested", "pending", "settled", "failed")

ID_LEN = 64
ACTOR_LEN = 200

# Deterministic constraint names, so later migrations can address them on both backends.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    # Free text in the database; the accounts module checks it against ACCOUNT_ROLES so a new
    # role needs no migration.
    sa.Column("role", sa.String(32), nullable=True, index=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("type", ACCOUNT_TYPES), name="type"),
    sa.CheckConstraint("length(currency) = 3", name="currency"),
)

journal_batches = sa.Table(
    "journal_batches",
    metadata,
    sa.Column("batch_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("expected_entries", sa.Integer, nullable=False),
    # JSON array of the entries as submitted, so an interrupted apply can be rolled forward.
    sa.Column("staged_payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("applied_at_us", sa.BigInteger, nullable=True),
    sa.Column("source", sa.String(500), nullable=True),
    sa.CheckConstraint("expected_entries >= 0", name="expected_entries"),
    sa.CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
)

journal_entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("journal_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("memo", sa.Text, nullable=False),
    sa.Column("batch_id", sa.String(ID_LEN), sa.ForeignKey("journal_batches.batch_id"),
              nullable=True, index=True),
    sa.Column("provider", sa.String(32), nullable=True),
    sa.Column("provider_reference", sa.String(255), nullable=True, index=True),
    sa.Column("reverses", sa.String(ID_LEN), sa.ForeignKey("journal_entries.journal_id"),
              nullable=True, index=True),
    sa.Column("posted_by", sa.String(ACTOR_LEN), nullable=False),
    sa.Column("reviewed_by", sa.String(ACTOR_LEN), nullable=True),
    # SHA-256 of the canonical leaf: idempotency key for re-posts and a tamper check.
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("posted_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
    sa.CheckConstraint("kind <> 'reversal' OR reverses IS NOT NULL", name="reversal_target"),
    sa.CheckConstraint(
        "kind <> 'adjustment' OR (reviewed_by IS NOT NULL AND reviewed_by <> posted_by)",
        name="adjustment_review",
    ),
    # The day's extract range-scans ts_us and orders by (ts_us, journal_id).
    sa.Index("ix_journal_entries_ts_us", "ts_us", "journal_id"),
)

journal_lines = sa.Table(
    "journal_lines",
    metadata,
    sa.Column("journal_id", sa.String(ID_LEN), sa.ForeignKey("journal_entries.journal_id"),
              primary_key=True),
    # 0-based: line_no i is lines[i] of the entry, in posted order.
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(ID_LEN), sa.ForeignKey("accounts.account_id"),
              nullable=False, index=True),
    sa.Column("direction", sa.String(6), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.CheckConstraint("line_no >= 0", name="line_no"),
    sa.CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
    sa.CheckConstraint("amount_minor > 0", name="amount_minor"),
    sa.CheckConstraint("length(currency) = 3", name="currency"),
)

payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("payout_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.Column("destination", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("initiated_by", sa.String(ACTOR_LEN), nullable=False),
    # One provider object per payout; NULL until the provider has accepted it.
    sa.Column("provider_reference", sa.String(255), nullable=True, unique=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="amount_minor"),
    sa.CheckConstraint("length(currency) = 3", name="currency"),
    sa.CheckConstraint(_in("status", PAYOUT_STATUSES), name="status"),
    sa.Index("ix_payouts_status", "status"),
)

payout_approvals = sa.Table(
    "payout_approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("payout_id", sa.String(ID_LEN), sa.ForeignKey("payouts.payout_id"),
              nullable=False),
    sa.Column("approver", sa.String(ACTOR_LEN), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("approved_at_us", sa.BigInteger, nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("payout_id", "approver"),
    sa.CheckConstraint("expires_at_us > approved_at_us", name="expiry"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    # BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("actor", sa.String(ACTOR_LEN), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject_type", sa.String(64), nullable=False),
    sa.Column("subject_id", sa.String(255), nullable=False),
    # Canonical JSON object.
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_audit_events_subject", "subject_type", "subject_id"),
)

proofs = sa.Table(
    "proofs",
    metadata,
    sa.Column("proof_id", sa.String(128), primary_key=True),
    # 'YYYY-MM-DD' of the published interval; any row here closes that day for posting.
    # Not unique: the publisher decides whether a day may be re-published.
    sa.Column("day", sa.String(10), nullable=False, index=True),
    sa.Column("merkle_root", sa.String(64), nullable=False),
    sa.Column("statement_sha256", sa.String(64), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("published_at_us", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(32), nullable=False),
    sa.CheckConstraint("length(day) = 10", name="day"),
)

# Tables whose rows may never change once written (enforced by triggers in the migration).
APPEND_ONLY_TABLES = ("journal_entries", "journal_lines", "audit_events")

# What the gates decided for exactly which inputs of a day (quality/verdicts.py). Publication
# reads it, whatever run or selection reached the proof step; rows are only ever added.
gate_verdicts = sa.Table(
    "gate_verdicts",
    metadata,
    sa.Column("verdict_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("day", sa.String(10), nullable=False),
    # sha256 of the canonical JSON of the inputs' digests and the settings the gates used.
    sa.Column("inputs_sha256", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    # Canonical JSON: the inputs' digests, the settings and each gate's failed expectations.
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(ID_LEN), nullable=True),
    sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("length(day) = 10", name="day"),
    sa.Index(None, "day", "inputs_sha256"),
)

# A day whose proof is being published (ledger/periods.py): posting into it is refused, as
# into a day with a row in `proofs`. The row goes when the publication is registered, or when
# `finance-pipeline recover-publication DAY` finds the package incomplete and reopens the day.
day_seals = sa.Table(
    "day_seals",
    metadata,
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("proof_id", sa.String(128), nullable=False),
    # The run publishing it (or the command's actor); another one is told it is in progress.
    sa.Column("holder", sa.String(ACTOR_LEN), nullable=False),
    sa.Column("entries", sa.BigInteger, nullable=False),
    sa.Column("sealed_at_us", sa.BigInteger, nullable=False),
    # Until then no other holder may take the publication over.
    sa.Column("lease_until_us", sa.BigInteger, nullable=False),
    sa.CheckConstraint("length(day) = 10", name="day"),
)

REVIEW_STATUSES = ("pending", "posted", "rejected")

# Manual postings wait here for a second person (ledger/reviews.py): the entry is posted only
# when another actor with a reviewer role approves it, and both names come from their tokens.
journal_reviews = sa.Table(
    "journal_reviews",
    metadata,
    sa.Column("journal_id", sa.String(ID_LEN), primary_key=True),
    # Canonical JSON of the entry as submitted: posted_by is the submitter, reviewed_by null.
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("ts_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("submitted_by", sa.String(ACTOR_LEN), nullable=False),
    sa.Column("submitted_at_us", sa.BigInteger, nullable=False),
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Column("reviewed_by", sa.String(ACTOR_LEN), nullable=True),
    sa.Column("reviewed_at_us", sa.BigInteger, nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.CheckConstraint(_in("status", REVIEW_STATUSES), name="status"),
    sa.CheckConstraint("reviewed_by IS NULL OR reviewed_by <> submitted_by", name="two_people"),
)
