"""The `auth` settings section: tokens, login throttling, password hashing."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import SettingError, require_positive, secret


@dataclass(frozen=True)
class AuthSettings:
    jwt_secret: str = secret()
    access_token_minutes: int = 15
    refresh_token_hours: int = 168
    login_max_failures_per_user: int = 5
    login_max_failures_per_address: int = 20
    login_failure_window_minutes: int = 15
    password_hash_threads: int = 2

    def check(self) -> None:
        require_positive(self, ("access_token_minutes", "refresh_token_hours"))
        for key in (
            "login_max_failures_per_user",
            "login_max_failures_per_address",
            "login_failure_window_minutes",
        ):
            if getattr(self, key) < 1:
                raise SettingError(f"{key}: must be at least 1")
        if not 1 <= self.password_hash_threads <= 32:
            raise SettingError("password_hash_threads: must be between 1 and 32")
