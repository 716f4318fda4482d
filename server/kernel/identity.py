"""Who made a request: what the HTTP layer checks roles against and services record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    username: str
    role: str
