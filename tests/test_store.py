import pytest

from server.startup.services import INDEXES

from support import PAYMENTS


@pytest.mark.asyncio
async def test_indexes_are_created_idempotently_with_a_unique_trans_id(store) -> None:
    await store.ensure_indexes(INDEXES)  # the fixture already did it once
    info = await store.collection(PAYMENTS).index_information()
    [unique] = [index for index in info.values() if index["key"] == [("trans_id", 1)]]
    assert unique["unique"] is True


@pytest.mark.asyncio
async def test_aggregate_hides_the_driver_difference(store) -> None:
    await store.collection(PAYMENTS).insert_many(
        [{"trans_id": "A", "amount": 150}, {"trans_id": "B", "amount": 250}]
    )
    totals = await store.aggregate(
        PAYMENTS, [{"$group": {"_id": None, "total": {"$sum": "$amount"}}}]
    )
    assert totals == [{"_id": None, "total": 400}]


@pytest.mark.asyncio
async def test_ping_reaches_the_store(store) -> None:
    await store.ping()
