"""The ledger store: schema, migrations, and the one posting core every writer uses.

Plain Python and SQLAlchemy Core; no Dagster here.
"""

from finance_pipeline.ledger import errors
from finance_pipeline.ledger.errors import (
    AccountExistsError,
    AccountValidationError,
    BatchConflictError,
    BatchError,
    ClosedDayError,
    FieldError,
    JournalConflictError,
    JournalValidationError,
    LedgerError,
    SchemaNotReadyError,
    UnknownAccountError,
)

__all__ = errors.__all__
