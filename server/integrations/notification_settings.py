"""The `notifications` settings section: how a payer is told of a payment."""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.settings import require_choice


@dataclass(frozen=True)
class NotificationSettings:
    kind: str = "log"

    def check(self) -> None:
        require_choice("kind", self.kind, ("log", "record"))
