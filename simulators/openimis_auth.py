"""Logins and CSRF sessions as openIMIS gives them (core 1.11 over graphql_jwt).

Tokens are HS256 JWTs whose payload carries ``username``, ``exp`` and ``origIat``
(plus ``jti`` and ``nbf``, as openIMIS's encoder adds); the messages are
graphql_jwt's. A session is what Django keeps behind the session cookie: here only
the CSRF token ``getCsrfToken`` stored in it. Each ``getCsrfToken`` stores a fresh
token, so only the latest one of a session is accepted.
"""

from __future__ import annotations

import secrets
import string
import uuid
from calendar import timegm
from datetime import UTC, datetime

import jwt

from simulators.common import JsonObject

ALGORITHM = "HS256"
REFRESH_SECONDS = 30 * 24 * 3600  # openIMIS's JWT_REFRESH_EXPIRATION_DELTA
SIGNATURE_EXPIRED = "Signature has expired"
_SESSION_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class TokenRefused(Exception):
    """A bearer token graphql_jwt refuses; the message is graphql_jwt's."""


def _now() -> int:
    return timegm(datetime.now(UTC).utctimetuple())


class Tokens:
    """Issues and reads login tokens; rotate() invalidates every one issued so far."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def rotate(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, username: str, ttl_seconds: float) -> JsonObject:
        """What ``tokenAuth`` answers: ``{token, payload, refreshExpiresIn}``."""
        now = _now()
        payload = {"username": username, "exp": now + int(ttl_seconds), "origIat": now}
        claims = {**payload, "jti": str(uuid.uuid4()), "nbf": now}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return {"token": token, "payload": payload, "refreshExpiresIn": now + REFRESH_SECONDS}

    def user(self, authorization: str | None) -> str | None:
        """The user a ``Bearer <token>`` header names; None without one (anonymous).

        A header of another form counts as no token, as in graphql_jwt.
        """
        parts = (authorization or "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        try:
            claims = jwt.decode(
                parts[1], self._key, algorithms=[ALGORITHM], options={"require": ["exp"]}
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused(SIGNATURE_EXPIRED) from None
        except jwt.DecodeError:
            raise TokenRefused("Error decoding signature") from None
        except jwt.InvalidTokenError:
            raise TokenRefused("Invalid token") from None
        username = claims.get("username")
        if not isinstance(username, str) or not username:
            raise TokenRefused("Invalid payload")
        return username


class Sessions:
    """Session id (the cookie's value) -> the CSRF token stored in that session."""

    def __init__(self) -> None:
        self._csrf: dict[str, str] = {}

    def clear(self) -> None:
        self._csrf.clear()

    def new_csrf_token(self, session_id: str | None) -> tuple[str, str]:
        """Store a fresh CSRF token in that session (a new one when it is unknown).

        Returns (session id, token); the caller sets the cookie when the id is new.
        """
        if session_id not in self._csrf:
            session_id = "".join(secrets.choice(_SESSION_ALPHABET) for _ in range(32))
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(64))
        self._csrf[session_id] = token
        return session_id, token

    def csrf_problem(self, session_id: str | None, header: str | None) -> str | None:
        """Why openIMIS's CSRF check would fail, in its words, or None when it passes.

        It reads ``request.session['csrftoken']``, then the ``X-CSRFToken`` header
        (``request.META['HTTP_X_CSRFTOKEN']``): a missing one is a KeyError whose text
        is the quoted key.
        """
        stored = self._csrf.get(session_id or "")
        if stored is None:
            return "'csrftoken'"
        if header is None:
            return "'HTTP_X_CSRFTOKEN'"
        if not secrets.compare_digest(stored.encode(), header.encode("utf-8", "surrogatepass")):
            return "CSRF token missing or incorrect."
        return None
