"""The `daraja` (API client) and `c2b` (paybill callbacks) settings sections."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from server.kernel.money import AmountError, parse_amount
from server.kernel.settings import (
    SettingError,
    increasing_schedule,
    require_choice,
    require_networks,
    require_positive,
    require_url,
    secret,
)
from server.mpesa.callback_urls import forbidden_word_in


@dataclass(frozen=True)
class DarajaSettings:
    base_url: str = "https://sandbox.safaricom.co.ke"
    consumer_key: str = secret()
    consumer_secret: str = secret()
    shortcode: str = "600984"
    register_version: str = "v2"
    response_type: str = "Completed"
    timeout_seconds: float = 10.0
    # M-Pesa Express (STK Push): the passkey Safaricom issued for the shortcode, the
    # shortcode (or till) prompts pay to ("" = `shortcode`), and how it is paid.
    passkey: str = secret()
    stk_shortcode: str = ""
    stk_transaction_type: str = "CustomerPayBillOnline"
    # Seconds after a push at which the prompt's status is asked while no callback came.
    stk_status_checks_seconds: tuple[str, ...] = ("30", "120", "300")
    # Reconciliation. Transaction Status and Account Balance act as an org-portal API
    # user (the initiator), whose password is sent encrypted with M-Pesa's certificate.
    initiator: str = ""
    initiator_password: str = secret()
    certificate_path: str = ""
    # Pull Transactions: off until the shortcode is registered (`run.py register-pull`).
    pull_enabled: bool = False
    pull_nominated_number: str = ""  # the phone M-Pesa registers the pull for
    pull_overlap_minutes: int = 60  # each pull looks this far behind the last one's end

    def check(self) -> None:
        require_url("base_url", self.base_url)
        require_choice("register_version", self.register_version, ("v1", "v2"))
        require_choice("response_type", self.response_type, ("Completed", "Cancelled"))
        require_positive(self, ("timeout_seconds",))
        require_choice("stk_transaction_type", self.stk_transaction_type, STK_TRANSACTION_TYPES)
        if self.stk_shortcode and not self.stk_shortcode.isdigit():
            raise SettingError(f"stk_shortcode: {self.stk_shortcode!r} is not a shortcode")
        self.stk_status_checks()
        if not 0 < self.pull_overlap_minutes <= PULL_WINDOW_MINUTES:
            raise SettingError(
                f"pull_overlap_minutes: must be between 1 and {PULL_WINDOW_MINUTES} "
                "(Pull Transactions reaches 48 hours back)"
            )

    @property
    def stk_business_shortcode(self) -> str:
        """The shortcode (or till) an STK prompt pays to."""
        return self.stk_shortcode or self.shortcode

    def stk_status_checks(self) -> tuple[timedelta, ...]:
        """When, after a push, the prompt's status is asked: at least one, increasing."""
        return increasing_schedule(
            "stk_status_checks_seconds", self.stk_status_checks_seconds, "seconds", "30,120,300"
        )


# How far back Pull Transactions reaches.
PULL_WINDOW_MINUTES = 48 * 60

STK_TRANSACTION_TYPES = ("CustomerPayBillOnline", "CustomerBuyGoodsOnline")


@dataclass(frozen=True)
class C2BSettings:
    callback_secret: str = secret()
    currency: str = "KES"
    ip_allowlist: tuple[str, ...] = ()
    validation_account_pattern: str = r"[0-9A-Za-z]{1,20}"  # matched whole (fullmatch)
    validation_min_amount: str = "1"
    validation_max_amount: str = "250000"
    validation_shortcodes: tuple[str, ...] = ()
    validation_deadline_seconds: float = 5.0
    validation_fallback: str = "accept"
    validation_match_policy: bool = False

    def check(self) -> None:
        require_choice("validation_fallback", self.validation_fallback, ("accept", "reject"))
        try:
            re.compile(self.validation_account_pattern)
        except re.error as err:
            raise SettingError(f"validation_account_pattern: invalid pattern ({err})") from None
        limits = {}
        for key in ("validation_min_amount", "validation_max_amount"):
            try:
                limits[key] = parse_amount(getattr(self, key), self.currency)
            except AmountError as err:
                raise SettingError(f"{key}: {err}") from None
        if limits["validation_min_amount"] > limits["validation_max_amount"]:
            raise SettingError(
                f"validation_min_amount: {self.validation_min_amount} is above "
                f"c2b.validation_max_amount ({self.validation_max_amount})"
            )
        if not 0 < self.validation_deadline_seconds < 8:
            raise SettingError(
                "validation_deadline_seconds: must be between 0 and 8 "
                "(Daraja waits about 8 s for the answer)"
            )
        self._check_callback_secret()
        require_networks("ip_allowlist", self.ip_allowlist)

    def _check_callback_secret(self) -> None:
        if not self.callback_secret:
            return
        if not re.fullmatch(r"[A-Za-z0-9_-]{8,128}", self.callback_secret):
            raise SettingError("callback_secret: use 8-128 letters, digits, '-' or '_'")
        word = forbidden_word_in(self.callback_secret)
        if word:
            raise SettingError(f"callback_secret: contains {word!r}, which Daraja refuses in URLs")
