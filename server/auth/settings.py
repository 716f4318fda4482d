"""The `auth` settings section: tokens, login throttling, password hashing."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import secret


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str = secret()
    access_token_minutes: int = 15
    refresh_token_hours: int = 168
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window_minutes: int = 15
    password_hash_threads: int = 2
