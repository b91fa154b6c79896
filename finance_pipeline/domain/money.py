"""Money as integer minor units with an ISO 4217 code. Never floats."""

from __future__ import annotations

from dataclasses import dataclass

# Active ISO 4217 alphabetic codes and the exponent of their minor unit.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
        "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
        "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR ISK JMD KES KGS KHR KPW KYD "
        "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD "
        "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
        "SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS "
        "VES WST XCD XCG YER ZAR ZMW ZWG".split(),
        2,
    ),
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}


class CurrencyError(ValueError):
    """An unknown or badly written currency code."""


def is_currency(code: object) -> bool:
    """True for an active ISO 4217 alphabetic code written in capitals."""
    return isinstance(code, str) and code in _EXPONENTS


def minor_exponent(code: str) -> int:
    """Digits after the decimal point in ``code``'s minor unit (USD 2, JPY 0, KWD 3)."""
    try:
        return _EXPONENTS[code]
    except KeyError:
        raise CurrencyError(
            f"unknown currency {code!r}: use an ISO 4217 alphabetic code in capitals, e.g. 'USD'"
        ) from None


def known_currencies() -> frozenset[str]:
    return frozenset(_EXPONENTS)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise TypeError(f"amount_minor must be an int, got {type(self.amount_minor).__name__}")
        minor_exponent(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(f"cannot combine {self.currency} with {other.currency}")

    def format(self) -> str:
        """Human text such as ``USD 1,234.50`` or ``JPY 1,200`` (display only)."""
        exp = minor_exponent(self.currency)
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exp)
        text = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
        return f"{self.currency} {sign}{text}"

    def __str__(self) -> str:
        return self.format()
