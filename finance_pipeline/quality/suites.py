"""Data-quality suites, defined in code as Great Expectations 1.x expectations.

Each gate (:class:`SuiteSpec`) has a name and a version that is recorded in every result: bump
``version`` whenever an expectation is added, removed or changes meaning, so a stored result
always says which rules it was judged by. A gate is validated as one or more *parts*; a part is
one GX expectation suite run on one frame, either the input frame itself or a frame derived
from it with vectorised pandas (the per-journal balances, the per-class discrepancy counts).

Great Expectations takes seconds to import, so nothing here imports it at module level: the
expectation objects are built by functions that are only called when a gate first runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from finance_pipeline.domain.journal import DIRECTIONS, KINDS
from finance_pipeline.domain.money import known_currencies
from finance_pipeline.reconciliation.engine import CLASSES, DISCREPANCY_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from great_expectations.expectations import Expectation

INT = "int64"
STR = "str"
PAYOUT_STATUSES = ("pending", "settled", "failed")

# Contracts: column -> dtype family checked by the schema expectations. "int64" is the numpy
# dtype (money and times are integer minor units / microseconds, never floats); "str" accepts
# pandas string dtypes (and object columns whose non-null values are all str).
LEDGER_COLUMNS: dict[str, str] = {
    "journal_id": STR, "ts_us": INT, "kind": STR, "memo": STR, "batch_id": STR,
    "provider": STR, "provider_reference": STR, "reverses": STR, "posted_by": STR,
    "reviewed_by": STR, "line_no": INT, "account_id": STR, "direction": STR,
    "amount_minor": INT, "currency": STR, "account_role": STR,
}
STRIPE_COLUMNS: dict[str, str] = {
    "provider": STR, "id": STR, "type": STR, "reporting_category": STR, "source": STR,
    "amount": INT, "fee": INT, "net": INT, "currency": STR, "created": INT,
    "available_on": INT, "status": STR, "balance_type": STR, "exchange_rate": STR,
    "record": STR,
}
PAYOUT_COLUMNS: dict[str, str] = {
    "provider": STR, "id": STR, "payout_id": STR, "status": STR, "amount_minor": INT,
    "currency": STR, "ts_us": INT, "record": STR,
}

# Columns of the per-(journal_id, currency) frame derived from the ledger extract.
JOURNAL_TOTAL_COLUMNS = (
    "journal_id", "currency", "debit_minor", "credit_minor", "imbalance_minor", "journal_lines",
)
# Derived column of the Stripe frame compared with ``net``.
STRIPE_EXPECTED_NET = "amount_minus_fee"


# ---------------------------------------------------------------------------------------------
# Specs


@dataclass(frozen=True)
class SuitePart:
    """One GX expectation suite of a gate, run on one frame.

    ``unit`` names what a row of that frame is (used in failure descriptions) and
    ``id_columns`` the columns that identify an offending row in a failure's samples.
    """

    key: str
    unit: str
    id_columns: tuple[str, ...]
    build: Callable[..., list[Expectation]] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SuiteSpec:
    """A named, versioned gate."""

    name: str
    version: str
    parts: tuple[SuitePart, ...]

    def suite_name(self, part: SuitePart, suffix: str = "") -> str:
        """The GX expectation-suite name of ``part`` (versioned, so results say which rules)."""
        return f"{self.name}.{part.key}.v{self.version}{suffix}"

    def part(self, key: str) -> SuitePart:
        return next(p for p in self.parts if p.key == key)


def _gxe():
    """The GX expectations module (imported on first use: GX takes seconds to import)."""
    from finance_pipeline.quality.gx import import_gx

    import_gx()
    import great_expectations.expectations as gxe

    return gxe


def _schema(columns: Mapping[str, str]) -> list[Expectation]:
    gxe = _gxe()
    out: list[Expectation] = [
        gxe.ExpectColumnToExist(column=col, description=f"column {col} must be present")
        for col in columns
    ]
    out += [
        gxe.ExpectColumnValuesToBeOfType(
            column=col, type_=dtype, description=f"{col} must have dtype {dtype}"
        )
        for col, dtype in columns.items()
    ]
    return out


def _not_null(*columns: str) -> list[Expectation]:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=col, description=f"{col} must not be null")
        for col in columns
    ]


def _known_currency(column: str = "currency") -> Expectation:
    return _gxe().ExpectColumnValuesToBeInSet(
        column=column,
        value_set=sorted(known_currencies()),
        description=f"{column} must be an ISO 4217 code in capitals",
    )


def _in_set(column: str, values: Iterable[str]) -> Expectation:
    values = list(values)
    return _gxe().ExpectColumnValuesToBeInSet(
        column=column, value_set=values, description=f"{column} must be one of {', '.join(values)}"
    )


# ---------------------------------------------------------------------------------------------
# Ledger extract


def _ledger_lines() -> list[Expectation]:
    gxe = _gxe()
    return [
        *_schema(LEDGER_COLUMNS),
        *_not_null("journal_id", "ts_us", "kind", "line_no", "account_id", "direction",
                   "amount_minor", "currency"),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["journal_id", "line_no"],
            description="(journal_id, line_no) must be unique",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="amount_minor", min_value=0, strict_min=True,
            description="amount_minor must be > 0",
        ),
        _known_currency(),
        _in_set("direction", DIRECTIONS),
        _in_set("kind", KINDS),
    ]


def _ledger_journals() -> list[Expectation]:
    gxe = _gxe()
    needs = ["journal_id", "currency", "direction", "amount_minor"]
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column="imbalance_minor", min_value=0, max_value=0,
            description="every journal must balance per currency (debits - credits == 0)",
            meta={"needs": needs},
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="journal_lines", min_value=2,
            description="every journal must have at least two lines",
            meta={"needs": ["journal_id"]},
        ),
    ]


LEDGER = SuiteSpec(
    name="ledger_extract",
    version="1",
    parts=(
        SuitePart("lines", "rows", ("journal_id", "line_no"), _ledger_lines),
        SuitePart("journals", "journal/currency groups", JOURNAL_TOTAL_COLUMNS, _ledger_journals),
    ),
)
JOURNAL_TOTALS_NEED = ("journal_id", "currency", "direction", "amount_minor")


def journal_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """Debits, credits and debits minus credits per (journal_id, currency), vectorised.

    One row per group in order of first appearance in ``lines``; ``journal_lines`` is the
    number of lines of the whole journal (every currency). Lines whose direction is neither
    debit nor credit count towards neither side (the lines suite reports them). Amounts that
    are not numbers count as 0 (the schema expectations report them).
    """
    missing = [c for c in JOURNAL_TOTALS_NEED if c not in lines.columns]
    if missing:
        raise KeyError(f"journal_totals needs columns {missing}")
    amount_col = lines["amount_minor"]
    if pd.api.types.is_integer_dtype(amount_col.dtype) and not amount_col.hasnans:
        amount = amount_col.to_numpy(dtype=np.int64)
    else:  # the schema expectations fail this frame; still total what can be read
        amount = pd.to_numeric(amount_col, errors="coerce").to_numpy(dtype=np.float64, na_value=0.0)
    direction = lines["direction"]
    is_debit = direction.eq("debit").fillna(False).to_numpy(dtype=bool)
    is_credit = direction.eq("credit").fillna(False).to_numpy(dtype=bool)
    zero = amount.dtype.type(0)
    # Integer codes instead of grouping on the strings: factorize each key once, combine.
    jcodes, journals = pd.factorize(lines["journal_id"], use_na_sentinel=False)
    ccodes, currencies = pd.factorize(lines["currency"], use_na_sentinel=False)
    width = max(len(currencies), 1)
    gcodes, gkeys = pd.factorize(jcodes.astype(np.int64) * width + ccodes)  # first appearance
    sums = pd.DataFrame({
        "debit_minor": np.where(is_debit, amount, zero),
        "credit_minor": np.where(is_credit, amount, zero),
    }).groupby(gcodes, sort=True).sum()
    gj, gc = np.divmod(np.asarray(gkeys, dtype=np.int64), width)
    debit = sums["debit_minor"].to_numpy()
    credit = sums["credit_minor"].to_numpy()
    return pd.DataFrame({
        "journal_id": journals.take(gj).array,
        "currency": currencies.take(gc).array,
        "debit_minor": debit,
        "credit_minor": credit,
        "imbalance_minor": debit - credit,
        "journal_lines": np.bincount(jcodes, minlength=len(journals))[gj].astype(np.int64),
    })


# ---------------------------------------------------------------------------------------------
# Stripe balance transactions


def _stripe() -> list[Expectation]:
    gxe = _gxe()
    return [
        *_schema(STRIPE_COLUMNS),
        *_not_null("id", "currency"),
        gxe.ExpectColumnValuesToBeUnique(column="id", description="id must be unique"),
        _known_currency(),
        # Every type says how it reconciles (reconciliation/stripe_types.py); a new one blocks
        # the day by name instead of being compared by guesswork.
        gxe.ExpectColumnValuesToBeInSet(
            column="type", value_set=list(_stripe_types().KNOWN_TYPES),
            description="type must be one the reconciliation maps (docs/stripe-mapping.md); "
                        "add a new type to finance_pipeline/reconciliation/stripe_types.py",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="balance_type", value_set=list(_stripe_types().BALANCE_ROLES),
            description="balance_type must be one the reconciliation maps to a ledger role "
                        "(docs/stripe-mapping.md)",
        ),
        # What Stripe promises is net = amount - fee, not fee >= 0: a refund that returns its
        # fee, or a won dispute whose fee is refunded, carries a negative fee.
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="net", column_B=STRIPE_EXPECTED_NET,
            description="net must equal amount - fee",
            meta={"needs": ["net", "amount", "fee"], "show": ["amount", "fee", "net"]},
        ),
    ]


def _stripe_types():
    from finance_pipeline.reconciliation import stripe_types

    return stripe_types


STRIPE = SuiteSpec(
    name="stripe_balance_transactions",
    # 2: the record text column is `record` (with its provider member), not `raw`;
    # 3: no fee >= 0 (negative fees are ordinary), net = amount - fee stays;
    # 4: balance_type and exchange_rate columns; type and balance_type must be in the
    #    reconciliation's mapping
    version="4",
    parts=(SuitePart("records", "rows", ("id", "type", "currency"), _stripe),),
)


def stripe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus ``amount_minus_fee`` (when both columns exist), for the ``net`` expectation."""
    if "amount" not in df.columns or "fee" not in df.columns:
        return df
    amount, fee = df["amount"], df["fee"]
    if not (pd.api.types.is_integer_dtype(amount.dtype) and pd.api.types.is_integer_dtype(fee.dtype)):
        amount = pd.to_numeric(amount, errors="coerce")
        fee = pd.to_numeric(fee, errors="coerce")
    return df.assign(**{STRIPE_EXPECTED_NET: amount - fee})


# ---------------------------------------------------------------------------------------------
# Payout-provider records


def _payout() -> list[Expectation]:
    gxe = _gxe()
    return [
        *_schema(PAYOUT_COLUMNS),
        *_not_null("id", "currency", "status", "amount_minor"),
        gxe.ExpectColumnValuesToBeUnique(column="id", description="id must be unique"),
        _known_currency(),
        gxe.ExpectColumnValuesToBeBetween(
            column="amount_minor", min_value=0, strict_min=True,
            description="amount_minor must be > 0",
        ),
        _in_set("status", PAYOUT_STATUSES),
    ]


PAYOUT = SuiteSpec(
    name="payout_records",
    version="2",  # 2: the record text column is `record` (with its provider member), not `raw`
    parts=(SuitePart("records", "rows", ("id", "payout_id", "status", "currency"), _payout),),
)


# ---------------------------------------------------------------------------------------------
# Reconciliation parity


DEFAULT_BLOCKING = tuple(c for c in CLASSES if c != "TIMING_WINDOW")


def _unknown_class_error(name: object, where: str) -> ValueError:
    hint = ""
    if isinstance(name, str):
        close = difflib.get_close_matches(name.upper(), CLASSES, n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    return ValueError(
        f"unknown discrepancy class {name!r} in parity {where}{hint}; "
        f"known classes: {', '.join(CLASSES)}"
    )


@dataclass(frozen=True)
class ParityPolicy:
    """Which discrepancy classes block the day, and how many of each are tolerated.

    A blocking class passes while its count is <= ``max_allowed.get(cls, 0)``. Classes that
    are not blocking never fail the gate (their ``max_allowed`` is ignored).
    """

    blocking_classes: tuple[str, ...] = DEFAULT_BLOCKING
    max_allowed: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        blocking = self.blocking_classes
        if isinstance(blocking, str):
            raise TypeError("blocking_classes must be a list of class names, not one string")
        for name in blocking:
            if name not in CLASSES:
                raise _unknown_class_error(name, "blocking_classes")
        allowed: dict[str, int] = {}
        for name, value in dict(self.max_allowed).items():
            if name not in CLASSES:
                raise _unknown_class_error(name, "max_allowed")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(
                    f"parity max_allowed[{name!r}] must be an integer >= 0, got {value!r}"
                )
            allowed[name] = int(value)
        # Canonical form: classes in CLASSES order, no duplicates; max_allowed sorted by class.
        object.__setattr__(self, "blocking_classes", tuple(c for c in CLASSES if c in set(blocking)))
        object.__setattr__(self, "max_allowed", {c: allowed[c] for c in CLASSES if c in allowed})

    @classmethod
    def from_config(
        cls, blocking: list[str] | None = None, max_allowed: Mapping[str, int] | None = None
    ) -> ParityPolicy:
        """Build from run config; ``None`` means the default (all but TIMING_WINDOW, 0 each).

        Raises ValueError naming the offending entry for an unknown class or a bad count.
        """
        return cls(
            blocking_classes=DEFAULT_BLOCKING if blocking is None else tuple(blocking),
            max_allowed=dict(max_allowed or {}),
        )

    def __hash__(self) -> int:  # max_allowed is a dict; hash the canonical form instead
        return hash(self.key())

    def limit(self, cls: str) -> int:
        return int(self.max_allowed.get(cls, 0))

    def key(self) -> str:
        """A stable text form (names the policy's GX suite, shown in results)."""
        limits = ",".join(f"{c}<={self.limit(c)}" for c in self.blocking_classes)
        return limits or "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocking_classes": list(self.blocking_classes),
            "max_allowed": {c: self.limit(c) for c in self.blocking_classes},
        }


def _parity_discrepancies() -> list[Expectation]:
    return [
        *(
            _gxe().ExpectColumnToExist(column=col, description=f"column {col} must be present")
            for col in DISCREPANCY_COLUMNS
        ),
        *_not_null("class"),
        _in_set("class", CLASSES),
    ]


def _parity_counts(policy: ParityPolicy) -> list[Expectation]:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column=cls, min_value=0, max_value=policy.limit(cls),
            description=f"{cls} discrepancies must be <= {policy.limit(cls)}",
            meta={"parity_class": cls, "max_allowed": policy.limit(cls)},
        )
        for cls in policy.blocking_classes
    ]


PARITY = SuiteSpec(
    name="reconciliation_parity",
    version="1",
    parts=(
        SuitePart("discrepancies", "discrepancies",
                  ("class", "provider", "provider_id", "journal_id", "currency"),
                  _parity_discrepancies),
        SuitePart("counts", "days", (), _parity_counts),
    ),
)


def class_counts(discrepancies: pd.DataFrame, policy: ParityPolicy) -> pd.DataFrame:
    """One row: the number of discrepancies of each blocking class (value_counts, no loop)."""
    if "class" in discrepancies.columns:
        counts = discrepancies["class"].value_counts(dropna=True)
    else:
        counts = pd.Series(dtype="int64")
    counts = counts.reindex(list(policy.blocking_classes), fill_value=0).astype("int64")
    return pd.DataFrame([counts.to_numpy()], columns=list(policy.blocking_classes)).astype("int64")


SUITES: dict[str, SuiteSpec] = {s.name: s for s in (LEDGER, STRIPE, PAYOUT, PARITY)}
SUITE_VERSIONS: dict[str, str] = {s.name: s.version for s in SUITES.values()}
