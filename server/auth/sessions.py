"""Refresh tokens as stored sessions: rotated on every use, revocable, shared by every
gateway process through the store.

A login starts a family. Each refresh marks the presented token used (a
compare-and-set, so of two refreshes with one token only one succeeds) and issues
the next token of the family. A token presented again after it was used means it
was copied: the whole family is revoked, its newest token included. Logout revokes
the family too. Access tokens are not recorded: they stay valid until they expire
(auth.access_token_minutes)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from server.auth.refresh_tokens import RefreshTokenRepository
from server.auth.tokens import Claims, TokenIssuer
from server.kernel.clock import Clock
from server.kernel.errors import Unauthorized

log = logging.getLogger("gateway.auth")


class RefreshSessions:
    def __init__(self, records: RefreshTokenRepository, tokens: TokenIssuer, clock: Clock) -> None:
        self.records = records
        self.tokens = tokens
        self.clock = clock

    async def issue(self, username: str, role: str, family: str | None = None) -> str:
        """A recorded refresh token: the first of a new family, or the next of `family`."""
        now = self.clock.now()
        token_id, family = uuid.uuid4().hex, family or uuid.uuid4().hex
        await self.records.add(token_id, family, username, now, now + self.tokens.refresh_ttl)
        # Checked after the record exists, so a revocation racing this refresh is seen
        # here or has marked the new record too.
        if await self.records.family_revoked(family):
            raise Unauthorized("refresh token has been revoked", code="invalid_token")
        return self.tokens.issue(username, role, "refresh", now, token_id=token_id, family=family)

    async def use(self, claims: Claims) -> None:
        """Mark the token used; refused when it is unknown, revoked or used before (which
        revokes its family)."""
        token_id = _token_id(claims)
        if await self.records.claim(token_id, self.clock.now()):
            return
        record = await self._record(token_id)
        if record["revoked_at"] is not None:
            raise Unauthorized("refresh token has been revoked", code="invalid_token")
        revoked = await self.records.revoke_family(record["family"], self.clock.now(), "reuse")
        log.warning(
            "refresh_token_reused username=%s family=%s revoked=%s",
            record["username"],
            record["family"],
            revoked,
        )
        raise Unauthorized(
            "refresh token was already used; its session is revoked", code="invalid_token"
        )

    async def end(self, claims: Claims) -> None:
        """Log out: revoke the token's family. Idempotent for a recorded token."""
        record = await self._record(_token_id(claims))
        revoked = await self.records.revoke_family(record["family"], self.clock.now(), "logout")
        log.info(
            "logout username=%s family=%s revoked=%s", record["username"], record["family"], revoked
        )

    async def _record(self, token_id: str) -> dict[str, Any]:
        record = await self.records.find(token_id)
        if record is None:  # never issued here, or expired and removed
            raise Unauthorized("refresh token is unknown", code="invalid_token")
        return record


def _token_id(claims: Claims) -> str:
    if claims.token_id is None:  # TokenIssuer.decode refuses refresh tokens without one
        raise Unauthorized("invalid or expired refresh token", code="invalid_token")
    return claims.token_id
