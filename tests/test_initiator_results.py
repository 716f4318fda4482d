"""Transaction Status and Account Balance results applied to their requests: one that
overtakes its request's write is processed again, and M-Pesa's word on a receipt is
compared with the payment stored under it."""

import json
from datetime import timedelta

import pytest

from server.integrations.notifications import RecordingNotifier
from server.mpesa import initiator
from server.startup.services import build_services

from support import BASIC_KES, INBOX, PAYMENTS, callback_body, idle_policy, make_settings
from systems import ManualClock

RECEIPT = "RKL51ZDR4F"


def result(status: str = "Completed", amount: object = 1500) -> bytes:
    parameters = [
        {"Key": "ReceiptNo", "Value": RECEIPT},
        {"Key": "TransactionStatus", "Value": status},
        {"Key": "Amount", "Value": amount},
    ]
    body = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": "10571-7910404-1",
            "ConversationID": "AG_20261201_0001",
            "TransactionID": "RL10000000",
            "ResultParameters": {"ResultParameter": parameters},
        }
    }
    return json.dumps(body).encode()


async def requested(gateway, clock) -> None:
    await gateway.initiator.requests.insert(
        {
            "_id": "request-1",
            "kind": initiator.TRANSACTION_STATUS,
            "trans_id": RECEIPT,
            "originator_conversation_id": "10571-7910404-1",
            "conversation_id": "AG_20261201_0001",
            "requested_by": "olga",
            "requested_at": clock.now(),
            "status": initiator.REQUESTED,
            "result": None,
        }
    )


def gateway_on(store, clock):
    settings = make_settings(c2b={"currency": "KES"})
    return build_services(settings, store, None, RecordingNotifier(), clock)


@pytest.mark.asyncio
async def test_a_result_that_overtakes_its_request_is_applied_by_replay(store) -> None:
    clock = ManualClock()
    gateway = gateway_on(store, clock)
    await gateway.initiator.callback(initiator.RESULT, result(), "127.0.0.1", {})
    entry = await store.collection(INBOX).find_one({"source": "daraja_result"})
    assert entry["status"] == "failed"  # not for review: replay tries it again
    await requested(gateway, clock)
    clock.offset += timedelta(minutes=2)
    [replayed] = await gateway.inbox.replay()
    assert replayed.status == "processed"
    [check] = await gateway.initiator.checks_of(RECEIPT)
    assert (check["status"], check["finding"]) == ("answered", "not_recorded_here")


@pytest.mark.asyncio
async def test_a_result_answering_no_request_for_long_is_kept_for_review(store) -> None:
    clock = ManualClock()
    gateway = gateway_on(store, clock)
    await gateway.initiator.callback(initiator.RESULT, result(), "127.0.0.1", {})
    clock.offset += initiator.UNMATCHED_RESULT_WAIT + timedelta(seconds=1)
    [replayed] = await gateway.inbox.replay()
    assert replayed.status == "needs_review"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "amount", "finding"),
    [
        ("Completed", 1500, "agrees"),
        ("Completed", "1400.00", "amount_differs"),
        ("Reversed", 1500, "not_completed"),
        ("Completed", "lots", "amount_unreadable"),
    ],
)
async def test_m_pesas_word_on_a_stored_receipt_flags_what_does_not_agree(
    store, status: str, amount: object, finding: str
) -> None:
    clock = ManualClock()
    gateway = gateway_on(store, clock)
    await idle_policy(gateway, "080808080", BASIC_KES)
    body = callback_body(TransAmount="1500.00", BillRefNumber="080808080")
    await gateway.c2b.confirm(json.dumps(body).encode(), "127.0.0.1", {})
    await requested(gateway, clock)
    await gateway.initiator.callback(initiator.RESULT, result(status, amount), "127.0.0.1", {})
    [check] = await gateway.initiator.checks_of(RECEIPT)
    assert check["finding"] == finding
    payment = await store.collection(PAYMENTS).find_one({"trans_id": RECEIPT})
    flags = [flag["reason"] for flag in payment["review"]]
    assert flags == ([] if finding == "agrees" else [f"transaction_status_{finding}"])
