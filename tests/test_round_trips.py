"""MongoDB round trips per payment, counted with PyMongo's command monitoring on the
MongoDB lane: a count is deterministic, so a change that adds a round trip to the hot
path fails here. `python -m bench.round_trips` prints the same count with each command.

Counted from the request until the store has been quiet for a moment after the answer
(background writes included), each kind once warmed up. Handshake and heartbeat
commands and the gateway's periodic upkeep are left out (bench.round_trips)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient

from bench.round_trips import Command, CommandCounter, breakdown, trans_id
from server.kernel.store import Store
from server.startup.services import INDEXES

from support import (
    BASIC_KES,
    PspUser,
    callback_body,
    deliver_callback,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
)
from systems import Debits

MONGODB_URI = os.environ.get("TEST_MONGODB_URI")
pytestmark = pytest.mark.skipif(
    not MONGODB_URI, reason="needs a MongoDB server: set TEST_MONGODB_URI"
)

# The most round trips each kind may take: today's counts. The goals are 8 for a
# settling confirmation and for a Qmoney debit. A settling confirmation's nine: the
# inbox, the match, the payment, the transaction's claim on the policy, the policy, the
# premium, the transaction's end, the payment's end, the inbox's mark. A Qmoney debit's
# fourteen, over its two requests: the user (twice: a deactivated user is refused at
# once), the policy with its insuree, the provider, the transaction, its wait for the
# code, the provider call's log (twice), the transaction with its policy, its claim for
# processing, its success, the policy, the premium, the settlement.
SETTLING_CONFIRMATION = 9
UNMATCHED_CONFIRMATION = 4
PROVIDER_PAYMENT = 8
QMONEY_DEBIT = 14
QUIET_SECONDS = 0.3


@pytest.fixture
def counter() -> CommandCounter:
    return CommandCounter()


@pytest_asyncio.fixture
async def store(counter: CommandCounter) -> AsyncIterator[Store]:
    """The MongoDB lane's store (overriding conftest's), its client reporting every
    command to `counter`."""
    name = f"test_rt_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient = AsyncMongoClient(
        MONGODB_URI, tz_aware=True, event_listeners=[counter]
    )
    opened = Store(client, name, in_memory=False)
    await opened.ensure_indexes(INDEXES)
    yield opened
    await client.drop_database(name)
    await opened.close()


async def counted(counter: CommandCounter, action: Any) -> list[Command]:
    """The commands `action` (a coroutine) and what it left running sent."""
    mark = len(counter.commands)
    await action
    await counter.quiet(QUIET_SECONDS)
    return counter.commands[mark:]


def within(commands: list[Command], most: int) -> None:
    assert len(commands) <= most, (
        f"{len(commands)} round trips ({breakdown(commands)}), at most {most}: "
        + "; ".join(f"{c.name} {c.collection} {c.detail}" for c in commands)
    )


async def confirm(http, gateway, account: str, amount: str) -> None:
    body = callback_body(TransID=trans_id(), BillRefNumber=account, TransAmount=amount)
    status, answer = await deliver_callback(http, gateway, "confirmation", body)
    assert (status, answer["ResultCode"]) == (200, 0)


@pytest.mark.asyncio
async def test_a_confirmation_takes_few_round_trips(
    http, start_gateway_with, counter: CommandCounter
) -> None:
    gateway = await start_gateway_with(make_settings(c2b={"currency": "KES"}))
    for chf_id in ("900000001", "900000002"):
        await idle_policy(gateway.services, chf_id, BASIC_KES)
    await counted(counter, confirm(http, gateway, "900000001", BASIC_KES.price))  # warm-up
    await counted(counter, confirm(http, gateway, "800000001", BASIC_KES.price))

    settling = await counted(counter, confirm(http, gateway, "900000002", BASIC_KES.price))
    unmatched = await counted(counter, confirm(http, gateway, "800000002", BASIC_KES.price))

    payments = await gateway.services.c2b.list_payments({}, 10, 0)
    assert sorted(payment["status"] for payment in payments[0]) == [
        "settled",
        "settled",
        "unmatched",
        "unmatched",
    ]
    within(settling, SETTLING_CONFIRMATION)
    within(unmatched, UNMATCHED_CONFIRMATION)


@pytest.mark.asyncio
async def test_a_provider_payment_takes_few_round_trips(
    http, start_gateway_with, counter: CommandCounter
) -> None:
    gateway = await start_gateway_with()
    provider: PspUser = await psp_user(http, gateway)
    policies = [
        await idle_policy(gateway.services, chf_id) for chf_id in ("700000001", "700000002")
    ]

    async def pay(policy: dict[str, Any]) -> None:
        status, answer = await request_json(
            http,
            "POST",
            f"{gateway.url}/api/v1/payments",
            {
                "chf_id": policy["chf_id"],
                "amount": "500.00",
                "psp_transaction_id": f"RT-{uuid.uuid4().hex[:10]}",
                "policy": {
                    "token": policy["payment_token"],
                    "product_code": policy["product_code"],
                    "product_name": policy["product_name"],
                },
            },
            headers=provider.headers,
        )
        assert status == 201 and answer["status"] == "succeeded", answer

    await counted(counter, pay(policies[0]))  # warm-up
    within(await counted(counter, pay(policies[1])), PROVIDER_PAYMENT)


@pytest.mark.asyncio
async def test_a_qmoney_debit_takes_few_round_trips(
    debits: Debits, counter: CommandCounter
) -> None:
    policies = [await debits.policy(chf_id) for chf_id in ("600000001", "600000002")]

    async def debit(policy: dict[str, Any]) -> None:
        status, started = await debits.start(policy)
        assert status == 201, started
        otp = await debits.otp()
        status, done = await debits.process(started, otp)
        assert status == 200 and done["status"] == "succeeded", done

    await counted(counter, debit(policies[0]))  # warm-up
    within(await counted(counter, debit(policies[1])), QMONEY_DEBIT)
