"""One payment, two messages, without the simulator: the C2B copy of an M-Pesa Express
payment is linked to its debit, and never applied to a policy of its own."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from server.integrations.notifications import RecordingNotifier
from server.ledger import states
from server.ledger.transactions import new_transaction
from server.startup.services import Services, build_services

from support import BASIC_KES, INBOX, PAYMENTS, PREMIUMS, callback_body, idle_policy, make_settings
from systems import ManualClock

RECEIPT = "TST7RT61SV"


async def setup(store) -> tuple[Services, ManualClock, dict, dict]:
    """Two idle policies of one insuree, of the same amount; an M-Pesa Express debit of
    the first, `initiated` (its push not answered yet)."""
    clock = ManualClock()
    services = build_services(make_settings(), store, None, RecordingNotifier(), clock)
    policy = await idle_policy(services, "070707070", BASIC_KES, phone="0708374149")
    await idle_policy(services, "070707070", BASIC_KES)
    debit = new_transaction(
        transaction_uuid="stk-1",
        channel="mpesa_stk",
        status=states.INITIATED,
        policy=policy,
        psp_uuid=None,
        provider_reference=None,
        actor="olga",
        at=clock.now(),
        reason="",
        payer="254708374149",
        expires_at=None,
        code_attempts=0,
    )
    await services.ledger.transactions.insert(debit)
    return services, clock, policy, debit


def confirmation() -> bytes:
    body = callback_body(TransID=RECEIPT, TransAmount="1500.00", BillRefNumber="070707070")
    return json.dumps(body).encode()


@pytest.mark.asyncio
async def test_a_confirmation_while_the_push_is_unanswered_waits_for_it(store) -> None:
    services, clock, policy, debit = await setup(store)
    answer = await services.c2b.confirm(confirmation(), "196.201.214.200", {})
    assert answer["ResultCode"] == 0  # the money moved: never refused
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert entry["status"] == "failed" and "being started" in entry["failure"]["message"]
    assert await store.collection(PAYMENTS).count_documents({}) == 0
    assert await store.collection(PREMIUMS).count_documents({}) == 0

    await services.ledger.transactions.transition(
        debit["_id"],
        states.INITIATED,
        states.PROMPT_SENT,
        clock.now(),
        changes={"provider_reference": "ws_CO_1"},
    )
    clock.offset += timedelta(minutes=2)
    [replayed] = await services.inbox.replay(grace=timedelta(seconds=60))
    assert replayed.status == "processed"
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == debit["_id"]
    done = await services.ledger.get(debit["_id"])
    assert done["status"] == "succeeded" and done["provider_confirmation"] == RECEIPT
    [premium] = await store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["policy_uuid"] == policy["_id"]


@pytest.mark.asyncio
async def test_a_confirmation_of_a_receipt_already_applied_is_linked_not_applied(store) -> None:
    services, clock, policy, debit = await setup(store)
    await services.ledger.transactions.transition(
        debit["_id"], states.INITIATED, states.PROMPT_SENT, clock.now()
    )
    await services.ledger.transactions.transition(
        debit["_id"],
        states.PROMPT_SENT,
        states.SUCCEEDED,
        clock.now(),
        changes={"provider_confirmation": RECEIPT, "paid_at": clock.now()},
    )
    settled = await services.settlement.settle(await services.ledger.get(debit["_id"]))
    await services.c2b.confirm(confirmation(), "196.201.214.200", {})
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == debit["_id"]
    assert payment["receipt"] == settled["settlement"]["receipt"]
    # The insuree's other idle policy of the same amount is left alone.
    assert await store.collection(PREMIUMS).count_documents({}) == 1
    idle = await services.policies.list({"chf_id": "070707070", "status": 1}, 10, 0)
    assert len(idle[0]) == 1
