"""Retention of the provider-API audit and the provider call log: TTL indexes whose
expiry comes from the settings, and follows them when they change."""

from datetime import UTC, datetime

import pytest
from pymongo.errors import OperationFailure

from server.kernel.store import EXPIRY, Store
from server.startup.services import indexes

from support import PROVIDER_CALLS, PSP_AUDIT, make_settings

DAY = 86400


async def expiry(store, collection: str) -> int | None:
    """expireAfterSeconds of the collection's index on `at` (None: a plain index)."""
    info = await store.collection(collection).index_information()
    [index] = [index for index in info.values() if list(index["key"]) == [("at", 1)]]
    return index.get(EXPIRY)


@pytest.mark.asyncio
async def test_audit_and_call_log_expire_after_their_retention(start_gateway_with, store) -> None:
    await start_gateway_with(make_settings(retention={"audit_days": 7, "provider_calls_days": 3}))
    assert await expiry(store, PSP_AUDIT) == 7 * DAY
    assert await expiry(store, PROVIDER_CALLS) == 3 * DAY


@pytest.mark.asyncio
async def test_a_changed_retention_changes_the_index_when_the_gateway_starts(
    start_gateway_with, store
) -> None:
    await start_gateway_with(make_settings())
    assert await expiry(store, PSP_AUDIT) == 90 * DAY
    now = datetime.now(UTC)
    await store.collection(PSP_AUDIT).insert_one({"_id": "kept", "at": now})
    await store.collection(PROVIDER_CALLS).insert_one({"_id": "kept", "at": now})
    # Another process (or a restart) with other settings, on the same store.
    await start_gateway_with(make_settings(retention={"audit_days": 10, "provider_calls_days": 5}))
    assert await expiry(store, PSP_AUDIT) == 10 * DAY
    assert await expiry(store, PROVIDER_CALLS) == 5 * DAY
    for collection in (PSP_AUDIT, PROVIDER_CALLS):
        assert await store.collection(collection).count_documents({"_id": "kept"}) == 1


@pytest.mark.asyncio
async def test_a_plain_call_log_index_becomes_a_ttl_index(start_gateway_with, store) -> None:
    """Stores created before retention existed have a plain index on provider_calls.at."""
    await store.collection(PROVIDER_CALLS).create_index([("at", 1)])
    await start_gateway_with(make_settings())
    assert await expiry(store, PROVIDER_CALLS) == 30 * DAY


@pytest.mark.asyncio
async def test_readiness_needs_the_retention_indexes(http, gateway, store) -> None:
    await store.collection(PSP_AUDIT).drop_index("at_1")
    async with http.get(f"{gateway.url}/readyz") as answer:
        assert answer.status == 503
        assert "psp_audit(at)" in (await answer.json())["error"]["message"]


class ServerIndexes:
    """The index commands of a MongoDB server (collMod included), each call recorded.

    Creating an index under an existing name with other options fails as on
    mongod, with IndexOptionsConflict."""

    def __init__(self) -> None:
        self.indexes: dict[str, dict[str, dict]] = {}
        self.calls: list[tuple] = []

    def __getitem__(self, name: str) -> "CollectionIndexes":
        return CollectionIndexes(self, name)

    async def command(self, document: dict) -> dict:
        self.calls.append(("command", document))
        index = self.indexes[document["collMod"]][document["index"]["name"]]
        index[EXPIRY] = document["index"][EXPIRY]
        return {"ok": 1.0}


class CollectionIndexes:
    def __init__(self, server: ServerIndexes, name: str) -> None:
        self.server, self.name = server, name
        self.present = server.indexes.setdefault(name, {})

    async def index_information(self) -> dict:
        return {name: dict(index) for name, index in self.present.items()}

    async def create_index(self, keys: list, **options) -> str:
        name = options.pop("name", None) or "_".join(f"{key}_{order}" for key, order in keys)
        wanted = {"key": list(keys), **options}
        if name in self.present and self.present[name] != wanted:
            raise OperationFailure(
                f"Index with name: {name} already exists with different options", code=85
            )
        self.server.calls.append(("create", self.name, name))
        self.present[name] = wanted
        return name

    async def drop_index(self, name: str) -> None:
        self.server.calls.append(("drop", self.name, name))
        del self.present[name]


@pytest.mark.asyncio
async def test_a_server_with_collmod_changes_the_expiry_in_place() -> None:
    server = ServerIndexes()
    store = Store({"gateway": server}, "gateway", in_memory=False)
    await store.ensure_indexes(indexes(make_settings()))
    with pytest.raises(OperationFailure, match="different options"):
        await server[PSP_AUDIT].create_index([("at", 1)], expireAfterSeconds=DAY)
    server.calls.clear()
    await store.ensure_indexes(indexes(make_settings(retention={"audit_days": 10})))
    changes = [call for call in server.calls if call[0] != "create"]
    assert changes == [
        ("command", {"collMod": PSP_AUDIT, "index": {"name": "at_1", EXPIRY: 10 * DAY}})
    ]
    assert (await server[PSP_AUDIT].index_information())["at_1"][EXPIRY] == 10 * DAY
    server.calls.clear()
    await store.ensure_indexes(indexes(make_settings(retention={"audit_days": 10})))
    assert [call for call in server.calls if call[0] != "create"] == []


class ServerWithoutCollMod(ServerIndexes):
    """An older server (or a user without the collMod right), where another gateway
    process drops the index just before this one does."""

    async def command(self, document: dict) -> dict:
        raise OperationFailure("not authorized on gateway to execute command", code=13)

    def __getitem__(self, name: str) -> "CollectionIndexes":
        return DroppedFirstByAnother(self, name)


class DroppedFirstByAnother(CollectionIndexes):
    async def drop_index(self, name: str) -> None:
        del self.present[name]  # the other process's drop
        raise OperationFailure(f"index not found with name [{name}]", code=27)


@pytest.mark.asyncio
async def test_a_rebuild_tolerates_another_process_dropping_the_index_first() -> None:
    server = ServerWithoutCollMod()
    store = Store({"gateway": server}, "gateway", in_memory=False)
    await store.ensure_indexes(indexes(make_settings()))
    await store.ensure_indexes(indexes(make_settings(retention={"audit_days": 10})))
    assert (await server[PSP_AUDIT].index_information())["at_1"][EXPIRY] == 10 * DAY
