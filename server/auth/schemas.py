"""Wire formats of the token endpoints."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, validate

from server.kernel.identifiers import USERNAME
from server.kernel.schemas import StrictSchema


class LoginName(fields.String):
    """A username as typed at login: normalised like a new one, but not held to the
    pattern, so that an account named before the pattern existed can still log in (a
    name no account has is refused like a wrong password)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return USERNAME.normalise(super()._deserialize(value, attr, data, **kwargs))


class TokenRequestSchema(StrictSchema):
    username = LoginName(required=True, validate=validate.Length(min=1, max=100))
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
