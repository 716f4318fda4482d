"""Schema building blocks shared by the API's packages."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate


class StrictSchema(Schema):
    """Our own APIs refuse unknown fields."""

    class Meta:
        unknown = RAISE


class PageQuerySchema(StrictSchema):
    """Pagination parameters accepted by every list endpoint."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


def page_body(items: list, total: int, limit: int, offset: int) -> dict:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
