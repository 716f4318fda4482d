"""What the list endpoints share beyond paging: a sort chosen from a short list, and an
amount range given as decimal strings.

Each list names the few sorts its indexes serve (a list of `field` and `-field`, `-`
for descending); the sort is completed with a unique field in the same direction, so
that pages never repeat or skip an item whose time equals another's."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from server.kernel.errors import ValidationFailed
from server.kernel.money import AmountError, parse_amount
from server.kernel.schemas import Whole

# A non-negative decimal amount (its places are checked against the currency later).
AMOUNT_TEXT = Whole(
    r"(0|[1-9][0-9]{0,12})(\.[0-9]+)?", error="must be a decimal string like '10.50'"
)


def sort_field(choices: tuple[str, ...]) -> fields.String:
    """The `sort` query parameter: one of `choices`, the first by default."""
    return fields.String(
        load_default=choices[0],
        validate=validate.OneOf(choices),
        metadata={"description": f"order of the items; `-` is descending (default {choices[0]})"},
    )


def amount_field(bound: str) -> fields.String:
    """`min_amount` or `max_amount`: a decimal string, in the list's currency."""
    return fields.String(
        validate=[validate.Length(max=32), AMOUNT_TEXT],
        metadata={"description": f"{bound} amount (inclusive), a decimal string like '150.00'"},
    )


def sort_keys(sort: str, tiebreak: str) -> list[tuple[str, int]]:
    """`-trans_time` -> [("trans_time", -1), (tiebreak, -1)]."""
    direction = -1 if sort.startswith("-") else 1
    return [(sort.lstrip("-"), direction), (tiebreak, direction)]


def amount_range(filters: dict[str, Any], currency: str) -> dict[str, Any]:
    """`{"amount": {"$gte": min, "$lte": max}}` in minor units of `currency` from the
    optional min_amount/max_amount filters; 400 for an amount with more places than the
    currency has, or a minimum above the maximum."""
    bounds: dict[str, int] = {}
    for key, operator in (("min_amount", "$gte"), ("max_amount", "$lte")):
        if key in filters:
            try:
                bounds[operator] = parse_amount(filters[key], currency)
            except AmountError as err:
                raise _invalid(key, str(err)) from None
    if bounds.get("$gte", 0) > bounds.get("$lte", bounds.get("$gte", 0)):
        raise _invalid("min_amount", "must not be more than max_amount")
    return {"amount": bounds} if bounds else {}


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed("query parameters are invalid", {"fields": {field: [message]}})
