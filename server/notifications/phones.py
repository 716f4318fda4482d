"""A payer's number in the one form an SMS provider takes: ``+`` and the international
number (E.164), from whatever form a payment or an insuree record gave it.

``+254708374149``, ``00254708374149``, ``254708374149``, ``0708374149`` and
``708374149`` are one Kenyan number (calling code 254, nine national digits); a
Gambian local number has seven digits (``7712345`` is ``+2207712345``). Spaces, dots,
dashes, slashes and brackets between digits are dropped. A masked (``2547 ***** 126``)
or hashed (64 hex digits) number, or anything else that is not digits, is no number."""

from __future__ import annotations

import re

# National significant digits per calling code, for the countries the gateway serves
# and their neighbours; another country's local numbers take 6 to 12 digits.
NATIONAL_DIGITS = {
    "254": 9,  # Kenya
    "255": 9,  # Tanzania
    "256": 9,  # Uganda
    "250": 9,  # Rwanda
    "220": 7,  # The Gambia
    "221": 9,  # Senegal
    "224": 9,  # Guinea
    "232": 8,  # Sierra Leone
    "233": 9,  # Ghana
    "234": 10,  # Nigeria
}

_SEPARATORS = re.compile(r"[\s.\-/()]")
_DIGITS = re.compile(r"[0-9]+")


def international(text: str | None, country_code: str = "") -> str | None:
    """`text` as ``+<country code><national number>``, or None when it is not a clear
    phone number. `country_code` (e.g. ``254``) completes a number given without one;
    without it such a number is None."""
    if not text:
        return None
    compact = _SEPARATORS.sub("", text)
    explicit = compact.startswith(("+", "00"))
    digits = compact[1:] if compact.startswith("+") else compact[2:] if explicit else compact
    if not _DIGITS.fullmatch(digits):
        return None
    if explicit:
        return _e164(digits)
    if country_code and digits.startswith(country_code):
        national = digits[len(country_code) :]
        if _national_fits(country_code, national):
            return f"+{digits}"
    if not country_code:
        return None
    national = digits[1:] if digits.startswith("0") else digits  # the trunk prefix
    return f"+{country_code}{national}" if _national_fits(country_code, national) else None


def _e164(digits: str) -> str | None:
    return f"+{digits}" if 7 <= len(digits) <= 15 and digits[0] != "0" else None


def _national_fits(country_code: str, national: str) -> bool:
    if not national or national[0] == "0":
        return False
    expected = NATIONAL_DIGITS.get(country_code)
    if expected is not None:
        return len(national) == expected
    return 6 <= len(national) <= 12 and len(country_code) + len(national) <= 15


def masked(number: str) -> str:
    """The number with all but its last three digits hidden, for logs."""
    return number[:4] + "*" * max(len(number) - 7, 0) + number[-3:] if len(number) > 7 else "***"
