"""Majority write and read concerns on a replica set, decided without one."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import WriteConcern

from server.kernel.store import Store, majority_applies, open_store
from server.startup.services import MAJORITY_COLLECTIONS

MONEY = ["transactions", "c2b_payments"]


def unconnected(hello: dict[str, Any]) -> Store:
    """A MongoDB store whose server answers `hello` with the given fields."""
    store = open_store("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100", "test")

    async def answer() -> dict[str, Any]:
        return {"ok": 1.0, "isWritablePrimary": True, **hello}

    store._hello = answer
    return store


@pytest.mark.parametrize(
    ("hello", "enabled", "applies"),
    [
        ({"setName": "rs0"}, True, True),
        ({"msg": "isdbgrid"}, True, True),  # a mongos: the shards are replica sets
        ({}, True, False),  # a standalone server
        ({"setName": "rs0"}, False, False),  # store.majority_writes: false
    ],
)
def test_majority_applies_on_a_replica_set_when_the_setting_allows(
    hello: dict[str, Any], enabled: bool, applies: bool
) -> None:
    assert majority_applies(hello, enabled) is applies


@pytest.mark.asyncio
async def test_money_collections_of_a_replica_set_write_and_read_at_majority() -> None:
    store = unconnected({"setName": "rs0"})
    try:
        assert await store.use_majority(MONEY, enabled=True)
        transactions = store.collection("transactions")
        assert transactions.write_concern == WriteConcern("majority", j=True)
        assert transactions.read_concern.level == "majority"
        users = store.collection("users")
        assert users.write_concern == WriteConcern() and users.read_concern.level is None
    finally:
        await store.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("hello", "enabled"), [({}, True), ({"setName": "rs0"}, False)])
async def test_without_a_replica_set_or_with_the_setting_off_concerns_stay_default(
    hello: dict[str, Any], enabled: bool
) -> None:
    store = unconnected(hello)
    try:
        assert not await store.use_majority(MONEY, enabled=enabled)
        assert store.collection("transactions").write_concern == WriteConcern()
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_the_in_memory_store_ignores_majority() -> None:
    store = open_store("memory://", "test")
    assert not await store.use_majority(MONEY, enabled=True)
    await store.collection("transactions").insert_one({"_id": "t1"})
    assert await store.collection("transactions").find_one({"_id": "t1"}) == {"_id": "t1"}
    await store.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("uri", "retries"),
    [
        ("mongodb://127.0.0.1:1/", True),
        ("mongodb://127.0.0.1:1/?retryWrites=false", False),  # the URI has the last word
    ],
)
async def test_writes_are_retried_once_after_a_failover(uri: str, retries: bool) -> None:
    store = open_store(uri, "test")
    assert store.client.options.retry_writes is retries
    await store.close()


def test_every_collection_whose_writes_decide_money_is_written_at_majority() -> None:
    assert set(MAJORITY_COLLECTIONS) >= {
        "c2b_inbox",
        "c2b_payments",
        "transactions",
        "premiums",
        "policies",
    }
