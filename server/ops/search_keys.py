"""What the desk's search asks each source for: the exact, normalised keys a typed text
can be, and the forms a phone number is stored in.

A source is asked only for the keys the text can be (a TransID, an insuree number, a
premium receipt, an id, a phone number...), and only by equality on an indexed field:
nothing is matched by prefix or pattern.

Phones: a payer's number reaches a paybill payment in the form M-Pesa sent it, clear
(`254708374149`), masked (`2547 ***** 149`, Daraja v2) or hashed (the SHA-256 hex digest
of `254708374149`, v1). A Kenyan number typed in any common form is looked up in all
three; a masked form matches every number with the same first four and last three
digits, so such a match is only possibly the payer. A non-Kenyan number is looked up
only as typed (digits, with and without `+`): no masked or hashed form of it is known.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from server.kernel.identifiers import CHF_ID, PSP_TRANSACTION_ID, TRANS_ID
from server.mpesa.phones import NotAKenyanPhone, kenyan_phone

# A premium's receipt: R- and 12 hexadecimal digits (server.ledger.settlement).
RECEIPT = re.compile(r"R-[0-9A-F]{12}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HASH = re.compile(r"[0-9a-fA-F]{64}")
# A masked number as typed: visible leading digits, asterisks, visible trailing digits.
MASKED = re.compile(r"\+?(\d{3,6})\s*\*+\s*(\d{2,4})")
DIGITS = re.compile(r"\+?\d{7,15}")
SEPARATORS = re.compile(r"[\s.\-/()]")
# Longest text an account number (BillRefNumber) or a payer (wallet) is looked up as.
ACCOUNT_CHARS = 40


@dataclass(frozen=True)
class PhoneForms:
    """The stored forms one typed number can have."""

    clear: tuple[str, ...] = ()  # insurees' phones, debits' payers, clear MSISDNs
    masked: tuple[str, ...] = ()  # Daraja v2
    hashed: tuple[str, ...] = ()  # Daraja v1

    @property
    def msisdns(self) -> tuple[str, ...]:
        return (*self.clear, *self.masked, *self.hashed)


@dataclass(frozen=True)
class SearchKeys:
    text: str  # as typed, without surrounding whitespace
    trans_id: str | None  # an M-Pesa receipt (TransID), upper-cased
    chf_id: str | None  # an insuree number
    receipt: str | None  # a premium's receipt, upper-cased
    uuid: str | None  # a transaction, policy, premium or inbox entry id, lower-cased
    references: tuple[str, ...]  # a provider's reference (PSP transaction id, CheckoutRequestID)
    account: str | None  # a paybill account number (BillRefNumber) or a debit's payer
    phone: PhoneForms


def search_keys(text: str) -> SearchKeys:
    text = text.strip()
    trans_id = TRANS_ID.normalise(text)
    reference = PSP_TRANSACTION_ID.normalise(text)
    references = (reference, reference.upper()) if PSP_TRANSACTION_ID.is_valid(reference) else ()
    return SearchKeys(
        text=text,
        trans_id=trans_id if TRANS_ID.is_valid(trans_id) else None,
        chf_id=text if CHF_ID.is_valid(text) else None,
        receipt=text.upper() if RECEIPT.fullmatch(text.upper()) else None,
        uuid=text.lower() if UUID.fullmatch(text.lower()) else None,
        references=tuple(dict.fromkeys(references)),
        account=text if len(text) <= ACCOUNT_CHARS and not any(c.isspace() for c in text) else None,
        phone=phone_forms(text),
    )


def phone_forms(text: str) -> PhoneForms:
    """The forms `text` can be stored in, if it is a phone number (clear, masked or a
    digest); PhoneForms() when it is none."""
    text = text.strip()
    masked = MASKED.fullmatch(text)
    if masked:
        return PhoneForms(masked=(f"{masked.group(1)} ***** {masked.group(2)}",))
    if HASH.fullmatch(text):
        return PhoneForms(hashed=tuple(dict.fromkeys((text.lower(), text.upper()))))
    try:
        number = kenyan_phone(text)
    except NotAKenyanPhone:
        compact = SEPARATORS.sub("", text)
        if not DIGITS.fullmatch(compact):
            return PhoneForms()
        digits = compact.lstrip("+")
        return PhoneForms(clear=tuple(dict.fromkeys((compact, digits, "+" + digits))))
    national = number[3:]
    digest = hashlib.sha256(number.encode()).hexdigest()
    return PhoneForms(
        clear=(number, "+" + number, "0" + national, national),
        masked=(f"{number[:4]} ***** {number[-3:]}",),
        hashed=(digest, digest.upper()),
    )
