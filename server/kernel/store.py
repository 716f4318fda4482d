"""MongoDB access: one client factory and the few driver differences hidden.

`mongodb://` and `mongodb+srv://` URIs get PyMongo's native async client;
`memory://` gets the in-memory mongomock-motor store (sandbox and tests).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

log = logging.getLogger("gateway.store")

IndexSpec = tuple[str, list[tuple[str, int]], dict[str, Any]]
# The option that makes an index a TTL index: documents expire this long after its field.
EXPIRY = "expireAfterSeconds"
INDEX_NOT_FOUND = 27     # MongoDB's error code when a dropped index is not there


def expiring_index(collection: str, field: str, days: int) -> IndexSpec:
    """A TTL index: a document is deleted `days` after the time in its `field`."""
    return (collection, [(field, 1)], {EXPIRY: days * 86400})


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
        """Create indexes idempotently: (collection, keys, options). A TTL index whose
        expiry differs from an existing index on the same keys changes that index."""
        for collection, keys, options in specs:
            if EXPIRY in options:
                await self._ensure_expiring(collection, keys, options)
            else:
                await self.db[collection].create_index(keys, **options)

    async def _ensure_expiring(self, collection: str, keys: list[tuple[str, int]],
                               options: dict[str, Any]) -> None:
        present = await self.db[collection].index_information()
        name = next((name for name, index in present.items()
                     if [tuple(pair) for pair in index["key"]] == list(keys)), None)
        if name is None:
            await self.db[collection].create_index(keys, **options)
        elif present[name].get(EXPIRY) != options[EXPIRY]:
            await self._change_expiry(collection, name, keys, options)

    async def _change_expiry(self, collection: str, name: str, keys: list[tuple[str, int]],
                             options: dict[str, Any]) -> None:
        """collMod changes the expiry in place (and makes a plain single-field index a TTL
        index, MongoDB >= 5.1). A store that cannot (the in-memory one, an older server)
        gets the index dropped and built again."""
        seconds = options[EXPIRY]
        try:
            await self.db.command({"collMod": collection,
                                   "index": {"name": name, EXPIRY: seconds}})
            how = "collMod"
        except (NotImplementedError, OperationFailure) as err:
            how = f"rebuilt_after_{err.__class__.__name__}"
            try:
                await self.db[collection].drop_index(name)
            except OperationFailure as gone:    # another process dropped it first
                if gone.code != INDEX_NOT_FOUND:
                    raise
            await self.db[collection].create_index(keys, **options)
        log.info("index_expiry_changed collection=%s index=%s seconds=%s how=%s",
                 collection, name, seconds, how)

    async def close(self) -> None:
        result: Awaitable[None] | None = self.client.close()
        if inspect.isawaitable(result):
            await result


def open_store(uri: str, database: str) -> Store:
    """Client factory: no I/O happens until the first operation."""
    if uri == "memory://":
        from mongomock_motor import AsyncMongoMockClient

        return Store(AsyncMongoMockClient(tz_aware=True), database, in_memory=True)
    options = {key.lower() for key in parse_qs(urlsplit(uri).query)}
    # 5 s to find a server, unless the URI sets its own serverSelectionTimeoutMS.
    timeout = {} if "serverselectiontimeoutms" in options else {"serverSelectionTimeoutMS": 5000}
    return Store(AsyncMongoClient(uri, tz_aware=True, appname="mobile-payments-gateway",
                                  **timeout), database, in_memory=False)


def time_window(filters: dict[str, Any], field: str) -> dict[str, Any]:
    """`{field: {"$gte": from, "$lt": to}}` from the optional date_from/date_to filters."""
    window = {}
    if "date_from" in filters:
        window["$gte"] = filters["date_from"]
    if "date_to" in filters:
        window["$lt"] = filters["date_to"]
    return {field: window} if window else {}
