"""Daraja callbacks the parser cannot read (nested past its depth, numbers past Python's
integer digit limit) are kept raw in the inbox and answered in Daraja's format; when
the inbox cannot take them they are answered so that nothing is accepted unseen."""

import json

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from server.inbox.repository import InboxRepository
from server.integrations.notifications import RecordingNotifier
from server.kernel.clock import Clock
from server.startup.services import build_services

from support import INBOX, PAYMENTS, callback_body, deliver_callback, make_settings

DEPTH = 2000
NESTED = ('{"TransID": ' + "[" * DEPTH + "]" * DEPTH + "}").encode()
NESTED_BARE = ("[" * DEPTH + "]" * DEPTH).encode()
HUGE = "9" * 5000  # past Python's 4,300-digit limit for int()
HUGE_AMOUNT = json.dumps(callback_body()).replace('"5.00"', HUGE).encode()
UNREADABLE = {"nested object": NESTED, "nested array": NESTED_BARE, "huge amount": HUGE_AMOUNT}
REJECTED = {"ResultCode": "C2B00016", "ResultDesc": "Rejected"}


class FailingInbox(InboxRepository):
    async def add(self, *args, **kwargs):
        raise ServerSelectionTimeoutError("store unreachable")


@pytest.mark.asyncio
@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_unreadable_validation_is_rejected_and_kept_for_review(
    http, gateway, store, body
) -> None:
    assert await deliver_callback(http, gateway, "validation", body) == (200, REJECTED)
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert (entry["kind"], entry["status"]) == ("validation", "needs_review")
    assert entry["body"].encode() == body and entry["errors"]


@pytest.mark.asyncio
@pytest.mark.parametrize("body", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_unreadable_confirmation_is_acknowledged_and_kept_for_review(
    http, gateway, store, body
) -> None:
    assert await deliver_callback(http, gateway, "confirmation", body) == (
        200,
        {"ResultCode": 0, "ResultDesc": "Success"},
    )
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert (entry["kind"], entry["status"]) == ("confirmation", "needs_review")
    assert entry["body"].encode() == body
    assert await store.collection(PAYMENTS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_huge_number_in_an_unknown_field_is_read_as_its_text(http, gateway, store) -> None:
    body = json.dumps(callback_body()).replace(
        '"InvoiceNumber": ""', f'"Extra": {HUGE}, "InvoiceNumber": ""'
    )
    assert await deliver_callback(http, gateway, "confirmation", body.encode()) == (
        200,
        {"ResultCode": 0, "ResultDesc": "Success"},
    )
    assert await store.collection(PAYMENTS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_unreadable_validation_the_inbox_cannot_take_is_rejected_not_accepted(store) -> None:
    settings = make_settings(c2b={"validation_fallback": "accept"})
    c2b = build_services(settings, store, None, RecordingNotifier(), Clock()).c2b
    c2b.inbox = FailingInbox(store)
    assert await c2b.validate(NESTED, "127.0.0.1", {}) == REJECTED


@pytest.mark.asyncio
async def test_unreadable_confirmation_the_inbox_cannot_take_is_answered_for_a_retry(
    http, gateway
) -> None:
    gateway.services.c2b.inbox = FailingInbox(gateway.services.store)
    status, answer = await deliver_callback(http, gateway, "confirmation", NESTED)
    assert status == 503 and set(answer) == {"ResultCode", "ResultDesc"}
    assert answer["ResultCode"] != 0
