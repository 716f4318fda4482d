"""The `notifications` settings section: how a payer is told of a payment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotificationSettings:
    kind: str = "log"
