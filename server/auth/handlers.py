"""POST /api/v1/auth/token, /api/v1/auth/refresh and /api/v1/auth/logout."""

from __future__ import annotations

from server.auth.schemas import (
    LogoutRequestSchema,
    RefreshRequestSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from server.web.handler import BaseHandler


class TokenHandler(BaseHandler):
    async def post(self) -> None:
        request = self.load_json(TokenRequestSchema)
        pair = await self.settings["services"].auth.login(request["username"],
                                                          request["password"], self.client_ip)
        self.write_json(TokenResponseSchema().dump(pair))


class RefreshHandler(BaseHandler):
    async def post(self) -> None:
        request = self.load_json(RefreshRequestSchema)
        pair = await self.settings["services"].auth.refresh(request["refresh_token"])
        self.write_json(TokenResponseSchema().dump(pair))


class LogoutHandler(BaseHandler):
    async def post(self) -> None:
        request = self.load_json(LogoutRequestSchema)
        await self.settings["services"].auth.logout(request["refresh_token"])
        self.set_status(204)
        self.finish()
