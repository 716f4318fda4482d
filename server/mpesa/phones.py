"""Kenyan mobile numbers in the one form M-Pesa Express takes: 2547XXXXXXXX or
2541XXXXXXXX (the 07 and 01 ranges)."""

from __future__ import annotations

import re

_FORMS = re.compile(r"(?:\+?254|0)([17]\d{8})")


class NotAKenyanPhone(ValueError):
    """The text is not a Kenyan mobile number in any common form."""


def kenyan_phone(text: str) -> str:
    """`07XXXXXXXX`, `01XXXXXXXX`, `+2547...`, `2547...`, `2541...` (spaces, dashes and
    dots between digits allowed) as `2547XXXXXXXX` / `2541XXXXXXXX`."""
    compact = re.sub(r"[\s.-]", "", text)
    match = _FORMS.fullmatch(compact)
    if match is None:
        raise NotAKenyanPhone(
            f"{text!r} is not a Kenyan mobile number: use 07XXXXXXXX, 01XXXXXXXX, "
            "+2547XXXXXXXX or 2547XXXXXXXX"
        )
    return "254" + match.group(1)
