"""Payout approval policy: which roles must approve a payout of a given size, and for how long.

Configuration, not code: the tiers come from ``FP_PAYOUT_TIERS`` (JSON text, or the path of a
JSON file; ``Settings.payout_tiers``) when set, else the defaults below. Thresholds are written in the currency's major
units as decimal strings ("10000.00") and compared exactly against integer minor units, so a
float never decides who has to sign off.

    {"tiers": [
       {"below": "10000.00",  "roles": ["finance-lead"]},
       {"up_to": "250000.00", "roles": ["finance-lead", "security-engineer"]},
       {"roles": ["finance-lead", "security-engineer", "super-admin"]}],
     "approval_ttl_s": 86400}

``below`` is exclusive, ``up_to`` inclusive; the last tier has no bound so every amount has a
tier. A role listed twice needs two different approvers holding it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finance_pipeline.domain.money import minor_exponent

if TYPE_CHECKING:
    from finance_pipeline.settings import Settings

APPROVAL_ROLES = ("finance-lead", "security-engineer", "super-admin")
DEFAULT_APPROVAL_TTL_S = 24 * 3600
ENV_TIERS = "FP_PAYOUT_TIERS"


class PolicyConfigError(ValueError):
    """The approval policy configuration is unusable; the message names the member and the fix."""


@dataclass(frozen=True)
class Tier:
    """Amounts up to a bound need ``roles``; ``inclusive`` says whether the bound itself belongs."""

    roles: tuple[str, ...]
    bound_major: Decimal | None = None  # None: unbounded (the last tier)
    inclusive: bool = False

    def contains(self, amount_minor: int, currency: str) -> bool:
        if self.bound_major is None:
            return True
        # Exact: the bound scaled to minor units is a Decimal, never a float.
        bound_minor = self.bound_major.scaleb(minor_exponent(currency))
        return amount_minor <= bound_minor if self.inclusive else amount_minor < bound_minor

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"roles": list(self.roles)}
        if self.bound_major is not None:
            out["up_to" if self.inclusive else "below"] = str(self.bound_major)
        return out


DEFAULT_TIERS = (
    Tier(("finance-lead",), Decimal("10000.00"), inclusive=False),
    Tier(("finance-lead", "security-engineer"), Decimal("250000.00"), inclusive=True),
    Tier(("finance-lead", "security-engineer", "super-admin")),
)


@dataclass(frozen=True)
class PayoutPolicy:
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    approval_ttl_s: int = DEFAULT_APPROVAL_TTL_S
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        _check_tiers(self.tiers, self.source)
        if isinstance(self.approval_ttl_s, bool) or not isinstance(self.approval_ttl_s, int) \
                or self.approval_ttl_s <= 0:
            raise PolicyConfigError(f"{self.source}: approval_ttl_s must be a positive integer "
                                    f"number of seconds (86400 for 24 hours), got {self.approval_ttl_s!r}")

    @property
    def approval_ttl_us(self) -> int:
        return self.approval_ttl_s * 1_000_000

    def tier_for(self, amount_minor: int, currency: str) -> Tier:
        for tier in self.tiers:
            if tier.contains(amount_minor, currency):
                return tier
        raise AssertionError("the last tier is unbounded")  # _check_tiers guarantees it

    def required_roles(self, amount_minor: int, currency: str) -> tuple[str, ...]:
        """Roles that must approve, sorted; a role appears once per approver it needs."""
        return tuple(sorted(self.tier_for(amount_minor, currency).roles))

    def to_dict(self) -> dict[str, Any]:
        return {"tiers": [t.to_dict() for t in self.tiers], "approval_ttl_s": self.approval_ttl_s}

    # -- loading
    @classmethod
    def from_dict(cls, data: Any, *, source: str = "payout policy") -> PayoutPolicy:
        """A policy from the JSON shape in the module docstring (or a bare list of tiers)."""
        if isinstance(data, list):
            data = {"tiers": data}
        if not isinstance(data, dict):
            raise PolicyConfigError(f"{source}: must be a JSON object with 'tiers' (and optionally "
                                    "'approval_ttl_s'), or a list of tiers")
        unknown = sorted(set(data) - {"tiers", "approval_ttl_s"})
        if unknown:
            raise PolicyConfigError(f"{source}: unknown member {unknown[0]!r}; allowed: tiers, "
                                    "approval_ttl_s")
        raw_tiers = data.get("tiers")
        if not isinstance(raw_tiers, list) or not raw_tiers:
            raise PolicyConfigError(f"{source}: tiers must be a non-empty list")
        tiers = tuple(_parse_tier(raw, f"{source}: tiers[{i}]") for i, raw in enumerate(raw_tiers))
        ttl = data.get("approval_ttl_s", DEFAULT_APPROVAL_TTL_S)
        return cls(tiers, ttl, source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "payout policy") -> PayoutPolicy:
        try:
            data = json.loads(text, parse_float=_reject_float)
        except _FloatFound as exc:
            raise PolicyConfigError(
                f"{source}: {exc.args[0]} is a JSON float; write amounts as decimal strings "
                "such as \"10000.00\" and seconds as integers") from None
        except ValueError as exc:
            raise PolicyConfigError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def configured(cls, tiers: str = "", approval_ttl_s: int | None = None) -> PayoutPolicy:
        """``tiers`` (``FP_PAYOUT_TIERS``: JSON text or a file path; empty: the defaults), with
        ``approval_ttl_s`` (``FP_PAYOUT_APPROVAL_TTL_S``) overriding the tiers' own."""
        raw = (tiers or "").strip()
        if not raw:
            policy = cls()
        elif raw[0] in "[{":
            policy = cls.from_json(raw, source=ENV_TIERS)
        else:
            try:
                text = Path(raw).read_text(encoding="utf-8")
            except OSError as exc:
                raise PolicyConfigError(
                    f"{ENV_TIERS}: {raw!r} is neither JSON nor a readable file ({exc.strerror}); "
                    "set it to the policy's JSON or to the path of a JSON file") from None
            policy = cls.from_json(text, source=f"{ENV_TIERS} file {raw}")
        if approval_ttl_s is not None:
            policy = cls(policy.tiers, approval_ttl_s, source=policy.source)
        return policy

    @classmethod
    def from_settings(cls, settings: Settings) -> PayoutPolicy:
        return cls.configured(settings.payout_tiers, settings.payout_approval_ttl_s)


class _FloatFound(ValueError):
    pass


def _reject_float(text: str) -> Decimal:
    raise _FloatFound(text)


def _parse_bound(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise PolicyConfigError(f"{where}: must be a decimal string of major units such as "
                                f"\"10000.00\", got {value!r}")
    try:
        bound = Decimal(value) if not isinstance(value, str) else Decimal(value.strip())
    except InvalidOperation:
        raise PolicyConfigError(f"{where}: {value!r} is not a decimal number; write e.g. "
                                "\"10000.00\"") from None
    if not bound.is_finite() or bound <= 0:
        raise PolicyConfigError(f"{where}: must be a positive amount, got {value!r}")
    return bound


def _parse_tier(raw: Any, where: str) -> Tier:
    if not isinstance(raw, dict):
        raise PolicyConfigError(f"{where}: must be an object such as "
                                "{\"below\": \"10000.00\", \"roles\": [\"finance-lead\"]}")
    unknown = sorted(set(raw) - {"below", "up_to", "roles"})
    if unknown:
        raise PolicyConfigError(f"{where}: unknown member {unknown[0]!r}; allowed: below, up_to, roles")
    if "below" in raw and "up_to" in raw:
        raise PolicyConfigError(f"{where}: give either below (exclusive) or up_to (inclusive), not both")
    roles = raw.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise PolicyConfigError(f"{where}.roles: must be a list of role names")
    if "below" in raw:
        return Tier(tuple(roles), _parse_bound(raw["below"], f"{where}.below"), inclusive=False)
    if "up_to" in raw:
        return Tier(tuple(roles), _parse_bound(raw["up_to"], f"{where}.up_to"), inclusive=True)
    return Tier(tuple(roles))


def _check_tiers(tiers: tuple[Tier, ...], source: str) -> None:
    if not tiers:
        raise PolicyConfigError(f"{source}: needs at least one tier")
    previous: Decimal | None = None
    for i, tier in enumerate(tiers):
        where = f"{source}: tiers[{i}]"
        if not tier.roles:
            raise PolicyConfigError(f"{where}.roles: must name at least one role "
                                    f"({', '.join(APPROVAL_ROLES)})")
        for role in tier.roles:
            if role not in APPROVAL_ROLES:
                raise PolicyConfigError(f"{where}.roles: {role!r} is not an approval role; "
                                        f"use {', '.join(APPROVAL_ROLES)}")
        last = i == len(tiers) - 1
        if last and tier.bound_major is not None:
            raise PolicyConfigError(f"{where}: the last tier must have no bound (drop below/up_to) "
                                    "so that every amount has a tier")
        if not last and tier.bound_major is None:
            raise PolicyConfigError(f"{where}: only the last tier may be unbounded; give it "
                                    "below or up_to")
        if tier.bound_major is not None:
            if previous is not None and tier.bound_major <= previous:
                raise PolicyConfigError(f"{where}: bounds must increase from tier to tier "
                                        f"({tier.bound_major} follows {previous})")
            previous = tier.bound_major


def missing_roles(required: tuple[str, ...], approved_roles: list[str]) -> tuple[str, ...]:
    """Roles of ``required`` (a multiset) that ``approved_roles`` do not cover, sorted."""
    need = Counter(required)
    need.subtract(Counter(r for r in approved_roles if r in need))
    return tuple(sorted(role for role, n in need.items() for _ in range(max(n, 0))))
