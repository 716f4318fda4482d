"""The in-process notifier the `log` and `record` notification kinds deliver through.

Payer messages go through the SMS outbox (server.notifications); with no SMS provider
configured, the outbox hands each message to a Notifier at once: `LogNotifier` writes
one log line, `RecordingNotifier` also keeps it in memory (the sandbox and tests read
`sent`). A message the outbox decides not to send (the insuree opted out, no reachable
number) is handed over too, with that `status`, so what the payer would have been told
stays visible."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("gateway.notify")

SENT = "sent"


@dataclass(frozen=True)
class Notification:
    # The number the message went to; when none was reachable, the payer's number as
    # the payment gave it (clear, masked or hashed), or "".
    recipient: str
    reference: str  # the provider's receipt of the payment (e.g. the M-Pesa TransID)
    message: str
    status: str = SENT  # sent, or why not: opted_out, unreachable
    event: str = ""  # premium_paid | payment_received


class Notifier(Protocol):
    async def notify(self, notification: Notification) -> None: ...


def _hidden(recipient: str) -> str:
    """A number in a log line: all but its first four and last three characters hidden."""
    if len(recipient) <= 7:
        return "***"
    return recipient[:4] + "*" * (len(recipient) - 7) + recipient[-3:]


class LogNotifier:
    """Default: one log line per message (no SMS provider configured)."""

    async def notify(self, notification: Notification) -> None:
        log.info(
            "notification reference=%s event=%s status=%s recipient=%s message=%r",
            notification.reference,
            notification.event or "-",
            notification.status,
            _hidden(notification.recipient),
            notification.message,
        )


class RecordingNotifier(LogNotifier):
    """Logs and keeps every message handed over in memory (sandbox and tests)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    @property
    def delivered(self) -> list[Notification]:
        """The messages a phone would have received (`sent`, without the ones not sent)."""
        return [notification for notification in self.sent if notification.status == SENT]

    async def notify(self, notification: Notification) -> None:
        self.sent.append(notification)
        await super().notify(notification)


def make_notifier(kind: str) -> Notifier:
    """The notifier of the local kinds; with an SMS provider it only logs what a local
    sender would (the outbox sends through the provider instead)."""
    return RecordingNotifier() if kind == "record" else LogNotifier()
