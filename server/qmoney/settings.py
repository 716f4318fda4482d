"""The `qmoney` settings section: the Qmoney API and its OTP debits."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import secret


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
