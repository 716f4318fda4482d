"""Identifier rules: one normalisation, then the whole value matched against one pattern.

Wherever an identifier enters (a request body, a URL path, a Daraja callback) it is
normalised before it is validated, stored, compared or looked up, so two spellings of
one identifier can never be two records: surrounding whitespace is removed and, for
M-Pesa transaction ids, letters are upper-cased. The normalised value must then match
its pattern whole (`re.fullmatch`): no identifier holds inner whitespace or control
characters. The README's Security section has the same rules as a table."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Identifier:
    pattern: re.Pattern[str]
    allowed: str  # the pattern in words, for error messages
    upper: bool = False

    def normalise(self, text: str) -> str:
        text = text.strip()
        return text.upper() if self.upper else text

    def is_valid(self, text: str) -> bool:
        return self.pattern.fullmatch(text) is not None


def _rule(pattern: str, allowed: str, *, upper: bool = False) -> Identifier:
    return Identifier(re.compile(pattern), allowed, upper)


# An M-Pesa transaction id (TransID; the receipt number M-Pesa texts the payer).
TRANS_ID = _rule(r"[A-Z0-9]{1,64}", "1-64 letters or digits", upper=True)
SHORTCODE = _rule(r"[0-9]{1,12}", "1-12 digits")
# The insuree number (openIMIS CHF id), also a paybill payment's account number.
CHF_ID = _rule(r"[0-9]{1,20}", "1-20 digits")
PSP_TRANSACTION_ID = _rule(r"[A-Za-z0-9._:/-]{1,64}", "1-64 letters, digits or . _ : / -")
USERNAME = _rule(r"[A-Za-z0-9._@-]{1,100}", "1-100 letters, digits or . _ @ -")
PRODUCT_CODE = _rule(r"[A-Za-z0-9_-]{1,20}", "1-20 letters, digits, _ or -")
