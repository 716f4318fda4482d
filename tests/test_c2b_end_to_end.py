"""Gateway and Daraja simulator on ephemeral ports, over real sockets."""

import asyncio
import json
from dataclasses import replace
from datetime import timedelta

import pytest

from support import (
    BASIC_KES,
    INBOX,
    PREMIUMS,
    FailingPayments,
    Product,
    headers_for_role,
    idle_policy,
    make_settings,
    request_json,
)
from systems import System


def kinds(txn: dict) -> list[str]:
    return [delivery["kind"] for delivery in txn["deliveries"]]


@pytest.mark.asyncio
async def test_paybill_payment_arrives_stored_and_notified(system) -> None:
    txn = await system.pay("150.00")
    assert txn["status"] == "completed" and kinds(txn) == ["confirmation"]
    assert txn["deliveries"][0]["answer"] == {"ResultCode": 0, "ResultDesc": "Success"}
    [payment] = await system.payments()
    assert payment["trans_id"] == txn["trans_id"]
    assert (payment["amount"], payment["currency"]) == (15000, "KES")
    assert payment["bill_ref"] == "070707070" and payment["msisdn_form"] == "masked"
    await system.gateway.services.sms.send_due()  # the job hands the payer's notice over
    [notification] = system.notifier.sent
    assert notification.reference == txn["trans_id"]


@pytest.mark.asyncio
async def test_v1_registration_delivers_a_hashed_msisdn(system) -> None:
    await system.register(register_version="v1")
    await system.pay(version="v1")
    [payment] = await system.payments()
    assert payment["msisdn_form"] == "hashed" and len(payment["msisdn"]) == 64


@pytest.mark.asyncio
async def test_accepted_validation_is_followed_by_the_confirmation(system) -> None:
    await system.control("POST", "validation", {"enabled": True})
    txn = await system.pay("150.00")
    assert kinds(txn) == ["validation", "confirmation"]
    assert txn["deliveries"][0]["answer"] == {"ResultCode": "0", "ResultDesc": "Accepted"}
    assert len(await system.payments()) == 1
    inbox = await system.store.collection(INBOX).find({}).to_list(None)
    assert sorted(entry["kind"] for entry in inbox) == ["confirmation", "validation"]


@pytest.mark.asyncio
async def test_rejected_validation_means_no_confirmation(system) -> None:
    await system.control("POST", "validation", {"enabled": True})
    txn = await system.pay("300000.00")  # above validation_max_amount
    assert txn["status"] == "rejected" and kinds(txn) == ["validation"]
    assert txn["deliveries"][0]["answer"]["ResultCode"] == "C2B00013"
    assert await system.payments() == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "response_type", "status", "stored"),
    [
        ("timeout", "Completed", "completed", 1),
        ("timeout", "Cancelled", "cancelled", 0),
        ("drop", "Completed", "completed", 1),
        ("drop", "Cancelled", "cancelled", 0),
    ],
)
async def test_unanswered_validation_follows_the_registered_response_type(
    system, fault, response_type, status, stored
) -> None:
    await system.register(response_type=response_type)
    await system.control("POST", "validation", {"enabled": True})
    await system.control("POST", "faults", {"target": "validation", "kind": fault})
    txn = await system.pay()
    assert txn["status"] == status
    assert len(await system.payments()) == stored


@pytest.mark.asyncio
async def test_validation_slower_than_daraja_waits_follows_the_response_type(system, store) -> None:
    """A real slow answer: the simulator waits 1 s, the gateway's validation takes longer."""
    await system.register(response_type="Cancelled")
    await system.control("POST", "validation", {"enabled": True})
    service = system.gateway.services.c2b
    service.validation_deadline = 3.0
    slow_inbox_add = service.inbox.add

    async def slow_add(*args, **kwargs):
        await asyncio.sleep(1.5)  # the slow store under test: a fixed delay is the point
        return await slow_inbox_add(*args, **kwargs)

    service.inbox.add = slow_add
    txn = await system.pay()
    assert txn["status"] == "cancelled"
    assert txn["deliveries"][0]["outcome"] == "timeout"
    assert await system.payments() == []


@pytest.mark.asyncio
async def test_duplicate_delivery_is_recorded_once(system) -> None:
    await system.control("POST", "faults", {"target": "confirmation", "kind": "duplicate"})
    txn = await system.pay()
    assert kinds(txn) == ["confirmation", "confirmation"]
    assert all(d["answer"]["ResultCode"] == 0 for d in txn["deliveries"])
    assert len(await system.payments()) == 1
    await system.gateway.services.sms.send_due()
    assert len(system.notifier.sent) == 1
    statuses = sorted(
        entry["status"] for entry in await system.store.collection(INBOX).find({}).to_list(None)
    )
    assert statuses == ["duplicate", "processed"]


@pytest.mark.asyncio
async def test_confirmation_that_failed_to_process_is_replayed_exactly_once(system) -> None:
    service = system.gateway.services.c2b
    healthy = service.payments
    service.payments = FailingPayments(system.store)
    txn = await system.pay()
    assert txn["deliveries"][0]["answer"]["ResultCode"] == 0  # the inbox has it: acknowledged
    assert await system.payments() == []
    service.payments = healthy
    results = await system.gateway.services.inbox.replay(grace=timedelta(0))
    assert [result.status for result in results] == ["processed"]
    [payment] = await system.payments()
    assert payment["trans_id"] == txn["trans_id"]
    assert await system.gateway.services.inbox.replay(grace=timedelta(0)) == []


@pytest.mark.asyncio
async def test_malformed_delivery_is_kept_in_the_inbox_and_replay_keeps_it(system) -> None:
    async with system.http.post(
        f"{system.gateway.url}/api/v1/c2b/confirmation/test-callback",
        data=json.dumps({"TransID": "BROKEN1", "TransAmount": "x"}),
    ) as answer:
        assert (await answer.json()) == {"ResultCode": 0, "ResultDesc": "Success"}
    [entry] = await system.store.collection(INBOX).find({}).to_list(None)
    assert entry["status"] == "needs_review"
    results = await system.gateway.services.inbox.replay(grace=timedelta(0), include_review=True)
    assert [result.status for result in results] == ["needs_review"]
    assert await system.payments() == []


@pytest.mark.asyncio
async def test_registration_is_recorded_by_the_simulator_with_the_secret_urls(system) -> None:
    state = await system.control("GET", "state")
    registration = state["registrations"]["600984"]
    assert registration["ValidationURL"].endswith("/api/v1/c2b/validation/test-callback")
    assert registration["ConfirmationURL"].endswith("/api/v1/c2b/confirmation/test-callback")
    assert registration["ResponseType"] == "Completed"


# --- payments that settle policies ------------------------------------------


async def kenyan_policy(system, chf_id: str = "070707070", amount: str = "1500.00") -> dict:
    return await idle_policy(
        system.gateway.services,
        chf_id,
        BASIC_KES,
        amount=amount,
        first_name="Wanjiru",
        last_name="Kamau",
    )


async def operator(system) -> dict[str, str]:
    return await headers_for_role(system.http, system.gateway, "olga", "operator")


async def allocate(system, headers, trans_id: str, policy_uuid: str) -> tuple[int, dict]:
    return await request_json(
        system.http,
        "POST",
        f"{system.gateway.url}/api/v1/c2b/payments/{trans_id}/allocate",
        {"policy_uuid": policy_uuid, "note": "account typed wrongly"},
        headers=headers,
    )


@pytest.mark.asyncio
async def test_paybill_payment_to_an_insuree_number_settles_the_policy(system) -> None:
    policy = await kenyan_policy(system)
    txn = await system.pay("1500.00", account="070707070")
    [payment] = await system.payments()
    assert payment["status"] == "settled" and payment["policy_uuid"] == policy["_id"]
    assert payment["receipt"]
    stored = await system.gateway.services.policies.get(policy["_id"])
    assert stored["status"] == 2
    transaction = await system.gateway.services.ledger.get(payment["transaction_uuid"])
    assert transaction["channel"] == "mpesa_c2b"
    assert transaction["provider_reference"] == txn["trans_id"]
    assert await system.store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("account", "amount", "reason"),
    [
        ("070707070", "1000.00", "amount_mismatch"),
        ("999999999", "1500.00", "unknown_account"),
    ],
)
async def test_payment_that_matches_no_policy_is_kept_unmatched(
    system, account, amount, reason
) -> None:
    policy = await kenyan_policy(system)
    await system.pay(amount, account=account)
    [payment] = await system.payments()
    assert (payment["status"], payment["unmatched_reason"]) == ("unmatched", reason)
    assert (await system.gateway.services.policies.get(policy["_id"]))["status"] == 1


@pytest.mark.asyncio
async def test_insuree_without_an_idle_policy_is_unmatched_with_that_reason(system) -> None:
    policy = await kenyan_policy(system)
    await system.gateway.services.policies.update(policy["_id"], {"status": 2})
    await system.pay("1500.00", account="070707070")
    [payment] = await system.payments()
    assert (payment["status"], payment["unmatched_reason"]) == ("unmatched", "no_idle_policy")


@pytest.mark.asyncio
async def test_policy_of_the_same_amount_in_another_currency_is_no_match(system) -> None:
    services = system.gateway.services
    gambian = await idle_policy(services, "070707070", Product("BASIC-GMD", "1500.00", "GMD"))
    await system.pay("1500.00", account="070707070")  # KES
    [payment] = await system.payments()
    assert (payment["status"], payment["unmatched_reason"]) == ("unmatched", "amount_mismatch")
    assert (await services.policies.get(gambian["_id"]))["status"] == 1


@pytest.mark.asyncio
async def test_several_candidate_policies_are_left_to_an_operator(system) -> None:
    await kenyan_policy(system)
    await kenyan_policy(system)
    await system.pay("1500.00", account="070707070")
    [payment] = await system.payments()
    assert payment["unmatched_reason"] == "several_candidates"


@pytest.mark.asyncio
async def test_operator_allocates_an_unmatched_payment(system) -> None:
    policy = await kenyan_policy(system)
    txn = await system.pay("1500.00", account="07070707")  # a digit missing
    headers = await operator(system)
    status, body = await allocate(system, headers, txn["trans_id"], policy["_id"])
    assert status == 200 and body["status"] == "settled"
    assert body["policy_uuid"] == policy["_id"] and body["receipt"]
    history = body["allocation_history"]
    assert [item["status"] for item in history] == ["unmatched", "allocating", "settled"]
    assert history[1]["by"] == "olga" and history[1]["reason"] == "account typed wrongly"
    assert (await system.gateway.services.policies.get(policy["_id"]))["status"] == 2
    status, again = await allocate(system, headers, txn["trans_id"], policy["_id"])
    assert status == 409 and again["error"]["details"]["status"] == "settled"


@pytest.mark.asyncio
async def test_wrong_amount_lands_unmatched_and_an_operator_allocates_it(system) -> None:
    meant = await kenyan_policy(system, amount="1500.00")
    txn = await system.pay("1000.00", account="070707070")  # not the policy's value
    [payment] = await system.payments()
    assert (payment["status"], payment["unmatched_reason"]) == ("unmatched", "amount_mismatch")
    # The payer's own account number was wrong: the operator finds the policy of 1000.00.
    right = await kenyan_policy(system, chf_id="080808080", amount="1000.00")
    status, body = await allocate(system, await operator(system), txn["trans_id"], right["_id"])
    assert status == 200 and body["status"] == "settled" and body["policy_uuid"] == right["_id"]
    policies = system.gateway.services.policies
    assert (await policies.get(right["_id"]))["status"] == 2
    assert (await policies.get(meant["_id"]))["status"] == 1
    premiums = await system.store.collection(PREMIUMS).find({}).to_list(None)
    assert [(premium["policy_uuid"], premium["amount"]) for premium in premiums] == [
        (right["_id"], 100000)
    ]


@pytest.mark.asyncio
async def test_allocation_without_a_reason_is_refused(system) -> None:
    policy = await kenyan_policy(system)
    txn = await system.pay("1500.00", account="07070707")
    async with system.http.post(
        f"{system.gateway.url}/api/v1/c2b/payments/{txn['trans_id']}/allocate",
        headers=await operator(system),
        json={"policy_uuid": policy["_id"]},
    ) as answer:
        assert answer.status == 400
        assert "note" in (await answer.json())["error"]["details"]["fields"]
    [payment] = await system.payments()
    assert payment["status"] == "unmatched"


@pytest.mark.asyncio
async def test_allocation_needs_the_exact_amount_and_an_idle_policy(system) -> None:
    policy = await kenyan_policy(system)
    txn = await system.pay("1000.00", account="070707070")
    headers = await operator(system)
    status, body = await allocate(system, headers, txn["trans_id"], policy["_id"])
    assert status == 400 and body["error"]["code"] == "amount_mismatch"
    assert body["error"]["details"]["expected"] == "1500.00"
    right = await kenyan_policy(system, chf_id="080808080", amount="1000.00")
    await system.gateway.services.policies.update(right["_id"], {"status": 4})
    status, body = await allocate(system, headers, txn["trans_id"], right["_id"])
    assert status == 409 and body["error"]["code"] == "policy_not_idle"
    status, body = await allocate(system, headers, "NOSUCHTX", right["_id"])
    assert status == 404
    [payment] = await system.payments()
    assert payment["status"] == "unmatched"


@pytest.mark.asyncio
async def test_concurrent_allocations_apply_a_payment_once(system) -> None:
    first = await kenyan_policy(system, chf_id="1")
    second = await kenyan_policy(system, chf_id="2")
    txn = await system.pay("1500.00", account="3")
    headers = await operator(system)
    results = await asyncio.gather(
        allocate(system, headers, txn["trans_id"], first["_id"]),
        allocate(system, headers, txn["trans_id"], second["_id"]),
    )
    assert sorted(status for status, _ in results) == [200, 409]
    assert await system.store.collection(PREMIUMS).count_documents({}) == 1
    statuses = {
        (await system.gateway.services.policies.get(p["_id"]))["status"] for p in (first, second)
    }
    assert statuses == {1, 2}


@pytest.mark.asyncio
async def test_validation_can_refuse_what_cannot_settle_a_policy(
    http, start_gateway_with, daraja_sim, store, notifier
) -> None:
    settings = make_settings(
        daraja={"base_url": daraja_sim.base_url}, c2b={"validation_match_policy": True}
    )
    gateway = await start_gateway_with(settings)
    settings = replace(settings, server=replace(settings.server, public_url=gateway.url))
    system = System(http, gateway, daraja_sim, settings, store, notifier)
    await system.register()
    await system.control("POST", "validation", {"enabled": True})
    await kenyan_policy(system)
    unknown = await system.pay("1500.00", account="999999999")
    wrong = await system.pay("1000.00", account="070707070")
    right = await system.pay("1500.00", account="070707070")
    assert [txn["deliveries"][0]["answer"]["ResultCode"] for txn in (unknown, wrong, right)] == [
        "C2B00012",
        "C2B00013",
        "0",
    ]
    [payment] = await system.payments()
    assert payment["status"] == "settled"
