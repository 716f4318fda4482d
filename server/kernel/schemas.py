"""Schema building blocks shared by the API's packages."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from server.kernel.identifiers import Identifier
from server.kernel.money import MINOR_UNIT_EXPONENTS


@functools.cache
def shared(schema: type[Schema]) -> Schema:
    """One instance per schema class: building a marshmallow schema costs more than
    loading a body with it, and loading keeps no state on the instance."""
    return schema()


class StrictSchema(Schema):
    """Our own APIs refuse unknown fields."""

    class Meta:
        unknown = RAISE


CURRENCY = validate.OneOf(sorted(MINOR_UNIT_EXPONENTS))

# Why an operator acted (a dismissal, a replay, a resolution, ...): kept with the act.
REASON = validate.Length(min=3, max=500)


class ReasonSchema(StrictSchema):
    """The body of an operator's act that only needs its reason."""

    reason = fields.String(required=True, validate=REASON)


class Whole(validate.Regexp):
    """The value matches `pattern` whole (`re.fullmatch`). validate.Regexp alone uses
    `re.match`, which anchors only the start, and a `$` there also matches before a
    final newline. `regex` keeps the anchored form the OpenAPI document shows."""

    def __init__(self, pattern: str, *, error: str) -> None:
        super().__init__(f"^(?:{pattern})$" if "|" in pattern else f"^{pattern}$", error=error)
        self.whole = re.compile(pattern)

    def __call__(self, value: Any) -> Any:
        if self.whole.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class IdentifierField(fields.String):
    """An identifier: normalised by its rule (server.identifiers), then matched whole."""

    def __init__(self, rule: Identifier, **kwargs: Any) -> None:
        super().__init__(
            validate=Whole(rule.pattern.pattern, error=f"must be {rule.allowed}"), **kwargs
        )
        self.rule = rule

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return self.rule.normalise(super()._deserialize(value, attr, data, **kwargs))


class AtLeastOneField(StrictSchema):
    @validates_schema
    def not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one field to change")


class PageQuerySchema(StrictSchema):
    """Pagination parameters accepted by every list endpoint."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


def page_body(items: list, total: int, limit: int, offset: int) -> dict:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def iso_day(value: datetime | None) -> str | None:
    return value.date().isoformat() if value else None


def iso_stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None
