"""Building blocks of the marshmallow schemas that describe the API's answers.

Each package keeps the schema of an answer beside the render_* function that builds
it, key for key: a key the function always writes is `required`, a value it may leave
empty is `allow_none`, and unknown keys are refused, so the tests can check real
answers against the OpenAPI document and notice when the two drift apart. The schemas
only describe: no answer is built with them."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate


def text(*, nullable: bool = False, **kwargs: Any) -> fields.String:
    return fields.String(required=True, allow_none=nullable, **kwargs)


def one_of(values: tuple | list, *, nullable: bool = False, **kwargs: Any) -> fields.String:
    return text(nullable=nullable, validate=validate.OneOf(values), **kwargs)


def count() -> fields.Integer:
    return fields.Integer(required=True)


def amount() -> fields.String:
    return text(
        metadata={"description": "decimal string with the currency's places", "example": "500.00"}
    )


def stamp(*, nullable: bool = False, **kwargs: Any) -> fields.DateTime:
    return fields.DateTime(required=True, allow_none=nullable, **kwargs)


def day(*, nullable: bool = False) -> fields.Date:
    return fields.Date(required=True, allow_none=nullable)


def nested(schema: type[Schema], *, nullable: bool = False) -> fields.Nested:
    return fields.Nested(schema, required=True, allow_none=nullable)


def list_of(schema: type[Schema]) -> fields.List:
    return fields.List(fields.Nested(schema), required=True)


class PageSchema(Schema):
    """What every list endpoint answers (server.kernel.schemas.page_body)."""

    total = count()
    limit = count()
    offset = count()


def page_of(item: type[Schema]) -> type[Schema]:
    """The page of `item`s, named after it: TransactionSchema -> TransactionPageSchema.
    Make it once per item schema (the OpenAPI document names components by class)."""
    name = item.__name__.removesuffix("Schema") + "PageSchema"
    return PageSchema.from_dict({"items": list_of(item)}, name=name)


class ErrorBodySchema(Schema):
    code = text(metadata={"example": "validation_error"})
    message = text(metadata={"example": "request body is invalid"})
    details = fields.Dict(
        required=True,
        metadata={"description": "more about the error, e.g. `fields` naming the invalid fields"},
    )


class ErrorSchema(Schema):
    """The single error shape of every endpoint except the Daraja callbacks."""

    error = nested(ErrorBodySchema)
