"""Amounts: decimal strings on the wire, integer minor units plus a currency in storage.

No float ever touches an amount: parsing is done on the text itself.
"""

from __future__ import annotations

import re

# ISO 4217 exponents of the currencies the gateway settles in.
MINOR_UNIT_EXPONENTS: dict[str, int] = {"KES": 2, "GMD": 2, "USD": 2, "TZS": 2, "UGX": 0}

# Up to 13 integer digits keeps every amount far inside a signed 64-bit integer.
_AMOUNT = re.compile(r"(?P<whole>0|[1-9][0-9]{0,12})(?:\.(?P<fraction>[0-9]+))?")


class AmountError(ValueError):
    """The text is not a valid amount in the given currency."""


class AmountNotPositive(AmountError):
    """The amount is zero or negative where only more than zero is allowed."""


def exponent(currency: str) -> int:
    """Number of decimal places of a currency's minor unit."""
    try:
        return MINOR_UNIT_EXPONENTS[currency]
    except KeyError:
        raise AmountError(f"unsupported currency {currency!r}") from None


def parse_amount(text: str, currency: str) -> int:
    """Parse a non-negative decimal string ("5", "5.5", "5.00") into minor units.

    More decimal places than the currency has are refused unless they are zeros
    ("5.000" is 500 cents; "5.001" is an error), so no amount is ever rounded.
    """
    places = exponent(currency)
    if not isinstance(text, str):
        raise AmountError("amount must be a decimal string")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise AmountError(f"amount {text!r} is not a decimal number like '10.50'")
    fraction = (match.group("fraction") or "").rstrip("0")
    if len(fraction) > places:
        raise AmountError(f"amount {text!r} has more than {places} decimal places for {currency}")
    return int(match.group("whole")) * 10**places + int(fraction.ljust(places, "0") or "0")


def parse_positive_amount(text: str, currency: str) -> int:
    """Parse an amount that must be more than zero: a price, a policy's value, a payment."""
    if isinstance(text, str) and text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
        raise AmountNotPositive(f"amount {text!r} is negative: it must be greater than 0")
    minor = parse_amount(text, currency)
    if minor <= 0:
        raise AmountNotPositive(f"amount {text!r} must be greater than 0")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """Render minor units as a decimal string with the currency's places ("5.00")."""
    places = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{places}d}"
