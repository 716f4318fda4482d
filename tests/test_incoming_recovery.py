"""A received payment cut off between its writes is completed, once, by running it
again: `finish_pending` (the finish-settlements job) after a crash."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.insurance.repository import ACTIVE, IDLE, POLICIES, PolicyRepository
from server.kernel.clock import Clock
from server.ledger.incoming import IncomingPayments
from server.ledger.repository import (
    PREMIUMS,
    TRANSACTIONS,
    PremiumRepository,
    TransactionRepository,
)
from server.ledger.settlement import Settlement

START = datetime(2026, 1, 1, tzinfo=UTC)


class CrashingPremiums(PremiumRepository):
    """The process dies after the policy was activated, before the premium."""

    async def insert_once(self, premium):
        raise ServerSelectionTimeoutError("store gone")


class CrashingTransitions(TransactionRepository):
    """The process dies after the premium, before the transaction is marked."""

    async def transition(self, *args, **kwargs):
        raise ServerSelectionTimeoutError("store gone")


def incoming(store, transactions=None, premiums=None) -> IncomingPayments:
    transactions = transactions or TransactionRepository(store)
    settlement = Settlement(
        transactions, premiums or PremiumRepository(store), PolicyRepository(store), Clock()
    )
    return IncomingPayments(transactions, PolicyRepository(store), settlement, Clock())


async def idle_policy(store) -> dict:
    policy = {
        "_id": str(uuid.uuid4()),
        "chf_id": "070707070",
        "product_code": "BASIC",
        "product_name": "Basic",
        "value": 50000,
        "currency": "GMD",
        "status": IDLE,
        "start_date": START,
        "created_at": START,
        "updated_at": START,
    }
    await store.collection(POLICIES).insert_one(policy)
    return policy


async def age(store, transaction_uuid: str) -> None:
    """Make a cut-off transaction look as old as one a crash left behind."""
    await store.collection(TRANSACTIONS).update_one(
        {"_id": transaction_uuid},
        {"$set": {"updated_at": datetime.now(UTC) - timedelta(minutes=10)}},
    )


@pytest.mark.parametrize("crash", ["before_premium", "before_marking"])
@pytest.mark.asyncio
async def test_a_payment_cut_off_is_finished_once_by_finish_pending(store, crash) -> None:
    policy = await idle_policy(store)
    broken = (
        incoming(store, premiums=CrashingPremiums(store))
        if crash == "before_premium"
        else incoming(store, transactions=CrashingTransitions(store))
    )
    transaction = broken.new_transaction(
        str(uuid.uuid4()), "psp_api", policy, "psp", "REF-1", "afrimoney"
    )
    with pytest.raises(ServerSelectionTimeoutError):
        await broken.record(transaction, policy)
    stored = await store.collection(TRANSACTIONS).find_one({"_id": transaction["_id"]})
    assert stored["status"] == "processing" and stored["open"] is True
    assert (await store.collection(POLICIES).find_one({"_id": policy["_id"]}))["status"] == ACTIVE

    healthy = incoming(store)
    # Recent ones may still be in their own request: left alone.
    assert await healthy.finish_pending({"psp_api"}, timedelta(minutes=2)) == 0
    await age(store, transaction["_id"])
    assert await healthy.finish_pending({"mpesa_c2b"}, timedelta(minutes=2)) == 0
    assert await healthy.finish_pending({"psp_api"}, timedelta(minutes=2)) == 1

    finished = await store.collection(TRANSACTIONS).find_one({"_id": transaction["_id"]})
    assert finished["status"] == "succeeded" and finished["open"] is False
    assert finished["settlement"]["status"] == "settled"
    assert await store.collection(PREMIUMS).count_documents({}) == 1
    assert await healthy.finish_pending({"psp_api"}, timedelta(0)) == 0


@pytest.mark.asyncio
async def test_a_settling_payment_is_one_write_per_step(store) -> None:
    """Claim, activate, premium, then succeeded and settled together."""
    policy = await idle_policy(store)
    service = incoming(store)
    transaction = service.new_transaction(
        str(uuid.uuid4()), "psp_api", policy, "psp", "REF-1", "afrimoney"
    )
    recorded = await service.record(transaction, policy)
    assert recorded["status"] == "succeeded" and recorded["settlement"]["status"] == "settled"
    assert [step["to"] for step in recorded["history"]] == ["processing", "succeeded"]
    again = await service.record(transaction, policy)
    assert again["settlement"] == recorded["settlement"]
    assert await store.collection(PREMIUMS).count_documents({}) == 1
