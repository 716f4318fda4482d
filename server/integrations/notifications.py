"""Customer notifications after a confirmed payment, behind one small interface."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("gateway.notify")


@dataclass(frozen=True)
class Notification:
    recipient: str  # MSISDN in the form the provider sent it (clear, masked or hashed)
    reference: str  # the provider's transaction id
    message: str


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None: ...


class LogNotifier:
    """Default: one log line per notification (no SMS gateway configured)."""

    async def notify(self, notification: Notification) -> None:
        log.info(
            "notification reference=%s recipient=%s message=%r",
            notification.reference,
            notification.recipient,
            notification.message,
        )


class RecordingNotifier(LogNotifier):
    """Logs and keeps every notification in memory (sandbox and tests)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def notify(self, notification: Notification) -> None:
        self.sent.append(notification)
        await super().notify(notification)


def make_notifier(kind: str) -> Notifier:
    return RecordingNotifier() if kind == "record" else LogNotifier()
