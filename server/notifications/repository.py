"""The `sms_outbox` collection: one document per message, every change a compare-and-set.

A message is claimed for sending with one atomic find-and-update that matches it only
while it is due (`next_attempt_at` passed) and moves `next_attempt_at` past the hold in
the same write, so two processes never claim one message; the answer is then recorded
only by the run whose claim token the message still carries."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from server.kernel.store import IndexSpec, Store
from server.notifications.documents import (
    CLAIMABLE,
    SENDING,
    SUPERSEDED,
    UNKNOWN,
    HistoryEntry,
    OutboxMessage,
)

SMS_OUTBOX = "sms_outbox"
DUPLICATE_KEY = 11000

INDEXES: list[IndexSpec] = [
    (SMS_OUTBOX, [("status", 1), ("next_attempt_at", 1)], {}),
    (SMS_OUTBOX, [("message_id", 1)], {}),
    (SMS_OUTBOX, [("recipient", 1), ("status", 1)], {}),
    (SMS_OUTBOX, [("receipt", 1), ("event", 1)], {}),
    (SMS_OUTBOX, [("created_at", DESCENDING)], {}),
    (SMS_OUTBOX, [("status", 1), ("created_at", DESCENDING)], {}),
]


def _entry(at: datetime, status: str, note: str) -> HistoryEntry:
    return {"at": at, "status": status, "note": note}


class OutboxRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.collection: AsyncCollection[OutboxMessage] = store.collection(SMS_OUTBOX)

    async def insert_new(self, messages: list[OutboxMessage]) -> list[OutboxMessage]:
        """Insert the messages not stored yet (one round trip); returns those that were
        new. A message already stored is left as it is."""
        if not messages:
            return []
        try:
            await self.collection.insert_many(messages, ordered=False)
        except BulkWriteError as err:
            errors = err.details.get("writeErrors", [])
            if err.details.get("writeConcernErrors") or any(
                error.get("code") != DUPLICATE_KEY for error in errors
            ):
                raise
            stored_before = {error["index"] for error in errors}
            return [message for index, message in enumerate(messages) if index not in stored_before]
        return messages

    async def get(self, message_id: str) -> OutboxMessage | None:
        return await self.collection.find_one({"_id": message_id})

    @staticmethod
    def _due(now: datetime, max_attempts: int) -> dict[str, Any]:
        return {
            "status": {"$in": list(CLAIMABLE)},
            "next_attempt_at": {"$lte": now},
            "attempts": {"$lt": max_attempts},
        }

    async def due(self, now: datetime, max_attempts: int, limit: int) -> list[str]:
        """The ids of up to `limit` due messages, most overdue first."""
        cursor = (
            self.collection.find(self._due(now, max_attempts), {"_id": 1})
            .sort([("next_attempt_at", 1)])
            .limit(limit)
        )
        return [message["_id"] for message in await cursor.to_list(None)]

    async def claim(
        self,
        now: datetime,
        hold_until: datetime,
        token: str,
        max_attempts: int,
        *,
        message_id: str | None = None,
    ) -> OutboxMessage | None:
        """The message `message_id` (else the most overdue one), now `sending` under
        `token` with one more attempt; None when it is not due (or none is)."""
        query = self._due(now, max_attempts)
        if message_id is not None:
            query["_id"] = message_id
        return await self.collection.find_one_and_update(
            query,
            {
                "$set": {
                    "status": SENDING,
                    "claim": token,
                    "next_attempt_at": hold_until,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1},
                "$push": {"history": _entry(now, SENDING, "claimed for sending")},
            },
            sort=[("next_attempt_at", 1)],
            return_document=ReturnDocument.AFTER,
        )

    async def prepare(self, message_id: str, token: str, fields: dict[str, Any]) -> bool:
        """Note what is about to be sent, to whom and when, before the send (a delivery
        report that outruns the answer then finds it); False when the claim was lost."""
        result = await self.collection.update_one(
            {"_id": message_id, "claim": token, "status": SENDING}, {"$set": fields}
        )
        return result.matched_count == 1

    async def finish(
        self, message_id: str, token: str, changes: dict[str, Any], note: str, now: datetime
    ) -> OutboxMessage | None:
        """Record what became of a claimed message, if `token` still holds it (a delivery
        report may have settled it first); None otherwise."""
        return await self.collection.find_one_and_update(
            {"_id": message_id, "claim": token, "status": SENDING},
            {
                "$set": {**changes, "claim": None, "updated_at": now},
                "$push": {"history": _entry(now, changes["status"], note)},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def give_up_stale(self, now: datetime, max_attempts: int) -> int:
        """Messages left `sending` by a process that stopped, with no attempt left: in
        doubt for good (`unknown`, never sent again)."""
        result = await self.collection.update_many(
            {
                "status": SENDING,
                "next_attempt_at": {"$lte": now},
                "attempts": {"$gte": max_attempts},
            },
            {
                "$set": {
                    "status": UNKNOWN,
                    "next_attempt_at": None,
                    "claim": None,
                    "updated_at": now,
                },
                "$push": {
                    "history": _entry(now, UNKNOWN, "the sending run stopped; no attempt left")
                },
            },
        )
        return result.modified_count

    async def by_provider_id(self, message_id: str) -> OutboxMessage | None:
        return await self.collection.find_one({"message_id": message_id})

    async def report(
        self,
        message_id: str,
        from_statuses: Collection[str],
        changes: dict[str, Any],
        note: str,
        now: datetime,
    ) -> OutboxMessage | None:
        """Apply a delivery report to the message with the provider's `message_id`, if it
        is in one of `from_statuses`."""
        return await self.collection.find_one_and_update(
            {"message_id": message_id, "status": {"$in": list(from_statuses)}},
            {
                "$set": {**changes, "updated_at": now},
                "$push": {"history": _entry(now, changes.get("status", "-"), note)},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def adopt(
        self,
        recipient: str,
        received_at: datetime,
        message_id: str,
        changes: dict[str, Any],
        note: str,
        now: datetime,
    ) -> OutboxMessage | None:
        """A report of a message id we never learnt: the message to `recipient` whose
        answer was lost (or is still awaited), last sent before the report came, takes
        that id and the report."""
        return await self.collection.find_one_and_update(
            {
                "recipient": recipient,
                "status": {"$in": [UNKNOWN, SENDING]},
                "message_id": None,
                "attempted_at": {"$lte": received_at},
            },
            {
                "$set": {
                    **changes,
                    "message_id": message_id,
                    "claim": None,
                    "next_attempt_at": None,
                    "updated_at": now,
                },
                "$push": {"history": _entry(now, changes["status"], note)},
            },
            sort=[("attempted_at", -1)],
            return_document=ReturnDocument.AFTER,
        )

    async def superseded_by(self, receipt: str, event: str) -> bool:
        """Whether a message of `event` carries the same receipt."""
        return await self.collection.count_documents({"receipt": receipt, "event": event}) > 0

    async def supersede(self, message_id: str, token: str, note: str, now: datetime) -> bool:
        finished = await self.finish(
            message_id, token, {"status": SUPERSEDED, "next_attempt_at": None}, note, now
        )
        return finished is not None

    async def page(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[OutboxMessage], int]:
        cursor = (
            self.collection.find(query)
            .sort([("created_at", DESCENDING), ("_id", 1)])
            .skip(offset)
            .limit(limit)
        )
        return await cursor.to_list(None), await self.collection.count_documents(query)

    async def counts_by_day(self, since: datetime) -> list[dict[str, Any]]:
        """(day, status) -> count of the messages made since `since`, by their UTC day."""
        return await self.store.aggregate(
            SMS_OUTBOX,
            [
                {"$match": {"created_at": {"$gte": since}}},
                {
                    "$group": {
                        "_id": {
                            "day": {"$dateToString": {"date": "$created_at", "format": "%Y-%m-%d"}},
                            "status": "$status",
                        },
                        "count": {"$sum": 1},
                    }
                },
            ],
        )
