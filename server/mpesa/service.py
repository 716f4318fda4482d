"""C2B rules: inbox first, then validation answers and exactly-once confirmations."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine, Mapping
from datetime import datetime
from typing import Any, cast

from marshmallow import ValidationError

from server.inbox import repository as inbox
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.integrations.notifications import Notifier
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock
from server.kernel.identifiers import TRANS_ID
from server.kernel.listing import amount_range, sort_keys
from server.kernel.metrics import Metrics
from server.kernel.money import AmountError, format_amount, parse_amount
from server.kernel.store import time_window
from server.mpesa import recovered
from server.mpesa import repository as repo
from server.mpesa.allocation import CHANNEL, SHORTCODE_NOT_SERVED, Allocation
from server.mpesa.documents import C2BPayment, PaymentState, ReceivedPayment
from server.mpesa.receipts import StkReceipts
from server.mpesa.repository import C2BPaymentRepository, InsertOutcome
from server.mpesa.rules import (
    ACCEPTED,
    CONFIRMATION_RECEIVED,
    INVALID_ACCOUNT,
    INVALID_AMOUNT,
    OTHER_ERROR,
    ValidationRules,
    rejected,
)
from server.mpesa.schemas import C2BCallback, parse_callback
from server.notifications.documents import NOTICE_STATE
from server.notifications.outbox import SmsOutbox

log = logging.getLogger("gateway.c2b")


def _same_payment(stored: C2BPayment, payment: C2BPayment) -> bool:
    """A recovered record and a confirmation (either one stored first) of one payment."""
    if "recovered" not in stored and "recovered" not in payment:
        return False  # two confirmations: their fingerprints decide

    def core(p: C2BPayment) -> tuple[int, str, str, str]:
        return p["amount"], p["currency"], p["shortcode"], p["bill_ref"]

    return core(stored) == core(payment)


# The inbox source of Daraja's paybill callbacks (validation and confirmation).
SOURCE = "daraja_c2b"


class InboxUnavailable(Exception):
    """The callback could not even be written to the inbox."""


def msisdn_form(msisdn: str) -> str:
    """Daraja v1 sends a SHA-256 digest, v2 a masked number, older APIs the clear number."""
    if not msisdn:
        return "absent"
    if len(msisdn) == 64 and all(c in "0123456789abcdefABCDEF" for c in msisdn):
        return "hashed"
    if "*" in msisdn:
        return "masked"
    return "clear" if msisdn.lstrip("+").isdigit() else "other"


def fingerprint(callback: C2BCallback, amount: int) -> str:
    """What makes two deliveries of one TransID the same payment."""
    parts = (
        callback.trans_id,
        str(amount),
        callback.shortcode,
        callback.bill_ref,
        callback.msisdn,
        callback.trans_time.isoformat(),
        callback.transaction_type,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class C2BService:
    def __init__(
        self,
        inbox: InboxRepository,
        payments: C2BPaymentRepository,
        rules: ValidationRules,
        allocation: Allocation,
        receipts: SmsOutbox,
        clock: Clock,
        *,
        validation_deadline: float,
        validation_fallback: str,
        validation_matches_policy: bool = False,
        metrics: Metrics | None = None,
        background: BackgroundTasks | None = None,
        stk_receipts: StkReceipts | None = None,
    ) -> None:
        """`receipts`: the payers' SMS outbox (a payment not applied is told it arrived);
        `stk_receipts`: links the C2B copy of an M-Pesa Express payment to its debit."""
        self.inbox = inbox
        self.stk_receipts = stk_receipts
        self.payments = payments
        self.rules = rules
        self.allocation = allocation
        self.validation_matches_policy = validation_matches_policy
        self.metrics = metrics or Metrics()
        self.receipts = receipts
        self.clock = clock
        self.validation_deadline = validation_deadline
        self.fallback_answer = (
            ACCEPTED if validation_fallback == "accept" else rejected(OTHER_ERROR)
        )
        self.background = BackgroundTasks() if background is None else background

    # --- callbacks ------------------------------------------------------

    async def validate(self, raw: bytes, source_ip: str, headers: dict[str, str]) -> dict[str, Any]:
        """Answer a validation callback within the deadline, whatever the store does.

        Past the deadline the configured fallback answers; the work goes on in the
        background so the inbox entry is still written and marked. A body that cannot
        be read is refused (C2B00016) even then: nothing would let it be accepted."""
        try:
            callback = parse_callback(raw)
        except ValidationError as err:
            work = self._keep_unreadable(raw, source_ip, headers, err)
            return await self._within_deadline(work, rejected(OTHER_ERROR))
        work = self._validate(callback, raw, source_ip, headers)
        return await self._within_deadline(work, self.fallback_answer)

    async def _within_deadline(
        self, work: Coroutine[Any, Any, dict[str, Any]], fallback: dict[str, Any]
    ) -> dict[str, Any]:
        task = asyncio.ensure_future(work)
        # asyncio.wait leaves the task running past the deadline (no shield needed).
        await asyncio.wait((task,), timeout=self.validation_deadline)
        if not task.done():
            self.background.spawn(self._finish_late(task), "c2b-late-validation")
            log.warning(
                "validation_deadline_passed deadline_s=%s answer=%s",
                self.validation_deadline,
                fallback["ResultCode"],
            )
            return fallback
        try:
            return task.result()
        except Exception:
            log.exception("validation_failed answer=%s", fallback["ResultCode"])
        return fallback

    @staticmethod
    async def _finish_late(task: asyncio.Task) -> None:
        """A validation answered by the fallback goes on as background work, so a
        stopping gateway waits for its inbox write."""
        try:
            await task
        except Exception as err:
            log.error("late_validation_failed error=%r", err)

    async def _keep_unreadable(
        self, raw: bytes, source_ip: str, headers: dict[str, str], err: ValidationError
    ) -> dict[str, Any]:
        answer = rejected(OTHER_ERROR)
        await self._record(
            "validation",
            raw,
            source_ip,
            headers,
            {"status": inbox.NEEDS_REVIEW, "answer": answer, "errors": err.messages},
        )
        self._count("validation", inbox.NEEDS_REVIEW)
        return answer

    async def _validate(
        self, callback: C2BCallback, raw: bytes, source_ip: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """Without policy matching the answer follows from the body alone, so the raw
        body is written once, with its answer, before the answer leaves: nothing is
        lost and the store takes one write. Matching reads the store, so then the raw
        body is written first and marked after."""
        code = self.rules.check(callback)
        if code is None and self.validation_matches_policy:
            entry = await self._record("validation", raw, source_ip, headers)
            code = await self._policy_check(callback)
            answer = ACCEPTED if code is None else rejected(code)
            await self.inbox.mark(
                entry["_id"],
                inbox.PROCESSED,
                self.clock.now(),
                trans_id=callback.trans_id,
                answer=answer,
            )
        else:
            answer = ACCEPTED if code is None else rejected(code)
            await self._record(
                "validation",
                raw,
                source_ip,
                headers,
                {"status": inbox.PROCESSED, "answer": answer, "trans_id": callback.trans_id},
            )
        self._count("validation", "accepted" if code is None else "rejected")
        log.info("validation trans_id=%s answer=%s", callback.trans_id, answer["ResultCode"])
        return answer

    async def _policy_check(self, callback: C2BCallback) -> str | None:
        """Reject what cannot settle a policy; several candidates are accepted and
        left to an operator."""
        if callback.transaction_type.lower() == "buy goods":
            return None
        amount = parse_amount(callback.trans_amount, self.rules.currency)
        _, reason = await self.allocation.candidate(callback.bill_ref, amount, self.rules.currency)
        return {
            "unknown_account": INVALID_ACCOUNT,
            "no_idle_policy": INVALID_AMOUNT,
            "amount_mismatch": INVALID_AMOUNT,
        }.get(reason)

    async def confirm(self, raw: bytes, source_ip: str, headers: dict[str, str]) -> dict:
        """Record a confirmation exactly once. The money has moved: never refuse it.

        Once the raw body is in the inbox the answer is success even if processing
        fails; the entry stays `failed` for replay."""
        entry = await self._record("confirmation", raw, source_ip, headers)
        try:
            await self._process_confirmation(entry["_id"], raw, entry["received_at"])
        except Exception as err:
            log.exception("confirmation_processing_failed inbox_id=%s", entry["_id"])
            await self.mark_failed(entry["_id"], err)
        return CONFIRMATION_RECEIVED

    async def _record(
        self,
        kind: str,
        raw: bytes,
        source_ip: str,
        headers: dict[str, str],
        outcome: dict[str, Any] | None = None,
    ) -> InboxEntry:
        try:
            return await self.inbox.add(
                SOURCE, kind, raw, source_ip, headers, self.clock.now(), outcome=outcome
            )
        except Exception as err:
            # Last resort so the payment can be rebuilt from the log; bodies hold no secret.
            log.error(
                "inbox_write_failed kind=%s source=%s error=%s body=%r",
                kind,
                source_ip,
                err.__class__.__name__,
                raw[:4096],
            )
            raise InboxUnavailable(kind) from err

    def _count(self, kind: str, outcome: str) -> None:
        self.metrics.callbacks.labels(kind, outcome).inc()

    async def mark_failed(self, entry_id: str, error: BaseException) -> None:
        """A confirmation whose processing failed stays `failed`, with what failed."""
        self._count("confirmation", inbox.FAILED)
        try:
            await self.inbox.mark(entry_id, inbox.FAILED, self.clock.now(), failure=error)
        except Exception:
            log.exception("inbox_mark_failed inbox_id=%s", entry_id)

    async def process_entry(self, entry: InboxEntry) -> str:
        """Process a stored confirmation again (the inbox's replay)."""
        return await self._process_confirmation(
            entry["_id"], inbox.decode_body(entry), entry["received_at"]
        )

    async def recover(self, source: str, shortcode: str, record: Mapping[str, Any]) -> str:
        """A payment M-Pesa's records show (a pulled row, a statement row): written to
        the inbox under `source`, then stored, notified and settled like a
        confirmation, exactly once per TransID. Returns the inbox entry's status: a
        record that differs from the payment stored here is `conflict` (for review)."""
        raw = recovered.record_body(shortcode, record)
        entry = await self.inbox.add(source, recovered.RECORD_KIND, raw, "", {}, self.clock.now())
        try:
            return await self.process_recovered_entry(entry)
        except Exception as err:
            log.exception("recovery_failed inbox_id=%s source=%s", entry["_id"], source)
            await self.mark_failed(entry["_id"], err)
            return inbox.FAILED

    async def process_recovered_entry(self, entry: InboxEntry) -> str:
        """Process a recovered record (first time, or the inbox's replay)."""
        now = self.clock.now()
        try:
            record = recovered.read_record(entry["source"], inbox.decode_body(entry))
            amount = self.amount_of(record.callback)
        except ValidationError as err:
            return await self._unreadable(entry["_id"], err, now)
        return await self._store(
            entry["_id"], record.callback, amount, entry["received_at"], record
        )

    async def _process_confirmation(self, entry_id: str, raw: bytes, received_at: datetime) -> str:
        try:
            callback = parse_callback(raw)
            amount = self.amount_of(callback)
        except ValidationError as err:
            return await self._unreadable(entry_id, err, self.clock.now())
        return await self._store(entry_id, callback, amount, received_at)

    async def _unreadable(self, entry_id: str, err: ValidationError, now: datetime) -> str:
        log.warning("confirmation_needs_review inbox_id=%s errors=%s", entry_id, err.messages)
        await self.inbox.mark(
            entry_id, inbox.NEEDS_REVIEW, now, errors=err.messages, answer=CONFIRMATION_RECEIVED
        )
        self._count("confirmation", inbox.NEEDS_REVIEW)
        return inbox.NEEDS_REVIEW

    async def _store(
        self,
        entry_id: str,
        callback: C2BCallback,
        amount: int,
        received_at: datetime,
        record: recovered.RecoveredRecord | None = None,
    ) -> str:
        """Store the payment once per TransID, then allocate it. A recovered record and
        a confirmation of one payment agree on amount, shortcode and account, not on
        every field: they are the same payment, and the confirmation fills in what the
        record lacked."""
        now = self.clock.now()
        received = self._payment_document(callback, amount, entry_id, received_at)
        if record is not None:
            received["recovered"] = {
                "source": record.source,
                "inbox_id": entry_id,
                "missing": list(record.missing),
            }
        matched = None
        linked: PaymentState | None = None
        if self.rules.serves(callback.shortcode):
            match = await self.allocation.match(received["bill_ref"])
            if self.stk_receipts is not None:
                known = match.transactions if match.insuree is not None else None
                linked = await self.stk_receipts.c2b_state(received, known)
        if linked is not None:  # the copy of an M-Pesa Express payment: already applied
            state = linked
        elif self.rules.serves(callback.shortcode):
            state, matched = await self.allocation.first_state(received, match)
        else:  # the money moved, but not to us: kept, never applied to a policy
            state = self.allocation.held_state(entry_id, SHORTCODE_NOT_SERVED)
        payment: C2BPayment = {**received, **state}
        if payment["status"] == repo.UNMATCHED:
            payment = cast(C2BPayment, {**self._received_notice(payment), **payment})
        outcome, stored = await self.payments.insert_once(payment)
        if outcome is InsertOutcome.CONFLICT and _same_payment(stored, payment):
            outcome = InsertOutcome.DUPLICATE
            if "recovered" in stored and record is None:
                await self.payments.complete_recovered(stored["trans_id"], payment, entry_id)
        if outcome is InsertOutcome.NEW or stored["inbox_id"] == entry_id:
            applied = await self.allocation.auto(
                stored, matched if outcome is InsertOutcome.NEW else None
            )
            if applied["status"] == repo.UNMATCHED and NOTICE_STATE not in stored:
                # Matched, then not applied (or a replay): the notice the insert did not
                # carry. The outbox keeps one message per payment whatever comes again.
                await self._add_notice(applied)
        if outcome is InsertOutcome.CONFLICT:
            reason = "conflicting_duplicate" if record is None else f"differs_from_{record.source}"
            await self.payments.flag_for_review(callback.trans_id, entry_id, reason, now)
            status = inbox.CONFLICT
        elif outcome is InsertOutcome.DUPLICATE and stored["inbox_id"] != entry_id:
            status = inbox.DUPLICATE
        else:  # new, or stored by an earlier attempt at this same entry
            status = inbox.PROCESSED
        await self.inbox.mark(
            entry_id, status, now, trans_id=callback.trans_id, answer=CONFIRMATION_RECEIVED
        )
        self._count("confirmation" if record is None else record.source, status)
        log.info(
            "%s trans_id=%s outcome=%s amount=%s",
            "confirmation" if record is None else "recovered",
            callback.trans_id,
            outcome.value,
            format_amount(amount, self.rules.currency),
        )
        return status

    def amount_of(self, callback: C2BCallback) -> int:
        """The amount in minor units; ValidationError when it is not a positive amount."""
        try:
            amount = parse_amount(callback.trans_amount, self.rules.currency)
        except AmountError as err:
            raise ValidationError(str(err), "TransAmount") from None
        if amount <= 0:
            raise ValidationError("TransAmount must be positive", "TransAmount")
        return amount

    def _payment_document(
        self, callback: C2BCallback, amount: int, entry_id: str, received_at: datetime
    ) -> ReceivedPayment:
        names = (callback.first_name, callback.middle_name, callback.last_name)
        try:
            balance: int | None = parse_amount(callback.org_balance, self.rules.currency)
        except AmountError:
            balance = None
        return {
            "trans_id": callback.trans_id,
            "transaction_type": callback.transaction_type,
            "trans_time": callback.trans_time,
            "amount": amount,
            "currency": self.rules.currency,
            "shortcode": callback.shortcode,
            "bill_ref": callback.bill_ref,
            "invoice_number": callback.invoice_number,
            "org_balance": balance,
            "third_party_trans_id": callback.third_party_trans_id,
            "msisdn": callback.msisdn,
            "msisdn_form": msisdn_form(callback.msisdn),
            "payer_name": " ".join(name for name in names if name),
            "fingerprint": fingerprint(callback, amount),
            "inbox_id": entry_id,
            "received_at": received_at,
            "review": [],
            "review_open": False,
        }

    async def _add_notice(self, payment: C2BPayment) -> None:
        try:
            await self.payments.add_notice(payment["trans_id"], self._received_notice(payment))
        except Exception:
            # A lost notification must never undo or fail a recorded payment.
            log.exception("notification_failed trans_id=%s", payment["trans_id"])

    def _received_notice(self, payment: C2BPayment) -> dict[str, Any]:
        """A payment not applied to a policy: the payer is told it arrived (an applied one
        gets the premium's receipt instead), in a notice the payment's document carries."""
        try:
            return self.receipts.payment_received_notice(
                channel=CHANNEL,
                reference=payment["trans_id"],
                amount=payment["amount"],
                currency=payment["currency"],
                account=payment["bill_ref"] or payment["shortcode"],
                phone_hint=payment["msisdn"],
            )
        except Exception:
            # A lost notification must never undo or fail a recorded payment.
            log.exception("notification_failed trans_id=%s", payment["trans_id"])
            return {}

    @property
    def notifier(self) -> Notifier | None:
        """The local notifier of the log and record notification kinds (None with an SMS
        provider): where this service's callers found the payers' notices before they
        went through the outbox."""
        notifier: Notifier | None = self.receipts.local_notifier
        return notifier

    @notifier.setter
    def notifier(self, notifier: Notifier) -> None:
        self.receipts.local_notifier = notifier

    # --- reads ----------------------------------------------------------

    async def allocate(self, trans_id: str, policy_uuid: str, actor: str, note: str) -> C2BPayment:
        return await self.allocation.allocate(
            TRANS_ID.normalise(trans_id), policy_uuid, actor, note
        )

    async def get_payment(self, trans_id: str) -> C2BPayment | None:
        """The payment; one stored before amounts were kept with its unmatched reason
        gets them from its account's idle policies now, for the reason's words."""
        payment = await self.payments.get(TRANS_ID.normalise(trans_id))
        return None if payment is None else await self.allocation.with_detail(payment)

    async def list_payments(
        self, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[C2BPayment], int]:
        """`filters` as PaymentQuerySchema loads them; amounts are in the paybill's
        currency."""
        query: dict[str, Any] = {}
        query.update(time_window(filters, "trans_time"))
        for key in ("shortcode", "bill_ref", "status"):
            if key in filters:
                query[key] = filters[key]
        if "needs_review" in filters:  # a review flag no operator has dismissed
            query.update(repo.NEEDS_REVIEW if filters["needs_review"] else repo.NO_REVIEW_NEEDED)
        amounts = amount_range(filters, self.rules.currency)
        if amounts:
            query.update(amounts, currency=self.rules.currency)
        sort = sort_keys(filters.get("sort", "-trans_time"), "trans_id")
        return await self.payments.page(query, limit, offset, sort)
