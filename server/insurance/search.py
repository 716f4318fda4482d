"""Finding insurees from what an operator types: an insuree number, or names.

A number is matched whole. Names are matched by the start of a first or last name,
each word of the text on its own (`awa jal` finds Awa Jallow), through the indexes on
the two names: an anchored pattern reads a range of an index, never the collection.
An index compares case, so each word is tried as typed, Capitalised, UPPER and lower,
the ways names are stored; a name stored in another mix of case (McDonald) is found by
those letters as stored (`McD`) or by its insuree's number."""

from __future__ import annotations

import re
from typing import Any

from server.kernel.identifiers import CHF_ID

# Words of a name search beyond these are ignored: three words name anyone.
MAX_WORDS = 3


def insuree_query(text: str) -> dict[str, Any]:
    """The filter on insurees for `text` (not empty)."""
    text = text.strip()
    number = CHF_ID.normalise(text)
    if CHF_ID.is_valid(number):
        return {"chf_id": number}
    words = text.split()[:MAX_WORDS]
    if not words:
        raise ValueError("nothing to search for")
    return {"$and": [_either_name(word) for word in words]}


def _either_name(word: str) -> dict[str, Any]:
    spellings = dict.fromkeys((word, word.capitalize(), word.upper(), word.lower()))
    starts = [{"$regex": f"^{re.escape(spelling)}"} for spelling in spellings]
    return {"$or": [{field: start} for field in ("last_name", "first_name") for start in starts]}
