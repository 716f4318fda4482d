"""The `psp_api` settings section: the payment providers' API."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import SettingError


@dataclass(frozen=True)
class PspApiSettings:
    rate_limit_per_minute: int = 120

    def check(self) -> None:
        if self.rate_limit_per_minute < 0:
            raise SettingError("rate_limit_per_minute: must be 0 (off) or more")
