"""POST /api/v1/auth/token, /api/v1/auth/refresh and /api/v1/auth/logout: the handlers,
what each answers (server.web.operations) and the routes."""

from __future__ import annotations

from server.auth.schemas import (
    LogoutRequestSchema,
    RefreshRequestSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from server.web.handler import BaseHandler
from server.web.operations import BODY, Operation

REFRESH_TOKEN_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZnJpbW9uZXkifQ.c2lnbmF0dXJl"
)


class TokenHandler(BaseHandler):
    operations = {
        "post": Operation(
            "Log in: an access and a refresh token",
            "auth",
            TokenResponseSchema,
            body=TokenRequestSchema,
            example={"username": "afrimoney", "password": "sandbox-afrimoney"},
            errors=(*BODY, 401, 429),
            description="Failed logins are throttled per username and per source address "
            "(auth.login_max_failures_per_user and _per_address within "
            "auth.login_failure_window_minutes): past the limit the answer is 429 "
            "`too_many_login_attempts` with `Retry-After`, before any password "
            "check, known username or not.",
        )
    }

    async def post(self) -> None:
        request = self.load_json(TokenRequestSchema)
        pair = await self.settings["services"].auth.login(
            request["username"], request["password"], self.client_ip
        )
        self.write_json(TokenResponseSchema().dump(pair))


class RefreshHandler(BaseHandler):
    operations = {
        "post": Operation(
            "A new token pair for a refresh token",
            "auth",
            TokenResponseSchema,
            body=RefreshRequestSchema,
            example={"refresh_token": REFRESH_TOKEN_EXAMPLE},
            errors=(*BODY, 401),
            description="Rotates: the presented refresh token is used up (401 afterwards). "
            "Presenting a used one again revokes its whole session (401).",
        )
    }

    async def post(self) -> None:
        request = self.load_json(RefreshRequestSchema)
        pair = await self.settings["services"].auth.refresh(request["refresh_token"])
        self.write_json(TokenResponseSchema().dump(pair))


class LogoutHandler(BaseHandler):
    operations = {
        "post": Operation(
            "End a session: revoke its refresh tokens",
            "auth",
            None,
            body=LogoutRequestSchema,
            example={"refresh_token": REFRESH_TOKEN_EXAMPLE},
            success={204: "Revoked (also when it already was)"},
            errors=(*BODY, 401),
            description="Revokes every refresh token of the session; an access token "
            "already issued stays valid until it expires. 401 for a token that "
            "is invalid, expired or unknown.",
        )
    }

    async def post(self) -> None:
        request = self.load_json(LogoutRequestSchema)
        await self.settings["services"].auth.logout(request["refresh_token"])
        self.set_status(204)
        self.finish()


ROUTES = [
    (r"/api/v1/auth/token", TokenHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
]
