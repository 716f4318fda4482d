"""The `notifications` settings section: how the payer is told that a payment arrived.

`kind` picks the sender the outbox works through: `log` (one log line per message, no
SMS provider), `record` (also kept in memory: the sandbox and tests) or
`africastalking` (Africa's Talking's SMS API)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from server.kernel.settings import (
    SettingError,
    increasing_schedule,
    require_choice,
    require_networks,
    require_positive,
    require_url,
    secret,
)
from server.notifications.templates import Templates, load_templates

KINDS = ("log", "record", "africastalking")
LOCAL_KINDS = ("log", "record")
PRODUCTION_URL = "https://api.africastalking.com"
SANDBOX_URL = "https://api.sandbox.africastalking.com"

_SECRET = re.compile(r"[A-Za-z0-9_-]{16,128}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8})?")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_CURRENCY_CODE = re.compile(r"([A-Z]{3})[:=]([1-9][0-9]{0,2})")


# Where Africa's Talking posts delivery reports (set the URL in its dashboard).
DELIVERY_REPORT_PATH = "/api/v1/sms/delivery-reports/{secret}"


@dataclass(frozen=True)
class NotificationSettings:
    kind: str = "log"
    # Africa's Talking: the account's username ("sandbox" on its sandbox), API key and
    # sender id (empty: the account's default sender).
    username: str = ""
    api_key: str = secret()
    sender_id: str = ""
    base_url: str = PRODUCTION_URL
    timeout_seconds: float = 10.0
    # The secret path segment of POST /api/v1/sms/delivery-reports/<secret> (empty: the
    # route answers 404), and the addresses it accepts (empty: any).
    delivery_report_secret: str = secret()
    delivery_report_ip_allowlist: tuple[str, ...] = ()
    # What the messages say: the templates' language, and a YAML file overriding them.
    language: str = "en"
    templates_path: str = ""
    # Sending: attempts per message, the waits between them, and how long a message
    # whose answer was lost waits for a delivery report before it is sent again.
    max_attempts: int = 6
    retry_backoff_seconds: tuple[str, ...] = ("30", "120", "600", "1800", "3600")
    unknown_hold_seconds: int = 900
    # The send-notifications job: how often it runs and how many messages a run sends.
    send_interval_seconds: float = 15.0
    send_batch: int = 100
    # Local numbers (without a country code) get the calling code of the payment's
    # currency ("KES:254"), else default_country_code (empty: a local number is no number).
    country_codes: tuple[str, ...] = ("KES:254", "GMD:220")
    default_country_code: str = ""

    def check(self) -> None:
        require_choice("kind", self.kind, KINDS)
        require_url("base_url", self.base_url)
        require_positive(self, ("timeout_seconds", "send_interval_seconds"))
        for key in ("max_attempts", "unknown_hold_seconds", "send_batch"):
            if getattr(self, key) < 1:
                raise SettingError(f"{key}: must be at least 1")
        self.backoff()
        if self.kind == "africastalking":
            if not self.username:
                raise SettingError("username: the Africa's Talking username is needed")
            if not self.api_key:
                raise SettingError(
                    "api_key: the Africa's Talking API key is needed "
                    "(GATEWAY_NOTIFICATIONS_API_KEY)"
                )
        if self.delivery_report_secret and not _SECRET.fullmatch(self.delivery_report_secret):
            raise SettingError(
                "delivery_report_secret: 16 to 128 letters, digits, _ or - "
                "(it is a segment of a URL)"
            )
        require_networks("delivery_report_ip_allowlist", self.delivery_report_ip_allowlist)
        if not _LANGUAGE.fullmatch(self.language):
            raise SettingError(f"language: {self.language!r} is not a language code like en")
        if self.default_country_code and not _COUNTRY_CODE.fullmatch(self.default_country_code):
            raise SettingError(
                f"default_country_code: {self.default_country_code!r} is not a calling "
                "code like 254"
            )
        self.calling_codes()
        self.templates()

    @property
    def local(self) -> bool:
        """No SMS provider: the log and record kinds deliver at once, in-process."""
        return self.kind in LOCAL_KINDS

    def backoff(self) -> tuple[timedelta, ...]:
        """The wait after each failed attempt (the last one repeats)."""
        return increasing_schedule(
            "retry_backoff_seconds", self.retry_backoff_seconds, "seconds", "30,120,600"
        )

    def calling_codes(self) -> dict[str, str]:
        """Currency -> the calling code of its country's local numbers."""
        codes = {}
        for entry in self.country_codes:
            match = _CURRENCY_CODE.fullmatch(entry.strip())
            if match is None:
                raise SettingError(
                    f"country_codes: {entry!r} is not a currency and its calling code, like KES:254"
                )
            codes[match.group(1)] = match.group(2)
        return codes

    def country_code(self, currency: str) -> str:
        return self.calling_codes().get(currency, self.default_country_code)

    def templates(self) -> Templates:
        """The message templates (defaults, overridden by templates_path), checked."""
        try:
            return load_templates(self.templates_path, self.language)
        except ValueError as err:
            raise SettingError(f"templates_path: {err}") from None

    @property
    def unknown_hold(self) -> timedelta:
        return timedelta(seconds=self.unknown_hold_seconds)
