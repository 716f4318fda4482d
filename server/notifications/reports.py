"""Africa's Talking's delivery reports: written raw to the inbox first (source
`africastalking`, kind `delivery_report`), then applied to the message they report on.

A report is form-encoded: `id` (the provider's message id), `status` (Sent, Submitted,
Buffered, Rejected, Success, Failed), `phoneNumber`, `networkCode`, `retryCount`, and
`failureReason` for Failed and Rejected. One naming no message the outbox knows (and
no send whose answer was lost to that number) is kept `needs_review`; one that cannot
be read too. Either way the provider gets its 200: the report is stored."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qs

from server.inbox import repository as inbox
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.kernel.clock import Clock
from server.notifications.outbox import SmsOutbox

log = logging.getLogger("gateway.sms")

SOURCE = "africastalking"
KIND = "delivery_report"


class ReportNotStored(Exception):
    """The report could not be written to the inbox: not acknowledged."""


@dataclass(frozen=True)
class DeliveryReport:
    message_id: str
    status: str
    phone_number: str
    failure_reason: str
    network_code: str
    retry_count: str


def read_report(raw: bytes) -> DeliveryReport | None:
    """The report in a form-encoded body; None when it has no `id` or `status`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = {name: values[-1].strip() for name, values in parse_qs(text).items()}
    if not fields.get("id") or not fields.get("status"):
        return None
    return DeliveryReport(
        fields["id"],
        fields["status"],
        fields.get("phoneNumber", ""),
        fields.get("failureReason", ""),
        fields.get("networkCode", ""),
        fields.get("retryCount", ""),
    )


class DeliveryReports:
    def __init__(self, inbox: InboxRepository, outbox: SmsOutbox, clock: Clock) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.clock = clock

    async def receive(self, raw: bytes, source_ip: str, headers: dict[str, str]) -> None:
        """Store the report, then apply it; ReportNotStored when the inbox refused it."""
        try:
            entry = await self.inbox.add(SOURCE, KIND, raw, source_ip, headers, self.clock.now())
        except Exception as err:
            log.error(
                "inbox_write_failed source=%s kind=%s error=%s body=%r",
                SOURCE,
                KIND,
                err.__class__.__name__,
                raw[:2048],
            )
            raise ReportNotStored() from err
        try:
            await self.process_entry(entry)
        except Exception as err:
            log.exception("delivery_report_failed inbox_id=%s", entry["_id"])
            await self.mark_failed(entry["_id"], err)

    async def process_entry(self, entry: InboxEntry) -> str:
        """Apply a stored report (the first time, or the inbox's replay)."""
        now = self.clock.now()
        report = read_report(inbox.decode_body(entry))
        if report is None:
            await self.inbox.mark(
                entry["_id"], inbox.NEEDS_REVIEW, now, errors={"body": "no id or status"}
            )
            return inbox.NEEDS_REVIEW
        message = await self.outbox.apply_report(
            report.message_id,
            report.status,
            report.phone_number,
            report.failure_reason,
            entry["received_at"],
        )
        if message is None:
            log.warning(
                "delivery_report_unknown message_id=%s status=%s", report.message_id, report.status
            )
            await self.inbox.mark(
                entry["_id"],
                inbox.NEEDS_REVIEW,
                now,
                errors={"message_id": f"no message {report.message_id} in the outbox"},
            )
            return inbox.NEEDS_REVIEW
        await self.inbox.mark(entry["_id"], inbox.PROCESSED, now)
        log.info(
            "delivery_report id=%s message_id=%s status=%s",
            message["_id"],
            report.message_id,
            report.status,
        )
        return inbox.PROCESSED

    async def mark_failed(self, entry_id: str, error: BaseException) -> None:
        try:
            await self.inbox.mark(entry_id, inbox.FAILED, self.clock.now(), failure=error)
        except Exception:
            log.exception("inbox_mark_failed inbox_id=%s", entry_id)
