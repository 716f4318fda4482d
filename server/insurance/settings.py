"""The `insurance` and `openimis` settings sections: where insurees, policies and
premiums are kept (the gateway's own collections, or the scheme's openIMIS)."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import tzinfo

from server.kernel.settings import (
    SettingError,
    require_choice,
    require_positive,
    require_url,
    secret,
)

BUILT_IN, OPENIMIS = "builtin", "openimis"

# openIMIS's pay types: bank, cash, mobile phone, funding.
PAY_TYPES = ("B", "C", "M", "F")


@dataclass(frozen=True)
class InsuranceSettings:
    backend: str = BUILT_IN

    def check(self) -> None:
        require_choice("backend", self.backend, (BUILT_IN, OPENIMIS))


@dataclass(frozen=True)
class OpenimisSettings:
    """The openIMIS backend (read only with `insurance.backend: openimis`)."""

    url: str = "http://127.0.0.1:8083"
    username: str = ""
    password: str = secret()
    pay_type: str = "M"
    currency: str = "KES"  # openIMIS keeps amounts without a currency
    # The zone of the scheme's days: a premium's pay date is the day it was paid there.
    timezone: str = "Africa/Nairobi"
    timeout_seconds: float = 15.0
    # How long an insuree's policies read from openIMIS serve the callbacks that follow.
    cache_seconds: float = 30.0
    # How long a premium's mutation is followed (mutationLogs) before the next run.
    mutation_deadline_seconds: float = 20.0
    # Backoff between attempts to write a premium while openIMIS is unreachable.
    retry_first_seconds: int = 30
    retry_max_seconds: int = 900

    def check(self) -> None:
        require_url("url", self.url)
        require_choice("pay_type", self.pay_type, PAY_TYPES)
        require_positive(
            self,
            (
                "timeout_seconds",
                "cache_seconds",
                "mutation_deadline_seconds",
                "retry_first_seconds",
                "retry_max_seconds",
            ),
        )
        if self.retry_max_seconds < self.retry_first_seconds:
            raise SettingError("retry_max_seconds: must not be less than retry_first_seconds")
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise SettingError(f"currency: {self.currency!r} is not a currency code")
        self.zone()

    def zone(self) -> tzinfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise SettingError(
                f"timezone: {self.timezone!r} is not a time zone name, e.g. Africa/Nairobi"
            ) from None
