"""The rules of the write-premiums job (server.ledger.premium_writes), on both store lanes,
against a destination scripted by each test: an attempt is held from other runs while it
runs, an attempt the backend never finishes is left to an operator, and a premium found
in the backend after it was refused is written; and the openIMIS check by receipt.
(End to end against openIMIS: tests/test_openimis_backend.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.insurance.backend import PremiumToWrite, Sent
from server.ledger.premium_writes import Backoff, PremiumWrites
from server.ledger.repository import PremiumRepository, TransactionRepository
from server.reconciliation.openimis_check import compare_policy

from systems import ManualClock

LIMIT = timedelta(seconds=120)


class Destination:
    """A backend that holds what the test says, and records what was sent."""

    def __init__(self) -> None:
        self.held = False
        self.working = False
        self.sent: list[str] = []
        self.answer = Sent(written=True)
        self.during_send = None  # a coroutine function run while an attempt is out

    async def holds(self, premium: PremiumToWrite) -> bool:
        return self.held

    async def refusal(self, premium: PremiumToWrite) -> str:
        return ""

    async def send(self, mutation_id: str, premium: PremiumToWrite) -> Sent:
        self.sent.append(mutation_id)
        if self.during_send is not None:
            await self.during_send()
        return self.answer

    async def still_working(self, mutation_id: str) -> bool:
        return self.working

    async def written_status(self, policy_uuid: str) -> tuple[int, datetime | None]:
        return 2, datetime(2026, 12, 6, tzinfo=UTC)


async def pending_premium(store, clock) -> dict:
    premium = {
        "_id": "prem-1",
        "transaction_uuid": "tx-1",
        "policy_uuid": "pol-1",
        "chf_id": "070707070",
        "amount": 150000,
        "currency": "KES",
        "pay_date": datetime.combine(date(2026, 12, 6), datetime.min.time(), UTC),
        "pay_type": "M",
        "receipt": "R-TEST00000001",
        "created_at": clock.now(),
        "insurance_write": {
            "backend": "openimis",
            "state": "pending",
            "attempts": 0,
            "failures": 0,
            "next_at": clock.now(),
        },
    }
    await store.collection("premiums").insert_one(dict(premium))
    return premium


def writes(store, destination, clock, follow_limit: int = 20) -> PremiumWrites:
    return PremiumWrites(
        PremiumRepository(store),
        TransactionRepository(store),
        destination,
        Backoff(timedelta(seconds=30), timedelta(seconds=600)),
        clock,
        LIMIT,
        follow_limit,
    )


async def state_of(store) -> dict:
    return (await store.collection("premiums").find_one({"_id": "prem-1"}))["insurance_write"]


@pytest.mark.asyncio
async def test_an_attempt_under_way_is_not_taken_by_another_run(store) -> None:
    clock, destination = ManualClock(), Destination()
    await pending_premium(store, clock)
    job = writes(store, destination, clock)
    [due] = await job.premiums.writes_due(clock.now(), 10)
    # The first run claims the attempt; until the attempt's limit, no run finds it due.
    assert await job.premiums.start_write("prem-1", 0, "m-1", clock.now(), clock.now() + LIMIT)
    assert await job.premiums.writes_due(clock.now() + LIMIT / 2, 10) == []
    # A run that read it before the claim loses the compare-and-set: nothing is sent.
    assert await job.write(due) == "skipped"
    assert destination.sent == []
    assert len(await job.premiums.writes_due(clock.now() + LIMIT, 10)) == 1


@pytest.mark.asyncio
async def test_an_attempt_the_backend_never_finishes_is_left_to_an_operator(store) -> None:
    clock, destination = ManualClock(), Destination()
    await pending_premium(store, clock)
    job = writes(store, destination, clock, follow_limit=2)
    destination.answer = Sent(written=False)  # still at it when the deadline came
    assert await job.run() == {"following": 1}
    destination.working = True
    clock.offset += timedelta(seconds=31)
    assert await job.run() == {"following": 1}  # the second look: still queued there
    assert len(destination.sent) == 1  # never sent again meanwhile
    clock.offset += timedelta(seconds=31)
    assert await job.run() == {"refused": 1}
    state = await state_of(store)
    assert state["state"] == "refused" and "has not finished mutation" in state["refusal"]


@pytest.mark.asyncio
async def test_an_attempt_that_lands_after_another_run_refused_it_is_written(store) -> None:
    clock, destination = ManualClock(), Destination()
    premium = await pending_premium(store, clock)
    job = writes(store, destination, clock)

    async def another_run_refuses() -> None:
        # A run whose lease outlived the first's saw the policy paid (by this very
        # attempt, landing meanwhile) and refused the premium.
        await job._refused(premium, "the policy is no longer awaiting payment in openIMIS")

    destination.during_send = another_run_refuses
    assert await job.write(premium) == "written"
    state = await state_of(store)
    assert state["state"] == "written" and state["policy_status"] == 2


def test_a_receipt_openimis_holds_twice_is_a_duplicate_not_a_match() -> None:
    """Paid at 01:30 in Nairobi (22:30 UTC the day before): the 6th there."""
    recorded = {
        "receipt": "R-TEST00000001",
        "policy_uuid": "pol-1",
        "amount": 150000,
        "currency": "KES",
        "pay_date": datetime(2026, 12, 5, 22, 30, tzinfo=UTC),
        "insurance_write": {"state": "written"},
    }
    node = {
        "receipt": "R-TEST00000001",
        "amount": "1500.00",
        "payDate": "2026-12-06",
        "payType": "M",
        "policy": {"uuid": "pol-1"},
    }
    desk = {**node, "receipt": "CASH-9", "payType": "C"}
    items = compare_policy([recorded], [node, dict(node), desk], "M", ZoneInfo("Africa/Nairobi"))
    assert [item["kind"] for item in items] == ["matched", "duplicated_there"]
