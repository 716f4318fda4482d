"""Wire formats of `POST /api/graphql`: the request body (GraphQL over HTTP) and the
answer, which is also the shape of every error it answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from server.kernel.schemas import StrictSchema
from server.seed_graphql.limits import MAX_QUERY_CHARS


class GraphQLRequestSchema(StrictSchema):
    query = fields.String(required=True, validate=validate.Length(min=1, max=MAX_QUERY_CHARS))
    variables = fields.Dict(keys=fields.String(), load_default=None, allow_none=True)
    operationName = fields.String(  # GraphQL over HTTP's name
        load_default=None, allow_none=True, validate=validate.Length(max=200)
    )
    extensions = fields.Dict(
        load_default=None,
        allow_none=True,
        metadata={"description": "taken and not used (some clients always send it)"},
    )


class LocationSchema(Schema):
    line = fields.Integer(required=True)
    column = fields.Integer(required=True)


class GraphQLErrorSchema(Schema):
    message = fields.String(required=True)
    locations = fields.List(fields.Nested(LocationSchema))
    path = fields.List(fields.Raw(), metadata={"description": "field names and list indexes"})
    extensions = fields.Dict(
        metadata={"description": "`code`: the gateway's error code; `details`: more"}
    )


class GraphQLAnswerSchema(Schema):
    """What every answer of `POST /api/graphql` is: `data` (null when the document could
    not run), `errors` when something failed."""

    data = fields.Dict(allow_none=True)
    errors = fields.List(fields.Nested(GraphQLErrorSchema))
