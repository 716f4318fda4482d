"""C2B collections: the raw callback inbox and the confirmed payments."""

from __future__ import annotations

import base64
import enum
import uuid
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.kernel.store import IndexSpec, Store

INBOX = "c2b_inbox"
PAYMENTS = "c2b_payments"

INDEXES: list[IndexSpec] = [
    (INBOX, [("status", 1), ("received_at", 1)], {}),
    (PAYMENTS, [("trans_id", 1)], {"unique": True}),
    (PAYMENTS, [("trans_time", DESCENDING)], {}),
    (PAYMENTS, [("bill_ref", 1), ("trans_time", DESCENDING)], {}),
    (PAYMENTS, [("status", 1), ("trans_time", DESCENDING)], {}),
    (PAYMENTS, [("status", 1), ("received_at", 1)], {}),
]

# Inbox states. `received` is written before any processing, so an entry still
# `received` after a crash, or `failed`, is work for replay.
RECEIVED, PROCESSED, DUPLICATE, CONFLICT, NEEDS_REVIEW, FAILED = (
    "received", "processed", "duplicate", "conflict", "needs_review", "failed")
REPLAYABLE = (RECEIVED, FAILED)
# What a C2B payment can be: being applied to a policy, applied, waiting for an operator,
# or held (paid to a shortcode this gateway does not serve; never applied).
ALLOCATING, SETTLED, UNMATCHED, HELD = "allocating", "settled", "unmatched", "held"
PAYMENT_STATUSES = (ALLOCATING, SETTLED, UNMATCHED, HELD)


class InsertOutcome(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"      # same TransID, same content: a redelivery
    CONFLICT = "conflict"        # same TransID, different content


def encode_body(raw: bytes) -> dict[str, str]:
    """Keep the body readable when it is text, exact in every case."""
    try:
        return {"body": raw.decode("utf-8"), "body_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(raw).decode("ascii"), "body_encoding": "base64"}


def decode_body(entry: dict[str, Any]) -> bytes:
    if entry["body_encoding"] == "base64":
        return base64.b64decode(entry["body"])
    return entry["body"].encode("utf-8")


def _marked(status: str, processed_at: datetime, *, trans_id: str | None = None,
            answer: dict[str, Any] | None = None, errors: Any = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"status": status, "processed_at": processed_at,
                              "errors": errors}
    if trans_id is not None:
        fields["trans_id"] = trans_id
    if answer is not None:
        fields["answer"] = answer
    return fields


class InboxRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(INBOX)

    async def add(self, kind: str, raw: bytes, source_ip: str, headers: dict[str, str],
                  received_at: datetime, *, outcome: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
        """The raw callback, `received`; or, when its outcome is already known (a
        validation decided from the body alone), already marked with it."""
        entry = {"_id": str(uuid.uuid4()), "kind": kind, **encode_body(raw),
                 "source_ip": source_ip, "headers": headers, "received_at": received_at,
                 "status": RECEIVED, "attempts": 0}
        if outcome is not None:
            entry.update(_marked(processed_at=received_at, **outcome))
            entry["attempts"] = 1
        await self.collection.insert_one(entry)
        return entry

    async def mark(self, entry_id: str, status: str, at: datetime, *,
                   trans_id: str | None = None, answer: dict[str, Any] | None = None,
                   errors: Any = None) -> None:
        await self.collection.update_one(
            {"_id": entry_id},
            {"$set": _marked(status, at, trans_id=trans_id, answer=answer, errors=errors),
             "$inc": {"attempts": 1}})


    async def get(self, entry_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": entry_id})

    async def note_replay(self, entry_id: str, by: str, reason: str, at: datetime) -> None:
        await self.collection.update_one({"_id": entry_id}, {"$push": {
            "replays": {"by": by, "reason": reason, "at": at}}})

    async def page(self, query: dict[str, Any], limit: int,
                   offset: int) -> tuple[list[dict[str, Any]], int]:
        cursor = (self.collection.find(query).sort("received_at", DESCENDING)
                  .skip(offset).limit(limit))
        return await cursor.to_list(None), await self.collection.count_documents(query)

    async def replayable_confirmations(self, statuses: tuple[str, ...], received_before: datetime,
                         limit: int) -> list[dict[str, Any]]:
        cursor = (self.collection.find({"kind": "confirmation",
                                        "status": {"$in": list(statuses)},
                                        "received_at": {"$lte": received_before}})
                  .sort("received_at", 1).limit(limit))
        return await cursor.to_list(None)


class C2BPaymentRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(PAYMENTS)

    async def insert_once(self, payment: dict[str, Any]) -> tuple[InsertOutcome, dict]:
        """Insert unless the TransID is stored; then say whether it is the same payment."""
        try:
            await self.collection.insert_one(payment)
            return InsertOutcome.NEW, payment
        except DuplicateKeyError:
            existing = await self.collection.find_one({"trans_id": payment["trans_id"]})
        if existing is None:    # cannot happen with a unique index, kept loud if it does
            raise RuntimeError(f"duplicate key but no payment {payment['trans_id']}")
        same = existing["fingerprint"] == payment["fingerprint"]
        return (InsertOutcome.DUPLICATE if same else InsertOutcome.CONFLICT), existing

    async def flag_for_review(self, trans_id: str, inbox_id: str, reason: str,
                              at: datetime) -> dict[str, Any] | None:
        return await self.collection.find_one_and_update(
            {"trans_id": trans_id},
            {"$push": {"review": {"inbox_id": inbox_id, "reason": reason, "at": at}}},
            return_document=ReturnDocument.AFTER)

    async def get(self, trans_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"trans_id": trans_id})

    async def move(self, trans_id: str, current: tuple[str, ...], target: str, at: datetime,
                   changes: dict[str, Any] | None = None,
                   event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Compare-and-set of the payment's status; None when it was not in `current`."""
        update: dict[str, Any] = {"$set": {"status": target, "updated_at": at,
                                           **(changes or {})}}
        if event is not None:
            update["$push"] = {"allocation_history": {**event, "status": target, "at": at}}
        return await self.collection.find_one_and_update(
            {"trans_id": trans_id, "status": {"$in": list(current)}}, update,
            return_document=ReturnDocument.AFTER)

    async def page(self, query: dict[str, Any], limit: int,
                   offset: int) -> tuple[list[dict[str, Any]], int]:
        cursor = (self.collection.find(query).sort([("trans_time", DESCENDING),
                                                     ("trans_id", DESCENDING)])
                  .skip(offset).limit(limit))
        items = await cursor.to_list(None)
        return items, await self.collection.count_documents(query)
