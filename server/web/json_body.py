"""Reading a request body as JSON: strict JSON within fixed bounds, so hostile input is
a 400 and never reaches the handlers (or the store) as something they cannot take."""

from __future__ import annotations

import json
import math
from typing import Any

from server.kernel.errors import ValidationFailed

# Deeper than any body of the API; MongoDB refuses documents nested past 100 levels.
MAX_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent. Never money: amounts are decimal
    strings on the wire, and their schemas refuse numbers."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


def parse_json(raw: bytes) -> Any:
    """The body's JSON value; ValidationFailed for anything else: not UTF-8 JSON,
    nested deeper than MAX_DEPTH, NaN or Infinity, a number out of float range or with
    more digits than Python converts (sys.get_int_max_str_digits)."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValidationFailed("request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise ValidationFailed("request body has NaN, Infinity or a number out of range") from None
    if _depth(value) > MAX_DEPTH:
        raise _too_deep()
    return value


def _too_deep() -> ValidationFailed:
    return ValidationFailed(f"request body is nested deeper than {MAX_DEPTH} levels")


def _depth(value: Any) -> int:
    """How many arrays and objects deep `value` goes (without recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in children)
    return deepest
