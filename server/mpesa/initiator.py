"""Transaction Status and Account Balance: the requests, and their results.

Daraja takes the request at once and sends the result later to the ResultURL (or the
QueueTimeOutURL when it timed out in its queue). Both callbacks are written raw to the
inbox first (source `daraja_result`, kind `result` or `queue_timeout`), then applied to
the request they answer (`daraja_requests`, found by OriginatorConversationID or
ConversationID), once: a repeated result changes nothing.

A Transaction Status result is compared with the payment stored under the receipt: a
different amount flags the payment for review; a completed receipt the gateway has not
stored is recorded as such (the result carries no account number, so it cannot settle a
policy: the pull or a statement brings it in). An Account Balance result keeps the
accounts' balances for the reconciliation view: a check, not a ledger entry."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from server.inbox import repository as inbox
from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository
from server.integrations.transport import ProviderError
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, ServiceUnavailable, ValidationFailed
from server.kernel.identifiers import TRANS_ID
from server.kernel.money import AmountError, parse_amount
from server.kernel.store import IndexSpec, Store
from server.mpesa.client import DarajaClient, InitiatorNotConfigured
from server.mpesa.repository import C2BPaymentRepository
from server.mpesa.service import InboxUnavailable

log = logging.getLogger("gateway.reconciliation")

SOURCE = "daraja_result"
RESULT, QUEUE_TIMEOUT = "result", "queue_timeout"
ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}

REQUESTS = "daraja_requests"
TRANSACTION_STATUS, ACCOUNT_BALANCE = "transaction_status", "account_balance"
# A request's states: waiting for its result, answered, refused by M-Pesa (a result
# code other than 0), or timed out in M-Pesa's queue.
REQUESTED, ANSWERED, REFUSED, TIMED_OUT = "requested", "answered", "refused", "timed_out"

# A Transaction Status result against the payment stored under its receipt.
AGREES, AMOUNT_DIFFERS, NOT_RECORDED_HERE, ABSENT = (
    "agrees",
    "amount_differs",
    "not_recorded_here",
    "absent",
)
# Stored here, but M-Pesa does not call it Completed (reversed, failed), or gives an
# amount that cannot be read: flagged for review like a different amount.
NOT_COMPLETED, AMOUNT_UNREADABLE = "not_completed", "amount_unreadable"
FLAGGED_FINDINGS = (AMOUNT_DIFFERS, NOT_COMPLETED, AMOUNT_UNREADABLE)

INDEXES: list[IndexSpec] = [
    (REQUESTS, [("originator_conversation_id", 1)], {}),
    (REQUESTS, [("conversation_id", 1)], {}),
    (REQUESTS, [("trans_id", 1), ("requested_at", DESCENDING)], {}),
    (REQUESTS, [("kind", 1), ("status", 1), ("answered_at", DESCENDING)], {}),
]


# A result whose request is not found yet is replayed this long (the request is written
# once M-Pesa has taken it, and its result may come before that write); then reviewed.
UNMATCHED_RESULT_WAIT = timedelta(minutes=10)


class ResultBeforeRequest(Exception):
    """A result came before the request it answers was written: processed again later."""


class RequestRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = store.collection(REQUESTS)

    async def insert(self, document: dict[str, Any]) -> None:
        await self.collection.insert_one(document)

    async def answering(self, originator: str, conversation: str) -> dict[str, Any] | None:
        for key, value in (
            ("originator_conversation_id", originator),
            ("conversation_id", conversation),
        ):
            if value:
                found = await self.collection.find_one({key: value})
                if found is not None:
                    return found
        return None

    async def settle(self, request_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Record the result once: None when the request was already settled."""
        return await self.collection.find_one_and_update(
            {"_id": request_id, "status": REQUESTED},
            {"$set": changes},
            return_document=ReturnDocument.AFTER,
        )

    async def of_receipt(self, trans_id: str, limit: int = 20) -> list[dict[str, Any]]:
        cursor = (
            self.collection.find({"trans_id": trans_id})
            .sort("requested_at", DESCENDING)
            .limit(limit)
        )
        return await cursor.to_list(None)

    async def latest_balance(self) -> dict[str, Any] | None:
        return await self.collection.find_one(
            {"kind": ACCOUNT_BALANCE, "status": ANSWERED}, sort=[("answered_at", DESCENDING)]
        )


class InitiatorService:
    def __init__(
        self,
        client: DarajaClient | None,
        requests: RequestRepository,
        inbox_entries: InboxRepository,
        payments: C2BPaymentRepository,
        clock: Clock,
        *,
        result_url: str,
        timeout_url: str,
        currency: str,
    ) -> None:
        self.client = client
        self.requests = requests
        self.inbox = inbox_entries
        self.payments = payments
        self.clock = clock
        self.result_url = result_url
        self.timeout_url = timeout_url
        self.currency = currency

    # --- requests -------------------------------------------------------

    async def check_payment(self, trans_id: str, actor: str) -> dict[str, Any]:
        """Ask M-Pesa about a receipt (stored here or not); the result comes later."""
        receipt = TRANS_ID.normalise(trans_id)
        if not TRANS_ID.is_valid(receipt):
            raise ValidationFailed(
                f"not an M-Pesa receipt: {TRANS_ID.allowed}", {"fields": {"trans_id": ["invalid"]}}
            )
        return await self._request(TRANSACTION_STATUS, actor, receipt)

    async def check_balance(self, actor: str) -> dict[str, Any]:
        return await self._request(ACCOUNT_BALANCE, actor)

    async def _request(self, kind: str, actor: str, receipt: str | None = None) -> dict[str, Any]:
        if self.client is None:
            raise ServiceUnavailable("M-Pesa cannot be reached from this process")
        try:
            if receipt is not None:
                accepted = await self.client.transaction_status(
                    receipt, self.result_url, self.timeout_url, f"check by {actor}"[:100]
                )
            else:
                accepted = await self.client.account_balance(self.result_url, self.timeout_url)
        except InitiatorNotConfigured as err:
            raise Conflict(str(err), code="initiator_not_configured") from None
        except ProviderError as err:
            raise ServiceUnavailable(f"M-Pesa did not take the request: {err.message}") from None
        document = {
            "_id": str(uuid.uuid4()),
            "kind": kind,
            "trans_id": receipt,
            "originator_conversation_id": accepted.originator_conversation_id,
            "conversation_id": accepted.conversation_id,
            "requested_by": actor,
            "requested_at": self.clock.now(),
            "status": REQUESTED,
            "result": None,
        }
        await self.requests.insert(document)
        log.info("daraja_request kind=%s receipt=%s by=%s", kind, receipt or "-", actor)
        return document

    async def checks_of(self, trans_id: str) -> list[dict[str, Any]]:
        return await self.requests.of_receipt(TRANS_ID.normalise(trans_id))

    async def latest_balance(self) -> dict[str, Any] | None:
        return await self.requests.latest_balance()

    # --- results --------------------------------------------------------

    async def callback(
        self, kind: str, raw: bytes, source_ip: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        try:
            entry = await self.inbox.add(SOURCE, kind, raw, source_ip, headers, self.clock.now())
        except Exception as err:
            log.error("inbox_write_failed kind=%s body=%r", kind, raw[:4096])
            raise InboxUnavailable(kind) from err
        try:
            await self.process_entry(entry)
        except ResultBeforeRequest as err:
            log.warning("result_before_request inbox_id=%s: replayed later", entry["_id"])
            await self.mark_failed(entry["_id"], err)
        except Exception as err:
            log.exception("result_processing_failed inbox_id=%s", entry["_id"])
            await self.mark_failed(entry["_id"], err)
        return ACCEPTED

    async def mark_failed(self, entry_id: str, error: BaseException) -> None:
        try:
            await self.inbox.mark(entry_id, inbox.FAILED, self.clock.now(), failure=error)
        except Exception:
            log.exception("inbox_mark_failed inbox_id=%s", entry_id)

    async def process_entry(self, entry: InboxEntry) -> str:
        now = self.clock.now()
        try:
            result = _parse_result(inbox.decode_body(entry))
        except ValidationError as err:
            await self.inbox.mark(entry["_id"], inbox.NEEDS_REVIEW, now, errors=err.messages)
            return inbox.NEEDS_REVIEW
        request = await self.requests.answering(
            str(result.get("OriginatorConversationID") or ""),
            str(result.get("ConversationID") or ""),
        )
        if request is None:
            if now - entry["received_at"] < UNMATCHED_RESULT_WAIT:
                # It may have overtaken the request's own write: replay tries again.
                raise ResultBeforeRequest("answers no request the gateway made (yet)")
            errors = {"Result": ["answers no request the gateway made"]}
            await self.inbox.mark(entry["_id"], inbox.NEEDS_REVIEW, now, errors=errors)
            return inbox.NEEDS_REVIEW
        changes = self._outcome(request, result, entry, now)
        if request["kind"] == TRANSACTION_STATUS and changes["status"] == ANSWERED:
            changes["finding"] = await self._finding(request["trans_id"], changes["result"])
        settled = await self.requests.settle(request["_id"], changes)
        if settled is None and request.get("inbox_id") != entry["_id"]:
            await self.inbox.mark(entry["_id"], inbox.DUPLICATE, now)
            return inbox.DUPLICATE
        # Settled now, or by an earlier attempt at this same entry that a crash cut off.
        settled = settled or request
        if settled.get("finding") in FLAGGED_FINDINGS:
            reason = f"transaction_status_{settled['finding']}"
            await self.payments.flag_for_review(settled["trans_id"], entry["_id"], reason, now)
        await self.inbox.mark(entry["_id"], inbox.PROCESSED, now, trans_id=settled["trans_id"])
        log.info(
            "daraja_result kind=%s receipt=%s status=%s",
            settled["kind"],
            settled["trans_id"] or "-",
            settled["status"],
        )
        return inbox.PROCESSED

    def _outcome(
        self, request: dict[str, Any], result: dict[str, Any], entry: InboxEntry, now: datetime
    ) -> dict[str, Any]:
        code = str(result.get("ResultCode", ""))
        changes: dict[str, Any] = {
            "answered_at": now,
            "inbox_id": entry["_id"],
            "result_code": code,
            "result_description": str(result.get("ResultDesc", ""))[:300],
        }
        if entry["kind"] == QUEUE_TIMEOUT:
            return {**changes, "status": TIMED_OUT}
        if code != "0":
            return {**changes, "status": REFUSED}
        parameters = _parameters(result)
        if request["kind"] == ACCOUNT_BALANCE:
            details: dict[str, Any] = {"accounts": _balances(parameters.get("AccountBalance"))}
        else:
            details = {
                "receipt": str(parameters.get("ReceiptNo", "")),
                "status": str(parameters.get("TransactionStatus", "")),
                "amount": self._minor(parameters.get("Amount")),
                "currency": self.currency,
                "debit_party": str(parameters.get("DebitPartyName", "")),
                "credit_party": str(parameters.get("CreditPartyName", "")),
                "reason_type": str(parameters.get("ReasonType", "")),
                "finalised_time": str(parameters.get("FinalisedTime", "")),
            }
        return {**changes, "status": ANSWERED, "result": details}

    async def _finding(self, trans_id: str, result: dict[str, Any]) -> str:
        """M-Pesa's word on a receipt against the payment stored under it."""
        stored = await self.payments.get(trans_id)
        completed = result["status"] == "Completed"
        if stored is None:
            return NOT_RECORDED_HERE if completed else ABSENT
        if not completed:
            return NOT_COMPLETED
        if result["amount"] is None:
            return AMOUNT_UNREADABLE
        if result["amount"] != stored["amount"]:
            return AMOUNT_DIFFERS
        return AGREES

    def _minor(self, value: Any) -> int | None:
        try:
            return parse_amount(_decimal_text(value), self.currency)
        except AmountError:
            return None


def _parse_result(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw, parse_float=str)
    except (ValueError, RecursionError):
        raise ValidationError("body is not valid JSON") from None
    result = body.get("Result") if isinstance(body, dict) else None
    if not isinstance(result, dict) or "ResultCode" not in result:
        raise ValidationError("Result with a ResultCode is required", "Result")
    return result


def _parameters(result: dict[str, Any]) -> dict[str, Any]:
    """ResultParameters.ResultParameter as a mapping (a single one may come unlisted)."""
    holder = result.get("ResultParameters")
    items = holder.get("ResultParameter", []) if isinstance(holder, dict) else []
    if isinstance(items, dict):
        items = [items]
    return {
        str(item["Key"]): item.get("Value")
        for item in items
        if isinstance(item, dict) and "Key" in item
    }


def _decimal_text(value: Any) -> str:
    """An amount sent as a number or a string, as exact text ("1500", "1500.0")."""
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:
        return str(value)


def _balances(text: Any) -> list[dict[str, Any]]:
    """`Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|...` as
    [{name, currency, available}] with available in minor units (None if unreadable)."""
    accounts = []
    for part in str(text or "").split("&"):
        fields = part.split("|")
        if len(fields) < 3:
            continue
        name, currency, available = fields[0].strip(), fields[1].strip(), fields[2].strip()
        try:
            negative = available.startswith("-")
            minor: int | None = parse_amount(available.lstrip("-"), currency)
            if negative and minor is not None:
                minor = -minor
        except AmountError:
            minor = None
        accounts.append({"name": name, "currency": currency, "available": minor})
    return accounts
