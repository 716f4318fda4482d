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

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    TRANSACTIONS,
    callback_body,
    idle_policy,
    make_settings,
)
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


@pytest.mark.asyncio
async def test_the_copy_of_a_prompt_whose_account_reference_was_cut_is_linked(store) -> None:
    """An insuree number longer than the prompt's 12-character AccountReference: the
    confirmation's account number names no insuree, and the receipt alone finds the
    debit."""
    clock = ManualClock()
    services = build_services(make_settings(), store, None, RecordingNotifier(), clock)
    long_number = "12345678901234"
    policy = await idle_policy(services, long_number, BASIC_KES, phone="0708374149")
    settled = await succeeded_debit(services, clock, policy, "stk-long")
    body = callback_body(TransID=RECEIPT, TransAmount="1500.00", BillRefNumber=long_number[:12])
    await services.c2b.confirm(json.dumps(body).encode(), "196.201.214.200", {})
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == settled["_id"]
    assert payment["receipt"] == settled["settlement"]["receipt"]
    assert await store.collection(PREMIUMS).count_documents({}) == 1


async def succeeded_debit(
    services: Services, clock: ManualClock, policy: dict, transaction_uuid: str
) -> dict:
    """A settled M-Pesa Express debit of `policy` whose receipt is RECEIPT."""
    debit = new_transaction(
        transaction_uuid=transaction_uuid,
        channel="mpesa_stk",
        status=states.SUCCEEDED,
        policy=policy,
        psp_uuid=None,
        provider_reference=f"ws_CO_{transaction_uuid}",
        actor="olga",
        at=clock.now(),
        reason="",
        payer="254708374149",
        expires_at=None,
        code_attempts=0,
    )
    await services.ledger.transactions.insert(
        {**debit, "provider_confirmation": RECEIPT, "paid_at": clock.now()}
    )
    return await services.settlement.settle(await services.ledger.get(debit["_id"]))


@pytest.mark.asyncio
async def test_a_cut_reference_naming_another_insuree_is_linked_not_applied_to_them(
    store,
) -> None:
    """Insuree A's number cut to 12 characters is insuree B's whole number, and B has an
    idle policy of the same amount: the copy of A's payment names B, and is linked to
    A's debit by its receipt (it used to pay B's policy too: a double payment)."""
    clock = ManualClock()
    services = build_services(make_settings(), store, None, RecordingNotifier(), clock)
    long_number, cut = "1234567890123", "123456789012"
    policy = await idle_policy(services, long_number, BASIC_KES, phone="0708374149")
    others = await idle_policy(services, cut, BASIC_KES, phone="0711000001")
    settled = await succeeded_debit(services, clock, policy, "stk-a")
    body = callback_body(TransID=RECEIPT, TransAmount="1500.00", BillRefNumber=cut)
    await services.c2b.confirm(json.dumps(body).encode(), "196.201.214.200", {})
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == settled["_id"]
    assert payment["policy_uuid"] == policy["_id"]
    assert payment["receipt"] == settled["settlement"]["receipt"]
    assert (await services.policies.get(others["_id"]))["status"] == 1
    [premium] = await store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["policy_uuid"] == policy["_id"]
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_a_copy_with_no_account_number_is_linked_by_its_receipt(store) -> None:
    """A till's copy of an M-Pesa Express payment carries no BillRefNumber: its TransID
    alone finds the debit."""
    clock = ManualClock()
    services = build_services(make_settings(), store, None, RecordingNotifier(), clock)
    policy = await idle_policy(services, "070707070", BASIC_KES, phone="0708374149")
    await idle_policy(services, "070707070", BASIC_KES)
    settled = await succeeded_debit(services, clock, policy, "stk-till")
    body = callback_body(TransID=RECEIPT, TransAmount="1500.00", BillRefNumber="")
    await services.c2b.confirm(json.dumps(body).encode(), "196.201.214.200", {})
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    assert payment["status"] == "settled" and payment["transaction_uuid"] == settled["_id"]
    assert payment["receipt"] == settled["settlement"]["receipt"]
    assert await store.collection(PREMIUMS).count_documents({}) == 1
    idle = await services.policies.list({"chf_id": "070707070", "status": 1}, 10, 0)
    assert len(idle[0]) == 1
