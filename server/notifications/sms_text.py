"""How many SMS a text takes: GSM-7 when every character is in the GSM 03.38 sets,
else UCS-2.

A GSM-7 text of up to 160 septets is one SMS; a longer one is sent in parts of 153
(each part carries a 7-septet header that joins them on the phone). A character of the
extension table (``€ [ ] { } ^ ~ | \\`` and form feed) takes two septets and never
straddles two parts. Any other character makes the whole text UCS-2: 70 UTF-16 units in
one SMS, else parts of 67, a surrogate pair never split."""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

GSM7, UCS2 = "GSM-7", "UCS-2"


@dataclass(frozen=True)
class Encoded:
    encoding: str  # GSM-7 or UCS-2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


def is_gsm7(text: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def encode(text: str) -> Encoded:
    """The encoding the text is sent in and how many parts it takes."""
    if is_gsm7(text):
        encoding, single, part = GSM7, GSM7_SINGLE, GSM7_PART
        sizes = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding, single, part = UCS2, UCS2_SINGLE, UCS2_PART
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    units = sum(sizes)
    if units <= single:
        return Encoded(encoding, units, 1)
    parts, used = 1, 0
    for size in sizes:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return Encoded(encoding, units, parts)
