"""Failed-login records, one per throttled key (a username or a source address).

A record holds the failures counted in its window, how many password checks may
still start (`budget`), the end of a lock, and when it expires (a TTL index removes
it; expired records are also ignored and replaced, since the TTL monitor runs only
about once a minute). Every change is one atomic update, so every gateway process
and host shares the same counts."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.kernel.store import IndexSpec, Store

COLLECTION = "login_attempts"
UNLOCKED = datetime(1970, 1, 1, tzinfo=UTC)
INDEXES: list[IndexSpec] = [(COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0})]


class LoginAttemptRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(COLLECTION)

    async def open(self, key: str, budget: int, now: datetime, expires_at: datetime) -> None:
        """Make sure a live record exists: an expired one is replaced by a fresh one."""
        await self.collection.delete_one({"_id": key, "expires_at": {"$lte": now}})
        with contextlib.suppress(DuplicateKeyError):  # another process opened it first
            await self.collection.update_one(
                {"_id": key},
                {
                    "$setOnInsert": {
                        "failures": 0,
                        "budget": budget,
                        # Unlocked for every request, whatever instant it took as its
                        # `now`: one that started a moment before this one opened the
                        # record must not find it locked.
                        "locked_until": UNLOCKED,
                        "expires_at": expires_at,
                    }
                },
                upsert=True,
            )

    async def take(self, key: str, now: datetime) -> bool:
        """Start one password check: True when the record is unlocked and has budget."""
        taken = await self.collection.find_one_and_update(
            {"_id": key, "budget": {"$gt": 0}, "locked_until": {"$lte": now}},
            {"$inc": {"budget": -1}},
        )
        return taken is not None

    async def give_back(self, key: str) -> None:
        await self.collection.update_one({"_id": key}, {"$inc": {"budget": 1}})

    async def find(self, key: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": key})

    async def add_failure(self, key: str) -> int | None:
        """Count one failure; the new count, or None when the record has gone."""
        record = await self.collection.find_one_and_update(
            {"_id": key}, {"$inc": {"failures": 1}}, return_document=ReturnDocument.AFTER
        )
        return record["failures"] if record else None

    async def lock(self, key: str, until: datetime, expires_at: datetime) -> None:
        """Lock until `until` (never shortening a longer lock); one check may start after."""
        await self.collection.update_one(
            {"_id": key},
            {"$max": {"locked_until": until, "expires_at": expires_at}, "$set": {"budget": 1}},
        )

    async def clear(self, key: str) -> None:
        await self.collection.delete_one({"_id": key})
