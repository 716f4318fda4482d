"""Log-in, token refresh and logout, and the identity behind an access token."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from server.auth.passwords import PasswordHashing
from server.auth.repository import UserRepository
from server.auth.sessions import RefreshSessions
from server.auth.throttle import LoginThrottle, Throttled
from server.auth.tokens import ROLES, Claims, TokenInvalid, TokenIssuer
from server.kernel.clock import Clock
from server.kernel.errors import TooManyRequests, Unauthorized, ValidationFailed
from server.kernel.identifiers import USERNAME
from server.kernel.identity import Identity
from server.kernel.metrics import Metrics

log = logging.getLogger("gateway.auth")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class AuthService:
    def __init__(
        self,
        users: UserRepository,
        tokens: TokenIssuer,
        sessions: RefreshSessions,
        passwords: PasswordHashing,
        throttle: LoginThrottle,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.users = users
        self.tokens = tokens
        self.sessions = sessions
        self.passwords = passwords
        self.throttle = throttle
        self.clock = clock
        self.metrics = metrics

    async def login(self, username: str, password: str, source: str | None = None) -> TokenPair:
        """`source` is the caller's address (None for callers inside the process): failed
        logins are throttled per username and per address before any password check."""
        throttled = await self.throttle.admit(username, source)
        if throttled is not None:
            self._refused(f"throttled_{throttled.reason}", username, source)
            raise _too_many(throttled)
        try:
            user = await self.users.find(username)
            password_hash = user["password_hash"] if user else None
            matches = await self.passwords.verify(password_hash, password)
        except BaseException:  # cancelled too (shutdown): give the reserved checks back
            await self.throttle.release(username, source)
            raise
        if not matches or not user or not user["active"]:
            await self.throttle.failed(username, source)
            self._refused("invalid_credentials", username, source)
            raise Unauthorized("invalid username or password", code="invalid_credentials")
        await self.throttle.succeeded(username, source)
        return await self._pair(user["username"], user["role"])

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: the presented token is used up and the next one of its family issued."""
        claims = self._decode(refresh_token, "refresh")
        await self.sessions.use(claims)
        identity = await self._active_identity(claims)
        return await self._pair(identity.username, identity.role, claims.family)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family; access tokens run out on their own."""
        await self.sessions.end(self._decode(refresh_token, "refresh"))

    async def authenticate(self, access_token: str) -> Identity:
        return await self._active_identity(self._decode(access_token, "access"))

    async def create_user(self, username: str, password: str, role: str) -> None:
        username = USERNAME.normalise(username)
        if not USERNAME.is_valid(username):
            raise ValidationFailed(f"username must be {USERNAME.allowed}")
        if role not in ROLES:
            raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise ValidationFailed("password must be at least 8 characters")
        await self.users.create(
            username, await self.passwords.hash(password), role, self.clock.now()
        )

    def close(self) -> None:
        self.passwords.close()

    def _refused(self, reason: str, username: str, source: str | None) -> None:
        self.metrics.login_refusals.labels(reason).inc()
        log.info(
            "login_refused reason=%s username=%s source=%s",
            reason,
            json.dumps(username),
            source or "-",
        )

    def _decode(self, token: str, token_type: str) -> Claims:
        try:
            return self.tokens.decode(token, token_type)
        except TokenInvalid:
            raise Unauthorized(
                f"invalid or expired {token_type} token", code="invalid_token"
            ) from None

    async def _active_identity(self, claims: Claims) -> Identity:
        user = await self.users.find(claims.subject)
        if not user or not user["active"] or user["role"] != claims.role:
            raise Unauthorized("user is unknown or inactive", code="invalid_token")
        return Identity(user["username"], user["role"])

    async def _pair(self, username: str, role: str, family: str | None = None) -> TokenPair:
        refresh_token = await self.sessions.issue(username, role, family)
        return TokenPair(
            access_token=self.tokens.issue(username, role, "access", self.clock.now()),
            refresh_token=refresh_token,
            expires_in=int(self.tokens.access_ttl.total_seconds()),
        )


def _too_many(throttled: Throttled) -> TooManyRequests:
    """The same answer whether the username, known or not, or the address is locked."""
    return TooManyRequests(
        "too many failed logins; try again later",
        {"retry_after_seconds": throttled.retry_after},
        code="too_many_login_attempts",
        headers={"Retry-After": str(throttled.retry_after)},
    )
