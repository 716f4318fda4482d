"""MongoDB access: one client factory and the few driver differences hidden.

`mongodb://` and `mongodb+srv://` URIs get PyMongo's native async client;
`memory://` gets the in-memory mongomock-motor store (sandbox and tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Iterable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

IndexSpec = tuple[str, list[tuple[str, int]], dict[str, Any]]


class Store:
    """A database handle plus the operations whose API differs between drivers."""

    def __init__(self, client: Any, database: str, *, in_memory: bool) -> None:
        self.client = client
        self.db = client[database]
        self.in_memory = in_memory

    def collection(self, name: str) -> AsyncCollection:
        return self.db[name]

    async def aggregate(self, collection: str, pipeline: list[dict[str, Any]]) -> list[dict]:
        """Run a pipeline; AsyncMongoClient's aggregate is awaited, mongomock's is not."""
        cursor = self.db[collection].aggregate(pipeline)
        if inspect.isawaitable(cursor):
            cursor = await cursor
        return await cursor.to_list(None)

    async def ping(self) -> None:
        await self.db.command("ping")

    async def ensure_indexes(self, specs: Iterable[IndexSpec]) -> None:
        """Create indexes idempotently: (collection, keys, options)."""
        for collection, keys, options in specs:
            await self.db[collection].create_index(keys, **options)

    async def close(self) -> None:
        result: Awaitable[None] | None = self.client.close()
        if inspect.isawaitable(result):
            await result


def open_store(uri: str, database: str) -> Store:
    """Client factory: no I/O happens until the first operation."""
    if uri == "memory://":
        from mongomock_motor import AsyncMongoMockClient

        return Store(AsyncMongoMockClient(tz_aware=True), database, in_memory=True)
    return Store(AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=5000,
                                  appname="mobile-payments-gateway"), database, in_memory=False)


def time_window(filters: dict[str, Any], field: str) -> dict[str, Any]:
    """`{field: {"$gte": from, "$lt": to}}` from the optional date_from/date_to filters."""
    window = {}
    if "date_from" in filters:
        window["$gte"] = filters["date_from"]
    if "date_to" in filters:
        window["$lt"] = filters["date_to"]
    return {field: window} if window else {}
