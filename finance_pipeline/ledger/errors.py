"""Ledger errors. Each says what is wrong, where, and how to fix it; none leaves writes behind."""

from __future__ import annotations

from typing import Iterable

from finance_pipeline.domain.journal import FieldError, JournalValidationError

__all__ = [
    "AccountExistsError",
    "AccountValidationError",
    "BatchConflictError",
    "BatchError",
    "ClosedDayError",
    "FieldError",
    "JournalConflictError",
    "JournalValidationError",
    "LedgerError",
    "SchemaNotReadyError",
    "UnknownAccountError",
]


class LedgerError(Exception):
    """Base of every error the ledger store raises on purpose."""


class _FieldErrors(LedgerError):
    """A ledger error made of one or more field-addressed problems (like JournalValidationError)."""

    headline = "rejected"

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = list(errors)
        super().__init__(f"{self.headline}: " + "; ".join(map(str, self.errors)))


class UnknownAccountError(_FieldErrors, ValueError):
    """A line names an account that does not exist."""

    headline = "unknown account"


class ClosedDayError(_FieldErrors, ValueError):
    """An entry is dated in a day that a published proof has closed."""

    headline = "closed day"


class JournalConflictError(_FieldErrors):
    """A journal_id is already posted (or repeated in the submission) with a different body."""

    headline = "journal_id conflict"


class AccountValidationError(_FieldErrors, ValueError):
    """Bad input to create an account."""

    headline = "invalid account"


class AccountExistsError(_FieldErrors):
    """The account id is taken by an account with other attributes."""

    headline = "account exists"


class BatchError(_FieldErrors):
    """A batch that cannot be staged or applied (unknown, re-staged differently, bad payload)."""

    headline = "batch rejected"


class BatchConflictError(BatchError):
    """The batch_id was already staged with a different payload."""

    headline = "batch conflict"


class SchemaNotReadyError(LedgerError):
    """The database has no ledger schema, or an older one."""
