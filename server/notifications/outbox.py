"""The payer's SMS receipts: written with the payment, sent by a job, told apart by
the provider's delivery reports.

A message is written inside the document whose insert makes it due, in that same
insert: the premium's (`premium_notice`: the settlement's notice, for every channel) or
a paybill payment's that could not be applied (`payment_received_notice`). It is never
lost apart from its payment and costs the payment no write of its own. The
send-notifications job first copies the waiting messages into the outbox (`collect`,
once per event and payment, in batches; server/notifications/notices.py).

Sending (`send_due`, the same job) claims each due message with a
compare-and-set, decides at that moment whom it goes to (the payer's clear number from
the payment, else the insuree's phone on file; an opted-out insuree gets nothing),
renders its template and hands it to the sender:

- accepted: `sent` (the provider's message id and cost), later `delivered` or `failed`
  by its delivery reports;
- refused for good (invalid number 403, unsupported number type 404, blacklisted 406,
  do-not-disturb 409, or a request that cannot be sent as it is): `failed`;
- refused otherwise, or the provider unavailable: tried again after
  notifications.retry_backoff_seconds, `failed` after notifications.max_attempts;
- the answer lost (timeout, connection cut after the request left): `unknown`, never
  sent again at once. A delivery report for its number that arrives after the send
  adopts it (its message id, its status); without one, it is sent again after
  notifications.unknown_hold_seconds: without delivery reports a lost answer may mean a
  second SMS, never none.

A run stops at the first sign that the provider is down or refuses the account (its
messages stay due; their attempts are not spent). With the log and record kinds there
is no provider: the job hands each message to the local notifier."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, cast

from server.insurance.documents import Insuree, Policy
from server.insurance.service import InsureeService
from server.integrations.notifications import Notification
from server.integrations.transport import (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.kernel.errors import NotFound
from server.kernel.metrics import Metrics
from server.kernel.money import format_amount
from server.kernel.store import time_window
from server.ledger import documents as ledger
from server.ledger.documents import Transaction
from server.notifications import documents as doc
from server.notifications.documents import OutboxMessage
from server.notifications.notices import NoticeSource
from server.notifications.phones import international, masked
from server.notifications.repository import OutboxRepository
from server.notifications.senders import LocalSender, Outgoing, Sender
from server.notifications.settings import NotificationSettings
from server.notifications.sms_text import encode
from server.notifications.templates import PAYMENT_RECEIVED, PREMIUM_PAID, Templates

log = logging.getLogger("gateway.sms")

# A recipient refused with one of these codes is never sent the message again.
PERMANENT_CODES = frozenset({"403", "404", "406", "409", "http_400"})
# Refusals that concern the account, not the message: the run stops (the rest would fare
# no better); the refused message is tried again later.
ACCOUNT_CODES = frozenset({"402", "405"})

# BETWEEN_BATCHES: the job lets the requests waiting on the event loop in between. The
# in-memory store answers without ever yielding, so a run of thousands of messages would
# otherwise hold every request for its whole length (a second and more).

# The counts of a run of the job.
RECORDED, SENT, FAILED, RETRIED, UNKNOWN = "recorded", "sent", "failed", "retried", "unknown"
OPTED_OUT, UNREACHABLE, SUPERSEDED = "opted_out", "unreachable", "superseded"
SOURCES_FAILED = "sources_failed"  # notice sources that could not be read: logged, retried
SUMMARY_KEYS = (
    RECORDED,
    SENT,
    FAILED,
    RETRIED,
    UNKNOWN,
    OPTED_OUT,
    UNREACHABLE,
    SUPERSEDED,
    SOURCES_FAILED,
)
# The failing messages the summary lists.
FAILING = (doc.FAILED, doc.UNREACHABLE)
FAILING_LISTED = 50
# Notices copied into the outbox per read, and reads per source per run.
COLLECT_BATCH = 100
COLLECT_BATCHES = 100


@dataclass(frozen=True)
class Decision:
    """Whom a message goes to and what it says; or, with `status`, why it is not sent."""

    text: str
    recipient: str | None
    status: str | None = None  # opted_out | unreachable
    note: str = ""
    failure: doc.Failure | None = None


@dataclass(frozen=True)
class Delivered:
    """What became of one claimed message: its summary key, and whether the run goes on."""

    outcome: str | None  # None: a delivery report settled it while it was being sent
    go_on: bool = True


class SmsOutbox:
    def __init__(
        self,
        outbox: OutboxRepository,
        insurees: InsureeService,
        sender: Sender,
        templates: Templates,
        settings: NotificationSettings,
        clock: Clock,
        metrics: Metrics,
        *,
        phone_channels: frozenset[str] = frozenset(),
        sources: Sequence[NoticeSource] = (),
    ) -> None:
        """`phone_channels`: the channels whose payer is a phone number (a wallet or a
        provider's customer is not one). `sources`: the collections whose documents
        carry notices."""
        self.outbox = outbox
        self.insurees = insurees
        self.sender = sender
        self.templates = templates
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.phone_channels = phone_channels
        self.sources = sources
        self.backoff = settings.backoff()
        self.interval = timedelta(seconds=settings.send_interval_seconds)

    @property
    def local_notifier(self) -> Any:
        """The notifier of the log and record kinds (None with a provider)."""
        return self.sender.notifier if isinstance(self.sender, LocalSender) else None

    @local_notifier.setter
    def local_notifier(self, notifier: Any) -> None:
        if isinstance(self.sender, LocalSender):
            self.sender.notifier = notifier

    # --- notices ------------------------------------------------------------------

    def premium_notice(
        self, transaction: Transaction, settlement: ledger.Settlement, policy: Policy
    ) -> dict[str, Any]:
        """The settlement's notice: the premium's receipt, carried in the premium's own
        document (whichever the channel)."""
        hint = transaction.get("payer") if transaction["channel"] in self.phone_channels else None
        receipt = (
            transaction.get("provider_confirmation")
            or transaction.get("provider_reference")
            or settlement.get("receipt")
            or transaction["_id"]
        )
        return doc.pending_notice(
            self._message(
                PREMIUM_PAID,
                transaction["channel"],
                transaction["_id"],
                amount=transaction["amount"],
                currency=transaction["currency"],
                receipt=receipt,
                phone_hint=hint,
                chf_id=policy["chf_id"],
                policy_uuid=policy["_id"],
                product={"code": policy["product_code"], "name": policy["product_name"]},
                premium_receipt=settlement.get("receipt"),
                effective_date=settlement.get("effective_date") or policy.get("effective_date"),
            )
        )

    def payment_received_notice(
        self,
        *,
        channel: str,
        reference: str,
        amount: int,
        currency: str,
        account: str,
        phone_hint: str | None,
    ) -> dict[str, Any]:
        """Money arrived that could not be applied to a policy (yet): carried in the
        payment's own document."""
        return doc.pending_notice(
            self._message(
                PAYMENT_RECEIVED,
                channel,
                reference,
                amount=amount,
                currency=currency,
                receipt=reference,
                phone_hint=phone_hint,
                account=account,
            )
        )

    def _message(
        self,
        event: str,
        channel: str,
        payment_key: str,
        *,
        amount: int,
        currency: str,
        receipt: str,
        phone_hint: str | None,
        chf_id: str | None = None,
        policy_uuid: str | None = None,
        product: doc.Product | None = None,
        premium_receipt: str | None = None,
        account: str | None = None,
        effective_date: datetime | None = None,
    ) -> OutboxMessage:
        now = self.clock.now()
        return {
            "_id": f"{event}:{payment_key}",
            "event": event,
            "channel": channel,
            "payment_key": payment_key,
            "chf_id": chf_id,
            "policy_uuid": policy_uuid,
            "product": product,
            "amount": amount,
            "currency": currency,
            "receipt": receipt,
            "premium_receipt": premium_receipt,
            "account": account,
            "effective_date": effective_date,
            "phone_hint": phone_hint or None,
            "status": doc.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "claim": None,
            "message_id": None,
            "provider_status": None,
            "cost": None,
            "failure": None,
            "recipient": None,
            "text": None,
            "parts": None,
            "encoding": None,
            "attempted_at": None,
            "created_at": now,
            "updated_at": now,
            "history": [{"at": now, "status": doc.PENDING, "note": "recorded"}],
        }

    async def collect(self) -> int:
        """Copy the notices waiting in the payments' and premiums' documents into the
        outbox; returns how many messages were new."""
        new, _ = await self._collect()
        return new

    async def _collect(self) -> tuple[int, int]:
        """(new messages, sources that failed). A source that fails is logged and left
        for the next run: sending goes on."""
        new = failed = 0
        for source in self.sources:
            try:
                new += await self._collect_from(source)
            except Exception:
                failed += 1
                log.exception("sms_collect_failed source=%s", source.name)
        return new, failed

    async def _collect_from(self, source: NoticeSource) -> int:
        new = 0
        for _ in range(COLLECT_BATCHES):
            found = await source.pending(COLLECT_BATCH)
            if not found:
                break
            messages = [
                cast(OutboxMessage, document[doc.NOTICE])
                for document in found
                if isinstance(document.get(doc.NOTICE), dict)
            ]
            for message in await self.outbox.insert_new(messages):
                new += 1
                self._count(message, doc.PENDING)
                log.info("sms_recorded id=%s channel=%s", message["_id"], message["channel"])
            await source.clear([document["_id"] for document in found])
            if len(found) < COLLECT_BATCH:
                break
            await asyncio.sleep(0)  # BETWEEN_BATCHES
        return new

    # --- sending ----------------------------------------------------------------

    async def send_due(self) -> dict[str, int]:
        """The send-notifications job: copy the waiting notices into the outbox, then
        send what is due, up to notifications.send_batch."""
        summary = dict.fromkeys(SUMMARY_KEYS, 0)
        summary[RECORDED], summary[SOURCES_FAILED] = await self._collect()
        abandoned = await self.outbox.give_up_stale(self.clock.now(), self.settings.max_attempts)
        summary[UNKNOWN] += abandoned
        # The due messages are listed once, most overdue first, then claimed one by one
        # (a message another run claimed meanwhile is passed over).
        due = await self.outbox.due(
            self.clock.now(), self.settings.max_attempts, self.settings.send_batch
        )
        async with self.sender.running():
            for message_id in due:
                await asyncio.sleep(0)  # BETWEEN_BATCHES
                delivered = await self._send_one(message_id)
                if delivered is None:
                    continue
                if delivered.outcome is not None:
                    summary[delivered.outcome] += 1
                if not delivered.go_on:
                    break
        return summary

    async def _send_one(self, message_id: str) -> Delivered | None:
        """Claim the message and send it; None when it is no longer due."""
        now = self.clock.now()
        token = uuid.uuid4().hex
        claimed = await self.outbox.claim(
            now,
            now + self.settings.unknown_hold,
            token,
            self.settings.max_attempts,
            message_id=message_id,
        )
        if claimed is None:
            return None
        return await self._deliver(claimed, token)

    async def _deliver(self, message: OutboxMessage, token: str) -> Delivered:
        if message["event"] == PAYMENT_RECEIVED and await self.outbox.superseded_by(
            message["receipt"], PREMIUM_PAID
        ):
            note = "the payment was applied: the premium's receipt goes instead"
            await self.outbox.supersede(message["_id"], token, note, self.clock.now())
            self._count(message, doc.SUPERSEDED)
            return Delivered(SUPERSEDED)
        decision = await self._decide(message)
        if decision.status is not None:
            await self._finish(
                message,
                token,
                decision.status,
                decision.note,
                failure=decision.failure,
                text=decision.text,
            )
            await self._not_sent(message, decision)
            return Delivered(decision.status)
        recipient, text = decision.recipient, decision.text
        assert recipient is not None
        encoded = encode(text)
        now = self.clock.now()
        fields: dict[str, Any] = {
            "recipient": recipient,
            "text": text,
            "parts": encoded.parts,
            "encoding": encoded.encoding,
            "attempted_at": now,
        }
        if not self.sender.local and not await self.outbox.prepare(message["_id"], token, fields):
            return Delivered(None)
        outgoing = Outgoing(recipient, text, message["receipt"], message["event"])
        try:
            accepted = await self.sender.send(outgoing)
        except ProviderRejected as err:
            return await self._refused(message, token, fields, err)
        except ProviderUnavailable as err:
            await self._retry(message, token, fields, "unavailable", err.message)
            return Delivered(RETRIED if self._attempts_left(message) else FAILED, go_on=False)
        except ProviderOutcomeUnknown as err:
            return await self._in_doubt(message, token, fields, err.message)
        except Exception as err:  # a local notifier's failure: tried again like a provider's
            log.exception("sms_sender_failed id=%s", message["_id"])
            await self._retry(message, token, fields, "sender_error", err.__class__.__name__)
            return Delivered(RETRIED if self._attempts_left(message) else FAILED)
        finished = await self._finish(
            message,
            token,
            doc.SENT,
            f"accepted: {accepted.status_code} {accepted.status}",
            message_id=accepted.message_id,
            provider_status=accepted.status,
            cost=accepted.cost,
            **fields,
        )
        log.info(
            "sms_sent id=%s attempt=%s recipient=%s message_id=%s parts=%s",
            message["_id"],
            message["attempts"],
            masked(recipient),
            accepted.message_id,
            encoded.parts,
        )
        return Delivered(SENT if finished is not None else None)

    async def _refused(
        self, message: OutboxMessage, token: str, fields: dict[str, Any], err: ProviderRejected
    ) -> Delivered:
        request_level = err.code.startswith("http_") or not err.code.isdigit()
        go_on = not (request_level or err.code in ACCOUNT_CODES)
        if err.code in PERMANENT_CODES:
            await self._finish(
                message,
                token,
                doc.FAILED,
                f"refused for good: {err.code} {err.reason}",
                failure={"code": err.code, "reason": err.reason},
                **fields,
            )
            log.warning(
                "sms_refused id=%s code=%s reason=%s retry=no", message["_id"], err.code, err.reason
            )
            return Delivered(FAILED, go_on=go_on)
        await self._retry(message, token, fields, err.code, err.reason)
        return Delivered(RETRIED if self._attempts_left(message) else FAILED, go_on=go_on)

    def _attempts_left(self, message: OutboxMessage) -> bool:
        return message["attempts"] < self.settings.max_attempts

    async def _retry(
        self, message: OutboxMessage, token: str, fields: dict[str, Any], code: str, reason: str
    ) -> None:
        failure: doc.Failure = {"code": code, "reason": reason}
        attempts = message["attempts"]
        if not self._attempts_left(message):
            await self._finish(
                message,
                token,
                doc.FAILED,
                f"gave up after {attempts} attempts: {code} {reason}",
                failure=failure,
                **fields,
            )
            log.warning("sms_failed id=%s attempts=%s code=%s", message["_id"], attempts, code)
            return
        wait = self.backoff[min(attempts, len(self.backoff)) - 1]
        changes = {"next_attempt_at": self.clock.now() + wait, "failure": failure, **fields}
        await self._finish(
            message,
            token,
            doc.PENDING,
            f"attempt {attempts} failed ({code} {reason}); again in {int(wait.total_seconds())} s",
            keep_due=True,
            **changes,
        )
        log.info("sms_retry id=%s attempt=%s code=%s", message["_id"], attempts, code)

    async def _in_doubt(
        self, message: OutboxMessage, token: str, fields: dict[str, Any], reason: str
    ) -> Delivered:
        again = self._attempts_left(message)
        next_at = self.clock.now() + self.settings.unknown_hold if again else None
        await self._finish(
            message,
            token,
            doc.UNKNOWN,
            f"answer lost ({reason}): "
            + (
                "a delivery report adopts it, else it is sent again" if again else "no attempt left"
            ),
            keep_due=True,
            next_attempt_at=next_at,
            **fields,
        )
        log.warning(
            "sms_unknown id=%s attempt=%s reason=%s", message["_id"], message["attempts"], reason
        )
        return Delivered(UNKNOWN, go_on=False)

    async def _finish(
        self,
        message: OutboxMessage,
        token: str,
        status: str,
        note: str,
        *,
        keep_due: bool = False,
        **changes: Any,
    ) -> OutboxMessage | None:
        if not keep_due:
            changes["next_attempt_at"] = None
        finished = await self.outbox.finish(
            message["_id"], token, {"status": status, **changes}, note, self.clock.now()
        )
        if finished is not None:
            self._count(message, status)
        return finished

    async def _not_sent(self, message: OutboxMessage, decision: Decision) -> None:
        """The local kinds show a message that was not sent too (with why), addressed to
        the payer's number as the payment gave it."""
        if not isinstance(self.sender, LocalSender):
            return
        notification = Notification(
            message["phone_hint"] or "",
            message["receipt"],
            decision.text,
            decision.status or doc.SENT,
            message["event"],
        )
        try:
            await self.sender.not_sent(notification)
        except Exception:
            log.exception("sms_local_notice_failed id=%s", message["_id"])

    # --- whom, and what -----------------------------------------------------------

    async def _decide(self, message: OutboxMessage) -> Decision:
        """What the message says, and whom it goes to, or why it goes to nobody: an
        insuree who opted out, or no clear number (the payment's, else the insuree's)."""
        insuree = await self._insuree(message)
        text = self.templates.render(message["event"], self._values(message))
        if insuree is not None and insuree.get("sms_opt_out"):
            return Decision(text, None, doc.OPTED_OUT, "the insuree opted out")
        recipient = self._recipient(message, insuree)
        if recipient is None:
            failure: doc.Failure = {
                "code": "no_reachable_number",
                "reason": self._why_unreachable(message),
            }
            return Decision(text, None, doc.UNREACHABLE, "no reachable number", failure)
        return Decision(text, recipient)

    async def _insuree(self, message: OutboxMessage) -> Insuree | None:
        """The insuree the message concerns: the policy's, or the one whose number a
        payment not applied was paid to."""
        number = message["chf_id"] or message["account"]
        if not number:
            return None
        try:
            return await self.insurees.get(number)
        except NotFound:
            return None

    def _recipient(self, message: OutboxMessage, insuree: Insuree | None) -> str | None:
        """The payer's clear number as the payment gave it, else the insuree's phone."""
        country = self.settings.country_code(message["currency"])
        found = international(message["phone_hint"], country)
        if found is None and insuree is not None:
            found = international(insuree.get("phone"), country)
        return found

    @staticmethod
    def _why_unreachable(message: OutboxMessage) -> str:
        hint = message["phone_hint"]
        payer = "no payer number" if not hint else "the payer's number is not a clear number"
        whose = "no insuree" if not (message["chf_id"] or message["account"]) else "the insuree"
        return f"{payer}, and {whose} has no usable phone on file"

    @staticmethod
    def _values(message: OutboxMessage) -> dict[str, str]:
        effective = message["effective_date"]
        product = message["product"]
        return {
            "receipt": message["receipt"],
            "amount": format_amount(message["amount"], message["currency"]),
            "currency": message["currency"],
            "product": product["name"] if product else "",
            "chf_id": message["chf_id"] or "",
            "effective_date": effective.date().isoformat() if effective else "",
            "premium_receipt": message["premium_receipt"] or "",
            "account": message["account"] or "",
        }

    def _count(self, message: Mapping[str, Any], status: str) -> None:
        self.metrics.sms_messages.labels(message["event"], status).inc()

    # --- delivery reports -----------------------------------------------------------

    async def apply_report(
        self,
        message_id: str,
        status: str,
        phone_number: str,
        failure_reason: str,
        received_at: datetime,
    ) -> OutboxMessage | None:
        """A delivery report: `Success` -> delivered; `Failed`/`Rejected` -> failed
        (with the failure reason); `Buffered`/`Sent`/`Submitted` -> sent (kept until a
        final report). A final state is never changed by a later report. None when no
        message has that id and none sent to that number awaits its answer."""
        now = self.clock.now()
        target = REPORT_STATES.get(status)
        changes: dict[str, Any] = {"provider_status": status}
        if target is not None:
            changes["status"] = target
        if target == doc.DELIVERED:
            changes["delivered_at"] = now
        if target == doc.FAILED:
            changes["failure"] = {"code": status, "reason": failure_reason or status}
        note = f"delivery report {status}" + (f" ({failure_reason})" if failure_reason else "")
        moves_from = doc.REPORTABLE if target != doc.SENT else (doc.SENDING, doc.UNKNOWN, doc.SENT)
        found = await self.outbox.report(message_id, moves_from, changes, note, now)
        if found is not None:
            if target is not None:
                self._count(found, target)
            return found
        known = await self.outbox.by_provider_id(message_id)
        if known is not None:  # settled already: a repeated or late report changes nothing
            return known
        number = international(phone_number)
        if number is None:
            return None
        adopted = await self.outbox.adopt(
            number,
            received_at,
            message_id,
            {**changes, "status": target or doc.SENT},
            note + ": the report of a send whose answer was lost",
            now,
        )
        if adopted is not None:
            self._count(adopted, target or doc.SENT)
            log.info(
                "sms_adopted id=%s message_id=%s status=%s", adopted["_id"], message_id, status
            )
        return adopted

    # --- reads ----------------------------------------------------------------------

    async def messages(
        self, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[OutboxMessage], int]:
        query: dict[str, Any] = dict(time_window(filters, "created_at"))
        for key in ("status", "event", "channel", "chf_id"):
            if key in filters:
                query[key] = filters[key]
        return await self.outbox.page(query, limit, offset)

    async def daily(self, days: int) -> dict[str, Any]:
        """Messages per UTC day (by when they were recorded) and status, over the last
        `days` days, today included; and the latest failing ones with the reason."""
        today = self.clock.now().astimezone(UTC).date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, time(), tzinfo=UTC)
        counts = {
            (first + timedelta(days=n)).isoformat(): dict.fromkeys(doc.STATUSES, 0)
            for n in range(days)
        }
        for row in await self.outbox.counts_by_day(since):
            day, status = row["_id"]["day"], row["_id"]["status"]
            if day in counts and status in counts[day]:
                counts[day][status] += row["count"]
        failing, total = await self.outbox.page(
            {"status": {"$in": list(FAILING)}, "created_at": {"$gte": since}}, FAILING_LISTED, 0
        )
        return {
            "from": since,
            "days": [
                {"day": day, **by_status, "total": sum(by_status.values())}
                for day, by_status in counts.items()
            ],
            "failing": failing,
            "failing_total": total,
        }


# What a delivery report's status makes of the message.
REPORT_STATES = {
    "Success": doc.DELIVERED,
    "Failed": doc.FAILED,
    "Rejected": doc.FAILED,
    "Buffered": doc.SENT,
    "Sent": doc.SENT,
    "Submitted": doc.SENT,
}
