"""The SMS receipts' parts, as the composition root builds them from the settings."""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp

from server.inbox.repository import InboxRepository
from server.insurance.service import InsureeService
from server.integrations.notifications import Notifier
from server.integrations.transport import CallLog
from server.kernel.clock import Clock
from server.kernel.metrics import Metrics
from server.kernel.store import Store
from server.notifications.africastalking import AfricasTalkingSender
from server.notifications.notices import NoticeSource
from server.notifications.outbox import SmsOutbox
from server.notifications.reports import DeliveryReports
from server.notifications.repository import OutboxRepository
from server.notifications.senders import LocalSender, Sender
from server.notifications.settings import NotificationSettings


def make_sender(
    settings: NotificationSettings,
    notifier: Notifier,
    session: aiohttp.ClientSession | None,
    calls: CallLog | None,
) -> Sender:
    """Africa's Talking for that kind; else the local notifier (log, record)."""
    if settings.kind == "africastalking":
        return AfricasTalkingSender(session, settings, calls)
    return LocalSender(notifier)


def sms_receipts(
    settings: NotificationSettings,
    store: Store,
    inbox: InboxRepository,
    insurees: InsureeService,
    sender: Sender,
    clock: Clock,
    metrics: Metrics,
    phone_channels: Iterable[str],
    notice_sources: Iterable[str],
) -> tuple[SmsOutbox, DeliveryReports]:
    outbox = SmsOutbox(
        OutboxRepository(store),
        insurees,
        sender,
        settings.templates(),
        settings,
        clock,
        metrics,
        phone_channels=frozenset(phone_channels),
        sources=[NoticeSource(store, name) for name in notice_sources],
    )
    return outbox, DeliveryReports(inbox, outbox, clock)
