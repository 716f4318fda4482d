"""Log-in, token refresh and the identity behind an access token."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.passwords import hash_password, verify_password
from server.auth.repository import UserRepository
from server.auth.tokens import ROLES, Claims, TokenInvalid, TokenIssuer
from server.clock import Clock
from server.errors import Unauthorized, ValidationFailed


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Identity:
    username: str
    role: str


class AuthService:
    def __init__(self, users: UserRepository, tokens: TokenIssuer, clock: Clock) -> None:
        self.users = users
        self.tokens = tokens
        self.clock = clock

    async def login(self, username: str, password: str) -> TokenPair:
        user = await self.users.find(username)
        password_hash = user["password_hash"] if user else None
        if not verify_password(password_hash, password) or not user or not user["active"]:
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        return self._pair(user["username"], user["role"])

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._decode(refresh_token, "refresh")
        identity = await self._active_identity(claims)
        return self._pair(identity.username, identity.role)

    async def authenticate(self, access_token: str) -> Identity:
        return await self._active_identity(self._decode(access_token, "access"))

    async def create_user(self, username: str, password: str, role: str) -> None:
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValidationFailed("password must be at least 8 characters")
        await self.users.create(username, hash_password(password), role, self.clock.now())

    def _decode(self, token: str, token_type: str) -> Claims:
        try:
            return self.tokens.decode(token, token_type)
        except TokenInvalid:
            raise Unauthorized(f"invalid or expired {token_type} token",
                               code="invalid_token") from None

    async def _active_identity(self, claims: Claims) -> Identity:
        user = await self.users.find(claims.subject)
        if not user or not user["active"] or user["role"] != claims.role:
            raise Unauthorized("user is unknown or inactive", code="invalid_token")
        return Identity(user["username"], user["role"])

    def _pair(self, username: str, role: str) -> TokenPair:
        now = self.clock.now()
        return TokenPair(access_token=self.tokens.issue(username, role, "access", now),
                         refresh_token=self.tokens.issue(username, role, "refresh", now),
                         expires_in=int(self.tokens.access_ttl.total_seconds()))
