"""M-Pesa Express: starting a prompt (POST /api/v1/stk-pushes) and its result callback.

The callback is written raw to the inbox (source `daraja_stk`, kind `stk_result`)
before anything else; from then on Daraja's answer is "Accepted". Then it is applied
to the debit Daraja knows by its CheckoutRequestID, through the debit engine's
`complete` (one compare-and-set, so a repeated callback changes nothing):

- ResultCode 0: the amount and phone are checked against the debit; equal, the
  debit is `succeeded` (MpesaReceiptNumber its `provider_confirmation`) and settled;
  a different amount or phone leaves it `unknown` and the entry `needs_review`;
- 1032 `cancelled`, 1019 `expired`, any other code `failed` with the code and its
  meaning (server.mpesa.stk_results);
- a CheckoutRequestID the gateway never sent, or a result that contradicts the
  debit's state, is kept `needs_review`."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError

from server.debits.engine import Completion, DebitEngine, Outcome
from server.inbox import repository as inbox
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.kernel.clock import Clock
from server.kernel.errors import ValidationFailed
from server.kernel.metrics import Metrics
from server.ledger import states
from server.ledger.documents import Transaction
from server.mpesa.phones import NotAKenyanPhone, kenyan_phone
from server.mpesa.receipts import StkReceipts
from server.mpesa.service import InboxUnavailable
from server.mpesa.stk import CHANNEL
from server.mpesa.stk_results import StkCallback, parse_stk_callback

log = logging.getLogger("gateway.stk")

SOURCE = "daraja_stk"
KIND = "stk_result"
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
ACTOR = "daraja"

_INBOX_STATUS = {
    Outcome.APPLIED: inbox.PROCESSED,
    Outcome.ALREADY: inbox.DUPLICATE,
    Outcome.DISAGREES: inbox.NEEDS_REVIEW,
    Outcome.REVIEW: inbox.NEEDS_REVIEW,
    Outcome.PENDING: inbox.PROCESSED,
}


class StkService:
    def __init__(
        self,
        inbox_entries: InboxRepository,
        debits: DebitEngine,
        receipts: StkReceipts,
        clock: Clock,
        currency: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.inbox = inbox_entries
        self.debits = debits
        self.receipts = receipts
        self.clock = clock
        self.currency = currency
        self.metrics = metrics or Metrics()

    # --- the prompt ---------------------------------------------------------

    async def push(
        self, policy_uuid: str, phone: str | None, amount: str, actor: str
    ) -> Transaction:
        """Prompt the payer's phone (the insuree's own when `phone` is None) for the
        policy's premium; the same checks as any debit."""
        payer = None
        if phone is not None:
            try:
                payer = kenyan_phone(phone)
            except NotAKenyanPhone as err:
                raise ValidationFailed(
                    str(err), {"fields": {"phone": [str(err)]}}, code="invalid_phone"
                ) from None
        try:
            whole = Decimal(amount) == Decimal(amount).to_integral_value()
        except InvalidOperation:
            whole = True  # not an amount at all: the engine's check names the problem
        if not whole:
            raise ValidationFailed(
                "M-Pesa Express takes whole shillings: this premium cannot be prompted for",
                {"fields": {"amount": ["must be a whole number of shillings"]}},
                code="amount_not_whole",
            )
        return await self.debits.push(CHANNEL, policy_uuid, amount, payer, actor)

    # --- the result callback ------------------------------------------------

    async def callback(self, raw: bytes, source_ip: str, headers: dict[str, str]) -> dict:
        """Keep the callback, then apply it; answered "Accepted" once it is kept."""
        try:
            entry = await self.inbox.add(SOURCE, KIND, raw, source_ip, headers, self.clock.now())
        except Exception as err:
            log.error(
                "inbox_write_failed kind=%s source=%s error=%s body=%r",
                KIND,
                source_ip,
                err.__class__.__name__,
                raw[:4096],
            )
            raise InboxUnavailable(KIND) from err
        try:
            await self._process(entry["_id"], raw)
        except Exception as err:
            log.exception("stk_result_processing_failed inbox_id=%s", entry["_id"])
            await self.mark_failed(entry["_id"], err)
        return ACCEPTED

    async def process_entry(self, entry: InboxEntry) -> str:
        """Process a stored result callback again (the inbox's replay)."""
        return await self._process(entry["_id"], inbox.decode_body(entry))

    async def mark_failed(self, entry_id: str, error: BaseException) -> None:
        self.metrics.callbacks.labels(KIND, inbox.FAILED).inc()
        try:
            await self.inbox.mark(entry_id, inbox.FAILED, self.clock.now(), failure=error)
        except Exception:
            log.exception("inbox_mark_failed inbox_id=%s", entry_id)

    async def _process(self, entry_id: str, raw: bytes) -> str:
        try:
            callback = parse_stk_callback(raw, self.currency)
        except ValidationError as err:
            log.warning("stk_result_needs_review inbox_id=%s errors=%s", entry_id, err.messages)
            return await self._mark(entry_id, inbox.NEEDS_REVIEW, errors=err.messages)
        self.metrics.stk_results.labels("callback", callback.result_code).inc()
        debit = await self.debits.find_by_reference(CHANNEL, callback.checkout_request_id)
        if debit is None:
            log.warning(
                "stk_result_unknown_checkout checkout=%s code=%s",
                callback.checkout_request_id,
                callback.result_code,
            )
            return await self._mark(
                entry_id,
                inbox.NEEDS_REVIEW,
                callback,
                errors={"review": "no M-Pesa Express debit has this CheckoutRequestID"},
            )
        completion = await self.debits.complete(debit, callback.answer(), ACTOR)
        await self._link(completion)
        status = _INBOX_STATUS[completion.outcome]
        review = _review_reason(completion, callback)
        log.info(
            "stk_result checkout=%s code=%s outcome=%s transaction=%s status=%s",
            callback.checkout_request_id,
            callback.result_code,
            completion.outcome.value,
            debit["_id"],
            completion.transaction["status"],
        )
        return await self._mark(
            entry_id, status, callback, errors={"review": review} if review else None
        )

    async def _link(self, completion: Completion) -> None:
        transaction = completion.transaction
        if completion.outcome in (Outcome.APPLIED, Outcome.ALREADY) and (
            transaction["status"] == states.SUCCEEDED
        ):
            await self.receipts.link_later(transaction)

    async def _mark(
        self,
        entry_id: str,
        status: str,
        callback: StkCallback | None = None,
        *,
        errors: Any = None,
    ) -> str:
        await self.inbox.mark(
            entry_id,
            status,
            self.clock.now(),
            trans_id=callback.receipt if callback is not None else None,
            answer=ACCEPTED,
            errors=errors,
        )
        self.metrics.callbacks.labels(KIND, status).inc()
        return status


def _review_reason(completion: Completion, callback: StkCallback) -> str:
    if completion.outcome is Outcome.REVIEW:
        return completion.reason
    if completion.outcome is Outcome.DISAGREES:
        transaction = completion.transaction
        receipt = transaction.get("provider_confirmation")
        return (
            f"result {callback.result_code} ({callback.receipt or 'no receipt'}) for a debit "
            f"already {transaction['status']}" + (f" with receipt {receipt}" if receipt else "")
        )
    return ""
