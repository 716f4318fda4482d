"""HS256 JWTs: short-lived access tokens and longer-lived refresh tokens."""

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


class TokenIssuer:
    def __init__(self, secret: str, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self._secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(self, subject: str, role: str, token_type: str, now: datetime) -> str:
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl
        payload = {"sub": subject, "role": role, "typ": token_type,
                   "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, expected_type: str) -> Claims:
        try:
            payload = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                 options={"require": ["exp", "iat", "sub"]})
        except jwt.PyJWTError as err:
            raise TokenInvalid(str(err)) from None
        if payload.get("typ") != expected_type or payload.get("role") not in ROLES:
            raise TokenInvalid(f"not an {expected_type} token")
        return Claims(subject=str(payload["sub"]), role=payload["role"],
                      token_type=expected_type)
