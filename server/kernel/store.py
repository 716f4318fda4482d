"""MongoDB access: one client factory and the few driver differences hidden.

`mongodb://` and `mongodb+srv://` URIs get PyMongo's native async client;
`memory://` gets the in-memory mongomock-motor store (sandbox and tests), over
mongomock with hash indexes (server.kernel.memory_store).

On a replica set (or a sharded cluster) the collections whose writes decide money
are written with write concern `majority` (journaled) and read with read concern
`majority`: an acknowledged payment survives the loss of the primary, and a read
never shows what a failover could roll back. The in-memory store has no such thing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypedDict
from urllib.parse import parse_qs, urlsplit

from pymongo import AsyncMongoClient, UpdateOne, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

log = logging.getLogger("gateway.store")

IndexSpec = tuple[str, list[tuple[str, int]], dict[str, Any]]
# The option that makes an index a TTL index: documents expire this long after its field.
EXPIRY = "expireAfterSeconds"
INDEX_NOT_FOUND = 27  # MongoDB's error code when a dropped index is not there
MAJORITY_WRITES = WriteConcern("majority", j=True)
MAJORITY_READS = ReadConcern("majority")


def expiring_index(collection: str, field: str, days: int) -> IndexSpec:
    """A TTL index: a document is deleted `days` after the time in its `field`."""
    return (collection, [(field, 1)], {EXPIRY: days * 86400})


def majority_applies(hello: Mapping[str, Any], enabled: bool) -> bool:
    """Majority concerns, when the setting allows them, on a replica set member (its
    `hello` answer names the set) or a mongos in front of replica-set shards."""
    return enabled and bool(hello.get("setName") or hello.get("msg") == "isdbgrid")


class Store:
    """A database handle plus the operations whose API differs between drivers."""

    def __init__(self, client: Any, database: str, *, in_memory: bool) -> None:
        self.client = client
        self.db = client[database]
        self.in_memory = in_memory
        self._majority: frozenset[str] = frozenset()
        self._collections: dict[str, AsyncCollection] = {}

    def collection(self, name: str) -> AsyncCollection:
        """The collection, with majority concerns if it is one `use_majority` named.
        Made once per name: a collection handle holds no state of a request."""
        if name not in self._collections:
            self._collections[name] = (
                self.db.get_collection(
                    name, write_concern=MAJORITY_WRITES, read_concern=MAJORITY_READS
                )
                if name in self._majority
                else self.db[name]
            )
        return self._collections[name]

    async def use_majority(self, collections: Iterable[str], *, enabled: bool) -> bool:
        """Ask the server what it is (after connecting) and give `collections` majority
        concerns if `majority_applies`; call it before the repositories take their
        collections. The in-memory store ignores it."""
        if self.in_memory:
            return False
        self._collections.clear()
        if majority_applies(await self._hello(), enabled):
            self._majority = frozenset(collections)
            log.info("store_majority_concerns collections=%s", ",".join(sorted(self._majority)))
        else:
            self._majority = frozenset()
        return bool(self._majority)

    async def _hello(self) -> Mapping[str, Any]:
        answer: Mapping[str, Any] = await self.client.admin.command("hello")
        return answer

    async def aggregate(self, collection: str, pipeline: list[dict[str, Any]]) -> list[dict]:
        """Run a pipeline; AsyncMongoClient's aggregate is awaited, mongomock's is not."""
        cursor: Any = self.collection(collection).aggregate(pipeline)
        if inspect.isawaitable(cursor):
            cursor = await cursor
        return await cursor.to_list(None)

    async def upsert_many(self, collection: str, updates: list[tuple[dict, dict]]) -> None:
        """(filter, update) pairs applied as upserts: one round trip with the driver
        (`bulk_write`, unordered); one by one in memory, whose bulk writer does not take
        this driver's operations."""
        if not updates:
            return
        target = self.collection(collection)
        if self.in_memory:
            for query, update in updates:
                await target.update_one(query, update, upsert=True)
            return
        await target.bulk_write(
            [UpdateOne(query, update, upsert=True) for query, update in updates], ordered=False
        )

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

    async def _ensure_expiring(
        self, collection: str, keys: list[tuple[str, int]], options: dict[str, Any]
    ) -> None:
        present = await self.db[collection].index_information()
        name = next(
            (
                name
                for name, index in present.items()
                if [tuple(pair) for pair in index["key"]] == list(keys)
            ),
            None,
        )
        if name is None:
            await self.db[collection].create_index(keys, **options)
        elif present[name].get(EXPIRY) != options[EXPIRY]:
            await self._change_expiry(collection, name, keys, options)

    async def _change_expiry(
        self, collection: str, name: str, keys: list[tuple[str, int]], options: dict[str, Any]
    ) -> None:
        """collMod changes the expiry in place (and makes a plain single-field index a TTL
        index, MongoDB >= 5.1). A store that cannot (the in-memory one, an older server)
        gets the index dropped and built again."""
        seconds = options[EXPIRY]
        try:
            await self.db.command({"collMod": collection, "index": {"name": name, EXPIRY: seconds}})
            how = "collMod"
        except (NotImplementedError, OperationFailure) as err:
            how = f"rebuilt_after_{err.__class__.__name__}"
            try:
                await self.db[collection].drop_index(name)
            except OperationFailure as gone:  # another process dropped it first
                if gone.code != INDEX_NOT_FOUND:
                    raise
            await self.db[collection].create_index(keys, **options)
        log.info(
            "index_expiry_changed collection=%s index=%s seconds=%s how=%s",
            collection,
            name,
            seconds,
            how,
        )

    async def close(self) -> None:
        result: Awaitable[None] | None = self.client.close()
        if inspect.isawaitable(result):
            await result


class _ClientOptions(TypedDict, total=False):
    """The AsyncMongoClient keyword options open_store may add to the URI's."""

    serverSelectionTimeoutMS: int
    retryWrites: bool


def open_store(uri: str, database: str) -> Store:
    """Client factory: no I/O happens until the first operation."""
    if uri == "memory://":
        from mongomock_motor import AsyncMongoMockClient

        from server.kernel.memory_store import memory_client

        client: Any = AsyncMongoMockClient(mock_mongo_client=memory_client(tz_aware=True))
        return Store(client, database, in_memory=True)
    options = {key.lower() for key in parse_qs(urlsplit(uri).query)}
    added: _ClientOptions = {}
    # 5 s to find a server, unless the URI sets its own serverSelectionTimeoutMS.
    if "serverselectiontimeoutms" not in options:
        added["serverSelectionTimeoutMS"] = 5000
    # A write cut by a failover is sent once more to the new primary, unless the URI says no.
    if "retrywrites" not in options:
        added["retryWrites"] = True
    return Store(
        AsyncMongoClient(uri, tz_aware=True, appname="mobile-payments-gateway", **added),
        database,
        in_memory=False,
    )


def time_window(filters: dict[str, Any], field: str) -> dict[str, Any]:
    """`{field: {"$gte": from, "$lt": to}}` from the optional date_from/date_to filters."""
    window = {}
    if "date_from" in filters:
        window["$gte"] = filters["date_from"]
    if "date_to" in filters:
        window["$lt"] = filters["date_to"]
    return {field: window} if window else {}
