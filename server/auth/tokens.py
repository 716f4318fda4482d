"""HS256 JWTs: short-lived access tokens and longer-lived refresh tokens.

A refresh token also carries its id (`jti`) and its family (`fam`), the keys of its
record in the store (server/auth/sessions.py); access tokens are not recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

ALGORITHM = "HS256"
ROLES = ("admin", "operator", "psp")


class TokenInvalid(Exception):
    """Expired, tampered, wrongly signed or of the wrong type."""


@dataclass(frozen=True)
class Claims:
    subject: str
    role: str
    token_type: str
    token_id: str | None = None  # refresh tokens only
    family: str | None = None  # refresh tokens only


class TokenIssuer:
    def __init__(self, secret: str, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(
        self,
        subject: str,
        role: str,
        token_type: str,
        now: datetime,
        *,
        token_id: str | None = None,
        family: str | None = None,
    ) -> str:
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl
        payload = {
            "sub": subject,
            "role": role,
            "typ": token_type,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        if token_id is not None and family is not None:
            payload.update(jti=token_id, fam=family)
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, expected_type: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as err:
            raise TokenInvalid(str(err)) from None
        if payload.get("typ") != expected_type or payload.get("role") not in ROLES:
            raise TokenInvalid(f"not an {expected_type} token")
        token_id, family = payload.get("jti"), payload.get("fam")
        if expected_type == "refresh" and not (
            isinstance(token_id, str) and isinstance(family, str)
        ):
            raise TokenInvalid("refresh token without an id and a family")
        return Claims(
            subject=str(payload["sub"]),
            role=payload["role"],
            token_type=expected_type,
            token_id=token_id,
            family=family,
        )
