"""The `daraja` (API client) and `c2b` (paybill callbacks) settings sections."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import secret


@dataclass(frozen=True)
class DarajaSettings:
    base_url: str = "https://sandbox.safaricom.co.ke"
    consumer_key: str = secret()
    consumer_secret: str = secret()
    shortcode: str = "600984"
    register_version: str = "v2"
    response_type: str = "Completed"
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class C2BSettings:
    callback_secret: str = secret()
    currency: str = "KES"
    ip_allowlist: tuple[str, ...] = ()
    validation_account_pattern: str = r"[0-9A-Za-z]{1,20}"   # matched whole (fullmatch)
    validation_min_amount: str = "1"
    validation_max_amount: str = "250000"
    validation_shortcodes: tuple[str, ...] = ()
    validation_deadline_seconds: float = 5.0
    validation_fallback: str = "accept"
    validation_match_policy: bool = False
