"""POST /api/v1/c2b/inbox/<id>/replay says what the replay changed, or that it changed
nothing: never a success that looks like it did something."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.mpesa.action_schemas import ReplayAnswerSchema

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    callback_body,
    deliver_callback,
    idle_policy,
    request_json,
)


async def replay(http, gateway, headers, entry_id: str) -> dict:
    status, answer = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/c2b/inbox/{entry_id}/replay",
        {"reason": "checking after the outage"},
        headers=headers,
    )
    assert status == 200, answer
    assert ReplayAnswerSchema().validate(answer) == {}
    return answer


async def failed_entry(store, body: dict, entry_id: str = "entry-1") -> str:
    """A confirmation whose processing failed, as the store keeps it (a legacy entry: no
    source)."""
    await store.collection(INBOX).insert_one(
        {
            "_id": entry_id,
            "kind": "confirmation",
            "status": "failed",
            "failure": {"type": "ServerSelectionTimeoutError", "message": "store unreachable"},
            "body": json.dumps(body),
            "body_encoding": "utf-8",
            "source_ip": "196.201.214.200",
            "headers": {},
            "received_at": datetime.now(UTC) - timedelta(minutes=5),
            "attempts": 1,
        }
    )
    return entry_id


@pytest.mark.asyncio
async def test_a_replay_that_records_the_payment_says_what_it_changed(
    http, gateway, store, operator_headers
) -> None:
    await idle_policy(gateway.services, "070707070", BASIC_KES)
    entry_id = await failed_entry(
        store, callback_body(BillRefNumber="070707070", TransAmount="1500.00")
    )
    answer = await replay(http, gateway, operator_headers, entry_id)
    assert (answer["changed"], answer["status"], answer["replays"][0]["by"]) == (
        True,
        "processed",
        "operator",
    )
    payment = await store.collection(PAYMENTS).find_one({"trans_id": "RKL51ZDR4F"})
    assert [(c["subject"], c["trans_id"], c["before"], c["after"]) for c in answer["changes"]] == [
        ("inbox_entry", "RKL51ZDR4F", "failed", "processed"),
        ("payment", "RKL51ZDR4F", None, "settled"),
    ]
    assert answer["message"] == (
        "the entry is now processed (was failed); "
        f"payment RKL51ZDR4F recorded: settled to policy {payment['policy_uuid']}"
    )


@pytest.mark.asyncio
async def test_a_replay_of_an_unreadable_callback_says_nothing_changed(
    http, gateway, operator_headers
) -> None:
    await deliver_callback(http, gateway, "confirmation", b"{oops")
    status, page = await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/c2b/inbox",
        headers=operator_headers,
        params={"status": "needs_review"},
    )
    [entry] = page["items"]
    answer = await replay(http, gateway, operator_headers, entry["id"])
    assert (answer["changed"], answer["changes"], answer["status"]) == (False, [], "needs_review")
    assert answer["message"] == "nothing changed: the entry is still needs_review"
    assert len(answer["replays"]) == 1  # the replay itself is still recorded


@pytest.mark.asyncio
async def test_a_replay_of_a_payment_already_recorded_says_the_payment_is_unchanged(
    http, gateway, store, operator_headers
) -> None:
    """The payment was stored, then marking its entry failed: the replay clears the
    entry, and says the payment did not change."""
    await deliver_callback(http, gateway, "confirmation", callback_body(BillRefNumber="1"))
    entry = await store.collection(INBOX).find_one({"kind": "confirmation"})
    await store.collection(INBOX).update_one({"_id": entry["_id"]}, {"$set": {"status": "failed"}})
    payment_before = await store.collection(PAYMENTS).find_one({"trans_id": "RKL51ZDR4F"})

    answer = await replay(http, gateway, operator_headers, entry["_id"])
    assert answer["changed"] is True
    assert [(c["subject"], c["before"], c["after"]) for c in answer["changes"]] == [
        ("inbox_entry", "failed", "processed")
    ]
    assert answer["message"] == (
        "the entry is now processed (was failed); "
        "payment RKL51ZDR4F was already recorded (unmatched) and is unchanged"
    )
    payment = await store.collection(PAYMENTS).find_one({"trans_id": "RKL51ZDR4F"})
    assert payment["allocation_history"] == payment_before["allocation_history"]


@pytest.mark.asyncio
async def test_a_replay_that_fails_again_says_nothing_changed_and_why(
    http, gateway, store, operator_headers, monkeypatch
) -> None:
    async def unreachable(*_args, **_kwargs):
        raise ServerSelectionTimeoutError("store still unreachable")

    monkeypatch.setattr(gateway.services.c2b.payments, "insert_once", unreachable)
    entry_id = await failed_entry(store, callback_body())
    answer = await replay(http, gateway, operator_headers, entry_id)
    assert (answer["changed"], answer["status"]) == (False, "failed")
    assert answer["message"] == (
        "nothing changed: the entry is still failed: "
        "ServerSelectionTimeoutError: store still unreachable"
    )
    assert await store.collection(PAYMENTS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_a_replay_of_an_allocation_cut_off_by_a_crash_says_it_settled(
    http, gateway, store, operator_headers
) -> None:
    """A payment stored `allocating` when the process stopped: replaying its entry
    completes it, and the answer says the payment moved."""
    policy = await idle_policy(gateway.services, "070707070", BASIC_KES)
    await deliver_callback(
        http, gateway, "confirmation", callback_body(BillRefNumber="1", TransAmount="1500.00")
    )
    entry = await store.collection(INBOX).find_one({"kind": "confirmation"})
    await store.collection(INBOX).update_one({"_id": entry["_id"]}, {"$set": {"status": "failed"}})
    await store.collection(PAYMENTS).update_one(
        {"trans_id": "RKL51ZDR4F"},
        {
            "$set": {
                "status": "allocating",
                "allocation": {"policy_uuid": policy["_id"], "by": "operator"},
            }
        },
    )
    answer = await replay(http, gateway, operator_headers, entry["_id"])
    assert [(c["subject"], c["before"], c["after"]) for c in answer["changes"]] == [
        ("inbox_entry", "failed", "processed"),
        ("payment", "allocating", "settled"),
    ]
    assert answer["changes"][1]["text"] == (
        f"payment RKL51ZDR4F is now settled to policy {policy['_id']} (was allocating)"
    )
