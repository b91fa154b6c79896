"""Chart of accounts: every journal line names one, in the account's single currency."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from finance_pipeline.domain.journal import FieldError
from finance_pipeline.domain.money import is_currency
from finance_pipeline.ledger.audit import now_us as _now_us
from finance_pipeline.ledger.audit import record_event
from finance_pipeline.ledger.engine import begin_write
from finance_pipeline.ledger.errors import AccountExistsError, AccountValidationError
from finance_pipeline.ledger.schema import ACCOUNT_ROLES, ACCOUNT_TYPES, ID_LEN, accounts

# Ids travel in CLI arguments, file names and proof leaves: keep them plain.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
_NAME_LEN = 200


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    type: str
    currency: str
    role: str | None
    created_at_us: int

    def to_dict(self) -> dict:
        return asdict(self)


def validate_account(account_id: object, name: object, type: object, currency: object,
                     role: object = None) -> list[FieldError]:
    """Every problem with these attributes (empty when they are fine)."""
    errors = []
    if not isinstance(account_id, str) or not 1 <= len(account_id) <= ID_LEN or not _ID_RE.match(account_id):
        errors.append(FieldError("account_id", f"must be 1-{ID_LEN} characters of letters, digits "
                                               f"and _ . : / - (starting with a letter or digit), "
                                               f"got {account_id!r}"))
    if not isinstance(name, str) or not name.strip() or len(name) > _NAME_LEN:
        errors.append(FieldError("name", f"must be a non-empty string of at most {_NAME_LEN} "
                                         f"characters, got {name!r}"))
    if type not in ACCOUNT_TYPES:
        errors.append(FieldError("type", f"must be one of {', '.join(ACCOUNT_TYPES)}, got {type!r}"))
    if not is_currency(currency):
        hint = (" in capitals" if isinstance(currency, str) and is_currency(currency.upper()) else "")
        errors.append(FieldError("currency", f"must be an ISO 4217 code{hint} such as 'USD', "
                                             f"got {currency!r}"))
    if role is not None and role not in ACCOUNT_ROLES:
        errors.append(FieldError("role", f"must be one of {', '.join(ACCOUNT_ROLES)} or omitted, "
                                         f"got {role!r}"))
    return errors


def _from_row(row) -> Account:
    return Account(row.account_id, row.name, row.type, row.currency.strip(), row.role,
                   row.created_at_us)


def create_account(
    engine: sa.Engine,
    account_id: str,
    name: str,
    type: str,
    currency: str,
    role: str | None = None,
    *,
    actor: str = "system",
    now_us: int | None = None,
) -> Account:
    """Create an account; creating an identical one again returns the existing one.

    Raises AccountValidationError (bad attributes) or AccountExistsError (the id is taken by an
    account with other attributes: accounts are never changed once lines may point at them).
    """
    errors = validate_account(account_id, name, type, currency, role)
    if errors:
        raise AccountValidationError(errors)
    now = _now_us() if now_us is None else now_us
    with begin_write(engine) as conn:
        existing = conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id)).first()
        if existing is not None:
            found = _from_row(existing)
            if (found.name, found.type, found.currency, found.role) == (name, type, currency, role):
                return found
            raise AccountExistsError([FieldError(
                "account_id",
                f"account {account_id!r} already exists as {found.type} {found.currency} "
                f"{found.name!r} (role {found.role}); choose another id",
            )])
        conn.execute(accounts.insert().values(
            account_id=account_id, name=name, type=type, currency=currency, role=role,
            created_at_us=now,
        ))
        record_event(conn, actor, "account.create", "account", account_id,
                     {"name": name, "type": type, "currency": currency, "role": role}, ts_us=now)
    return Account(account_id, name, type, currency, role, now)


def get_account(engine: sa.Engine, account_id: str) -> Account | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(accounts).where(accounts.c.account_id == account_id)).first()
    return None if row is None else _from_row(row)


def list_accounts(engine: sa.Engine, *, role: str | None = None) -> list[Account]:
    """Accounts ordered by id, optionally only those with ``role``."""
    stmt = sa.select(accounts).order_by(accounts.c.account_id)
    if role is not None:
        stmt = stmt.where(accounts.c.role == role)
    with engine.connect() as conn:
        return [_from_row(row) for row in conn.execute(stmt)]
