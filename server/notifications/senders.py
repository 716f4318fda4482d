"""Who sends a message: a provider (Africa's Talking), or the local notifier of the log
and record kinds. A sender answers one message with `Accepted`, or raises the
transport's typed errors: `ProviderRejected` (the provider said no, with its code),
`ProviderUnavailable` (nothing was sent), `ProviderOutcomeUnknown` (it may have been)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from server.integrations.notifications import Notification, Notifier


@dataclass(frozen=True)
class Outgoing:
    recipient: str  # +<country code><number>
    text: str
    reference: str  # the payment's receipt (for the local notifier's line)
    event: str


@dataclass(frozen=True)
class Accepted:
    message_id: str
    status_code: int
    status: str  # the provider's word: Processed, Success, Queued
    cost: str


class Sender(Protocol):
    # In-process (log, record): nothing is noted before the send, nothing reports later.
    local: bool

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Around one run of the job (a provider without a shared session opens one)."""
        ...

    async def send(self, message: Outgoing) -> Accepted: ...


class LocalSender:
    """The log and record kinds: the notifier takes every message; nothing can be down."""

    local = True

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield

    async def send(self, message: Outgoing) -> Accepted:
        await self.notifier.notify(
            Notification(message.recipient, message.reference, message.text, event=message.event)
        )
        return Accepted(f"local-{uuid.uuid4().hex}", 100, "Processed", "0")

    async def not_sent(self, notification: Notification) -> None:
        """A message decided without sending (opted out, no reachable number)."""
        await self.notifier.notify(notification)
