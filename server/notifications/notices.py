"""Messages waiting inside the documents of payments and premiums (`documents.NOTICE`)
and their move into the outbox.

A source is a collection whose documents may carry a notice (the composition root names
them: premiums, C2B payments). The send-notifications job reads a batch of pending
notices, inserts the messages into the outbox (a message already there stays as it is:
its `_id` is unique), then removes the message and marks the notice copied. A run cut
off between the two writes leaves the notice pending; the next run inserts nothing new
and marks it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from server.kernel.store import IndexSpec, Store
from server.notifications.documents import NOTICE, NOTICE_COPIED, NOTICE_PENDING, NOTICE_STATE


def notice_indexes(collections: Iterable[str]) -> list[IndexSpec]:
    """Partial: only the documents whose notice is still waiting are in it."""
    waiting = {"partialFilterExpression": {NOTICE_STATE: NOTICE_PENDING}}
    return [(name, [(NOTICE_STATE, 1)], waiting) for name in collections]


class NoticeSource:
    def __init__(self, store: Store, collection: str) -> None:
        self.name = collection
        self.collection = store.collection(collection)

    async def pending(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` documents whose notice waits: `_id` and the notice."""
        cursor = self.collection.find({NOTICE_STATE: NOTICE_PENDING}, {NOTICE: 1}).limit(limit)
        found: list[dict[str, Any]] = await cursor.to_list(None)
        return found

    async def clear(self, ids: list[Any]) -> None:
        """The notices of these documents are in the outbox: remove the messages,
        keep the mark (a replay then gives no document its notice again)."""
        await self.collection.update_many(
            {"_id": {"$in": ids}, NOTICE_STATE: NOTICE_PENDING},
            {"$unset": {NOTICE: ""}, "$set": {NOTICE_STATE: NOTICE_COPIED}},
        )
