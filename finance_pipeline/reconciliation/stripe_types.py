"""How each Stripe balance transaction reconciles: one table, rendered in docs/stripe-mapping.md.

Every record is one row of the reconciliation, whatever its type (never dropped). What the
type decides is where its money meets the ledger:

- ``net`` (what the record moved in Stripe's balance) meets the ledger account of the role
  named by the record's ``balance_type``: ``payments`` (and refund/dispute prefunding) the
  ``stripe_clearing`` role, ``risk_reserved`` the ``stripe_reserve`` role, ``issuing`` the
  ``stripe_issuing`` role. Signed as Stripe signs it: money into the balance is a debit.
- ``fee`` (Stripe's ``fee``, the sum of ``fee_details``) meets the fee roles together:
  ``stripe_fees`` (``stripe_fee``, ``payment_method_passthrough_fee``),
  ``stripe_application_fees`` (``application_fee``) and ``stripe_fee_taxes`` (``tax``). A
  returned fee is a negative fee: a credit to the fee account.
- ``gross`` = net + fee, compared with Stripe's ``amount``.

A type this table does not name fails the Stripe gate by name (the day does not publish until
the table says how it reconciles); its record still reconciles by the rules above.
"""

from __future__ import annotations

from dataclasses import dataclass

# balance_type -> the ledger role its net meets.
BALANCE_ROLES: dict[str, str] = {
    "payments": "stripe_clearing",
    "refund_and_dispute_prefunding": "stripe_clearing",
    "risk_reserved": "stripe_reserve",
    "issuing": "stripe_issuing",
}
DEFAULT_BALANCE_TYPE = "payments"  # older API versions send no balance_type
NET_ROLES = tuple(dict.fromkeys(BALANCE_ROLES.values()))

# fee_details[].type -> the ledger role its amount meets.
FEE_ROLES: dict[str, str] = {
    "stripe_fee": "stripe_fees",
    "payment_method_passthrough_fee": "stripe_fees",
    "application_fee": "stripe_application_fees",
    "tax": "stripe_fee_taxes",
}
FEE_ROLE_NAMES = tuple(dict.fromkeys(FEE_ROLES.values()))


@dataclass(frozen=True)
class StripeType:
    type: str
    reporting_category: str
    books_as: str  # the booking the docs prescribe: net account / counter account


def _t(type_: str, category: str, books_as: str) -> StripeType:
    return StripeType(type_, category, books_as)


_CHARGE = "debit Stripe balance (net) and fees (fee), credit revenue (amount)"
_REFUND = "credit Stripe balance (net), debit refunds; a returned fee credits fees"
_PAYOUT = "credit Stripe balance, debit bank (Stripe's payout to the bank)"
_PAYOUT_BACK = "debit Stripe balance, credit bank (the payout came back)"
_FEE = "credit Stripe balance, debit the fee role of the fee_details type"
_ADJ = "Stripe balance against the account the adjustment corrects"
_RESERVE = "between the Stripe balance and the reserve balance (one record per balance)"
_ISSUING = "Issuing balance against card spend or the funding transfer"
_TRANSFER = "Stripe balance against the connected account's payable"

TYPES: dict[str, StripeType] = {t.type: t for t in (
    _t("charge", "charge", _CHARGE),
    _t("payment", "charge", _CHARGE),
    _t("payment_unreconciled", "unreconciled_customer_funds", _CHARGE),
    _t("refund", "refund", _REFUND),
    _t("payment_refund", "refund", _REFUND),
    _t("payment_failure_refund", "charge_failure", _REFUND),
    _t("payment_reversal", "charge_failure", _REFUND),
    _t("refund_failure", "refund_failure", "debit Stripe balance, credit refunds (the refund came back)"),
    _t("adjustment", "dispute", "disputes: credit Stripe balance, debit disputes/refunds; "
                                "reinstatement (dispute_reversal) the other way; other adjustments: " + _ADJ),
    _t("payout", "payout", _PAYOUT),
    _t("payout_cancel", "payout_reversal", _PAYOUT_BACK),
    _t("payout_failure", "payout_reversal", _PAYOUT_BACK),
    _t("payout_minimum_balance_hold", "payout_minimum_balance_hold", _RESERVE),
    _t("payout_minimum_balance_release", "payout_minimum_balance_release", _RESERVE),
    _t("stripe_fee", "fee", _FEE),
    _t("stripe_fx_fee", "fee", _FEE),
    _t("tax_fee", "fee", "credit Stripe balance, debit fee taxes"),
    _t("application_fee", "platform_earning", "debit Stripe balance, credit application-fee revenue"),
    _t("application_fee_refund", "platform_earning_refund", "credit Stripe balance, debit application-fee revenue"),
    _t("transfer", "transfer", _TRANSFER),
    _t("transfer_cancel", "transfer_reversal", _TRANSFER),
    _t("transfer_failure", "transfer_reversal", _TRANSFER),
    _t("transfer_refund", "transfer_reversal", _TRANSFER),
    _t("connect_collection_transfer", "connect_collection_transfer", _TRANSFER),
    _t("reserve_hold", "risk_reserved_funds", _RESERVE),
    _t("reserve_release", "risk_reserved_funds", _RESERVE),
    _t("reserve_transaction", "risk_reserved_funds", _RESERVE),
    _t("reserved_funds", "risk_reserved_funds", _RESERVE),
    _t("payment_network_reserve_hold", "payment_network_reserved_funds", _RESERVE),
    _t("payment_network_reserve_release", "payment_network_reserved_funds", _RESERVE),
    _t("topup", "topup", "debit Stripe balance, credit bank"),
    _t("topup_reversal", "topup_reversal", "credit Stripe balance, debit bank"),
    _t("issuing_authorization_hold", "issuing_authorization_hold", _ISSUING),
    _t("issuing_authorization_release", "issuing_authorization_release", _ISSUING),
    _t("issuing_transaction", "issuing_transaction", _ISSUING),
    _t("issuing_dispute", "issuing_dispute", _ISSUING),
    _t("inbound_transfer", "topup", "debit Stripe balance, credit bank"),
    _t("inbound_transfer_reversal", "topup_reversal", "credit Stripe balance, debit bank"),
    _t("advance", "advance", "debit Stripe balance, credit financing liability"),
    _t("advance_funding", "advance_funding", "debit Stripe balance, credit financing liability"),
    _t("anticipation_repayment", "anticipation_repayment", "credit Stripe balance, debit financing liability"),
    _t("obligation_outbound", "financing_paydown", "credit Stripe balance, debit financing liability"),
    _t("obligation_reversal_inbound", "financing_paydown", "debit Stripe balance, credit financing liability"),
    _t("contribution", "contribution", "credit Stripe balance, debit contributions expense"),
    _t("climate_order_purchase", "climate_order_purchase", "credit Stripe balance, debit climate expense"),
    _t("climate_order_refund", "climate_order_refund", "debit Stripe balance, credit climate expense"),
    _t("fee_credit_funding", "fee", "debit Stripe balance, credit fees (a fee credit)"),
    _t("stripe_balance_payment_debit", "other_adjustment", _ADJ),
    _t("stripe_balance_payment_debit_reversal", "other_adjustment", _ADJ),
    _t("tax_fund", "tax", "Stripe balance against tax payable"),
)}
KNOWN_TYPES = tuple(sorted(TYPES))


def balance_role(balance_type: str | None) -> str | None:
    """The ledger role a record's net meets; None for a balance_type the table does not know."""
    return BALANCE_ROLES.get(balance_type or DEFAULT_BALANCE_TYPE)


def markdown_table() -> str:
    """The table as docs/stripe-mapping.md shows it (a test keeps the page equal to it)."""
    rows = ["| type | reporting_category | booked as |", "| --- | --- | --- |"]
    rows += [f"| `{t.type}` | `{t.reporting_category}` | {t.books_as} |" for t in sorted(TYPES.values(),
                                                                                       key=lambda t: t.type)]
    return "\n".join(rows)
