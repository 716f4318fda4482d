"""Wire formats of the token endpoints."""

from __future__ import annotations

from marshmallow import fields, validate

from server.identifiers import USERNAME
from server.schemas import IdentifierField, StrictSchema


class TokenRequestSchema(StrictSchema):
    username = IdentifierField(USERNAME, required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class RefreshRequestSchema(StrictSchema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class LogoutRequestSchema(RefreshRequestSchema):
    """The refresh token of the session to end."""


class TokenResponseSchema(StrictSchema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String(validate=validate.OneOf(["Bearer"]), dump_default="Bearer")
    expires_in = fields.Integer()
