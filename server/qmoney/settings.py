"""The `qmoney` settings section: the Qmoney API and its OTP debits."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import SettingError, require_positive, require_url, secret


@dataclass(frozen=True)
class QmoneySettings:
    base_url: str = "http://127.0.0.1:8082"
    channel_id: str = ""
    channel_secret: str = secret()
    username: str = ""
    password: str = secret()
    timeout_seconds: float = 15.0
    otp_lifetime_seconds: int = 300
    max_otp_attempts: int = 3

    def check(self) -> None:
        require_url("base_url", self.base_url)
        require_positive(self, ("timeout_seconds", "otp_lifetime_seconds"))
        if not 1 <= self.max_otp_attempts <= 10:
            raise SettingError("max_otp_attempts: must be between 1 and 10")
