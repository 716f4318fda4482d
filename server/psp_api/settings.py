"""The `psp_api` settings section: the payment providers' API."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PspApiSettings:
    rate_limit_per_minute: int = 120
