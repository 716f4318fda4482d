"""Settlement on the store lanes: idempotent, and repaired by re-running after a crash."""

import uuid
from datetime import UTC, datetime

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.insurance.repository import ACTIVE, IDLE, PolicyRepository
from server.kernel.clock import Clock
from server.ledger.incoming import IncomingPayments, PolicyBusy, PolicyNotPayable
from server.ledger.repository import PremiumRepository, TransactionRepository
from server.ledger.settlement import Settlement

from support import POLICIES, PREMIUMS, TRANSACTIONS, stored_debit, stored_policy

START = datetime(2026, 1, 1, tzinfo=UTC)


class CrashingPremiums(PremiumRepository):
    """The process dies after the policy was activated, before the premium."""

    crashes = 1

    async def insert_once(self, premium):
        if self.crashes:
            self.crashes -= 1
            raise ServerSelectionTimeoutError("store gone")
        return await super().insert_once(premium)


async def make_case(store, *, start=START, status=IDLE, paid_at=None) -> dict:
    policy = await stored_policy(store, status=status, start=start)
    return await stored_debit(
        store, policy, paid_at=paid_at or datetime(2026, 3, 5, 10, tzinfo=UTC)
    )


def settlement(store, premiums=None) -> Settlement:
    return Settlement(
        TransactionRepository(store),
        premiums or PremiumRepository(store),
        PolicyRepository(store),
        Clock(),
    )


@pytest.mark.asyncio
async def test_settlement_creates_the_premium_and_activates_the_policy(store) -> None:
    transaction = await make_case(store)
    settled = await settlement(store).settle(transaction)
    assert settled["settlement"]["status"] == "settled"
    policy = await store.collection(POLICIES).find_one({"_id": transaction["policy_uuid"]})
    assert policy["status"] == ACTIVE
    assert policy["effective_date"] == datetime(2026, 3, 5, 10, tzinfo=UTC)
    [premium] = await store.collection(PREMIUMS).find({}).to_list(None)
    assert (premium["amount"], premium["currency"], premium["pay_type"]) == (50000, "GMD", "M")
    assert premium["transaction_uuid"] == transaction["_id"]
    assert settled["settlement"]["receipt"] == premium["receipt"]


@pytest.mark.asyncio
async def test_effective_date_is_the_start_date_when_paid_before_it(store) -> None:
    transaction = await make_case(store, start=datetime(2026, 6, 1, tzinfo=UTC))
    await settlement(store).settle(transaction)
    policy = await store.collection(POLICIES).find_one({"_id": transaction["policy_uuid"]})
    assert policy["effective_date"] == datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.asyncio
async def test_settling_twice_creates_one_premium(store) -> None:
    transaction = await make_case(store)
    service = settlement(store)
    first = await service.settle(transaction)
    await store.collection(TRANSACTIONS).update_one(
        {"_id": transaction["_id"]}, {"$set": {"settlement": None}}
    )
    second = await service.settle(transaction)
    assert second["settlement"]["premium_uuid"] == first["settlement"]["premium_uuid"]
    assert await store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_crash_between_writes_is_completed_by_settle_pending(store) -> None:
    transaction = await make_case(store)
    with pytest.raises(ServerSelectionTimeoutError):
        await settlement(store, CrashingPremiums(store)).settle(transaction)
    policy = await store.collection(POLICIES).find_one({"_id": transaction["policy_uuid"]})
    assert policy["status"] == ACTIVE  # first write done
    assert await store.collection(PREMIUMS).count_documents({}) == 0
    assert await settlement(store).settle_pending() == 1
    assert await store.collection(PREMIUMS).count_documents({}) == 1
    stored = await store.collection(TRANSACTIONS).find_one({"_id": transaction["_id"]})
    assert stored["settlement"]["status"] == "settled"
    assert await settlement(store).settle_pending() == 0


@pytest.mark.asyncio
async def test_policy_paid_by_another_transaction_is_not_activated_twice(store) -> None:
    first = await make_case(store)
    service = settlement(store)
    await service.settle(first)
    second = {**first, "_id": str(uuid.uuid4()), "settlement": None}
    await store.collection(TRANSACTIONS).insert_one(second)
    refused = await service.settle(second)
    assert refused["settlement"] == {
        "status": "refused",
        "reason": "policy_not_idle",
        "settled_at": refused["settlement"]["settled_at"],
    }
    assert await store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_a_succeeded_payment_holds_the_policy_until_it_is_settled(store) -> None:
    """Otherwise a second payment could see the policy still idle and be taken too."""
    first = await make_case(store)
    transactions = TransactionRepository(store)
    await store.collection(TRANSACTIONS).update_one(
        {"_id": first["_id"]}, {"$set": {"status": "processing", "open": True}}
    )
    await transactions.transition(first["_id"], "processing", "succeeded", datetime.now(UTC))
    incoming = IncomingPayments(transactions, PolicyRepository(store), settlement(store), Clock())
    policy = await store.collection(POLICIES).find_one({"_id": first["policy_uuid"]})
    second = incoming.new_transaction(
        str(uuid.uuid4()), "psp_api", policy, "psp", "REF-2", "afrimoney"
    )
    with pytest.raises(PolicyBusy):
        await incoming.record(second)
    await settlement(store).settle_pending()
    with pytest.raises(PolicyNotPayable):
        await incoming.record({**second, "_id": str(uuid.uuid4())})
