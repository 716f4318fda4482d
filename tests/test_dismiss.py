"""Dismissing what needs no more attention, with the reason: an inbox entry that failed,
needs review or conflicts (POST /api/v1/c2b/inbox/<id>/dismiss), and a payment's review
flags (POST /api/v1/c2b/payments/<trans_id>/review/dismiss). Kept with who, when and
why; repeated, answered the same; never a move of money."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from server.mpesa.schemas import C2BPaymentSchema, InboxEntrySchema

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    callback_body,
    deliver_callback,
    idle_policy,
    request_json,
)

ACCOUNT = "999000111"  # names no insuree: its payments stay unmatched


async def post(http, gateway, headers, path: str, body) -> tuple[int, dict]:
    return await request_json(http, "POST", f"{gateway.url}/api/v1{path}", body, headers=headers)


async def get(http, gateway, headers, path: str, **params) -> dict:
    status, body = await request_json(
        http, "GET", f"{gateway.url}/api/v1{path}", headers=headers, params=params
    )
    assert status == 200, body
    return body


async def entry_ids(http, gateway, headers, status: str) -> list[str]:
    page = await get(http, gateway, headers, "/c2b/inbox", status=status)
    return [item["id"] for item in page["items"]]


async def attention(http, gateway, headers) -> dict:
    return (await get(http, gateway, headers, "/dashboard"))["attention"]


async def confirm(http, gateway, **fields) -> None:
    body = callback_body(**{"BillRefNumber": ACCOUNT, "TransAmount": "1500.00", **fields})
    status, _ = await deliver_callback(http, gateway, "confirmation", body)
    assert status == 200


@pytest.mark.asyncio
async def test_an_unreadable_callback_is_dismissed_once_with_who_when_and_why(
    http, gateway, operator_headers, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.inbox")
    await deliver_callback(http, gateway, "confirmation", b"{oops")
    [entry_id] = await entry_ids(http, gateway, operator_headers, "needs_review")
    assert (await attention(http, gateway, operator_headers))["failed_inbox"]["count"] == 1

    reason = "a test delivery from the Daraja portal"
    status, entry = await post(
        http, gateway, operator_headers, f"/c2b/inbox/{entry_id}/dismiss", {"reason": reason}
    )
    assert status == 200, entry
    assert InboxEntrySchema().validate(entry) == {}
    assert entry["status"] == "dismissed"
    dismissal = entry["dismissal"]
    assert (dismissal["by"], dismissal["reason"], dismissal["from_status"]) == (
        "operator",
        reason,
        "needs_review",
    )
    assert datetime.now(UTC) - datetime.fromisoformat(dismissal["at"]) < timedelta(minutes=1)
    assert entry["replays"] == [] and entry["body"] == "{oops"  # nothing else changed
    assert [record.getMessage() for record in caplog.records if "dismissed" in record.msg] == [
        f"inbox_entry_dismissed inbox_id={entry_id} from=needs_review by=operator"
    ]

    assert await entry_ids(http, gateway, operator_headers, "dismissed") == [entry_id]
    board = await attention(http, gateway, operator_headers)
    assert (board["failed_inbox"]["count"], board["failed_inbox"]["oldest"]) == (0, [])

    again = await post(
        http, gateway, operator_headers, f"/c2b/inbox/{entry_id}/dismiss", {"reason": "again!"}
    )
    assert again == (200, entry)  # the first dismissal stands
    status, body = await post(
        http, gateway, operator_headers, f"/c2b/inbox/{entry_id}/replay", {"reason": "retry"}
    )
    assert (status, body["error"]["code"]) == (409, "invalid_state")


@pytest.mark.asyncio
async def test_only_an_entry_for_review_a_conflict_or_a_failed_validation_is_dismissed(
    http, gateway, store, operator_headers
) -> None:
    await confirm(http, gateway)
    await confirm(http, gateway, TransAmount="1400.00")  # the same TransID, differing
    [processed] = await entry_ids(http, gateway, operator_headers, "processed")
    [conflict] = await entry_ids(http, gateway, operator_headers, "conflict")
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    for entry_id, status, kind in (
        ("failed-1", "failed", "confirmation"),  # may be money: replayed, not dismissed
        ("failed-validation", "failed", "validation"),
        ("received-1", "received", "confirmation"),
    ):
        await store.collection(INBOX).insert_one(
            {
                "_id": entry_id,
                "source": "daraja_c2b",
                "kind": kind,
                "status": status,
                "body": "{}",
                "body_encoding": "utf-8",
                "source_ip": "196.201.214.200",
                "headers": {},
                "received_at": long_ago,
                "attempts": 1,
            }
        )
    why = {"reason": "looked at it"}
    for entry_id in (processed, "received-1", "failed-1"):
        status, body = await post(
            http, gateway, operator_headers, f"/c2b/inbox/{entry_id}/dismiss", why
        )
        assert (status, body["error"]["code"]) == (409, "invalid_state"), entry_id
    for entry_id, was in ((conflict, "conflict"), ("failed-validation", "failed")):
        status, body = await post(
            http, gateway, operator_headers, f"/c2b/inbox/{entry_id}/dismiss", why
        )
        assert (status, body["status"], body["dismissal"]["from_status"]) == (
            200,
            "dismissed",
            was,
        )
    # The replay job leaves a dismissed entry alone; the failed confirmation and the one
    # still received are its work.
    replayed = await gateway.services.inbox.replay(grace=timedelta(0))
    assert sorted(result.entry_id for result in replayed) == ["failed-1", "received-1"]

    status, body = await post(http, gateway, operator_headers, "/c2b/inbox/nope/dismiss", why)
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.asyncio
async def test_a_dismissal_needs_an_operator_and_a_reason(
    http, gateway, operator_headers, headers_for
) -> None:
    await deliver_callback(http, gateway, "confirmation", b"{oops")
    [entry_id] = await entry_ids(http, gateway, operator_headers, "needs_review")
    await confirm(http, gateway)
    await confirm(http, gateway, TransAmount="1400.00")
    paths = (f"/c2b/inbox/{entry_id}/dismiss", "/c2b/payments/RKL51ZDR4F/review/dismiss")
    psp = await headers_for("afrimoney", "psp")
    for path in paths:
        for body in ({}, {"reason": "ok"}, {"reason": "x" * 501}, {"reason": "fine", "by": "me"}):
            status, answer = await post(http, gateway, operator_headers, path, body)
            assert (status, answer["error"]["code"]) == (400, "validation_error"), (path, body)
        assert (await post(http, gateway, {}, path, {"reason": "looked"}))[0] == 401
        assert (await post(http, gateway, psp, path, {"reason": "looked"}))[0] == 403
    assert await entry_ids(http, gateway, operator_headers, "needs_review") == [entry_id]


@pytest.mark.asyncio
async def test_dismissed_review_flags_are_kept_and_the_payment_can_still_be_allocated(
    http, gateway, operator_headers, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.c2b")
    await confirm(http, gateway)
    await confirm(http, gateway, TransAmount="1400.00")  # flags RKL51ZDR4F for review
    board = await attention(http, gateway, operator_headers)
    assert board["c2b_needs_review"]["count"] == 1
    assert board["c2b_needs_review"]["oldest"][0]["reason_text"] == (
        "a redelivery of this TransID differs from the stored payment"
    )
    page = await get(http, gateway, operator_headers, "/c2b/payments", needs_review="true")
    assert [item["needs_review"] for item in page["items"]] == [True]

    path = "/c2b/payments/rkl51zdr4f/review/dismiss"
    reason = "the payer's bank resent it with a typo"
    status, payment = await post(http, gateway, operator_headers, path, {"reason": reason})
    assert status == 200, payment
    assert C2BPaymentSchema().validate(payment) == {}
    assert (payment["status"], payment["needs_review"]) == ("unmatched", False)
    [flag] = payment["review"]
    assert (flag["reason"], flag["dismissed_by"], flag["dismissed_reason"]) == (
        "conflicting_duplicate",
        "operator",
        reason,
    )
    assert flag["dismissed_at"] is not None
    assert "c2b_review_dismissed trans_id=RKL51ZDR4F flags=1 by=operator" in caplog.messages

    board = await attention(http, gateway, operator_headers)
    assert (board["c2b_needs_review"]["count"], board["c2b_unmatched"]["count"]) == (0, 1)
    page = await get(http, gateway, operator_headers, "/c2b/payments", needs_review="true")
    assert page["items"] == []
    page = await get(http, gateway, operator_headers, "/c2b/payments", needs_review="false")
    assert [item["trans_id"] for item in page["items"]] == ["RKL51ZDR4F"]

    assert await post(http, gateway, operator_headers, path, {"reason": "twice"}) == (
        200,
        payment,
    )

    policy = await idle_policy(gateway.services, "070707070", BASIC_KES)
    status, settled = await post(
        http,
        gateway,
        operator_headers,
        "/c2b/payments/RKL51ZDR4F/allocate",
        {"policy_uuid": policy["_id"], "note": "the payer gave the right number by phone"},
    )
    assert (status, settled["status"], settled["review"][0]["dismissed_by"]) == (
        200,
        "settled",
        "operator",
    )


@pytest.mark.asyncio
async def test_a_new_flag_after_a_dismissal_needs_review_again(
    http, gateway, operator_headers
) -> None:
    await confirm(http, gateway)
    await confirm(http, gateway, TransAmount="1400.00")
    path = "/c2b/payments/RKL51ZDR4F/review/dismiss"
    assert (await post(http, gateway, operator_headers, path, {"reason": "looked"}))[0] == 200
    await confirm(http, gateway, TransAmount="1300.00")  # another differing delivery

    board = await attention(http, gateway, operator_headers)
    assert board["c2b_needs_review"]["count"] == 1
    payment = await get(http, gateway, operator_headers, "/c2b/payments/RKL51ZDR4F")
    assert payment["needs_review"] is True
    assert [flag["dismissed_by"] for flag in payment["review"]] == ["operator", None]
    status, payment = await post(http, gateway, operator_headers, path, {"reason": "also"})
    assert [flag["dismissed_reason"] for flag in payment["review"]] == ["looked", "also"]


@pytest.mark.asyncio
async def test_a_held_payment_stays_held_when_its_flag_is_dismissed(
    http, gateway, operator_headers
) -> None:
    await confirm(http, gateway, BusinessShortCode="999999")
    status, payment = await post(
        http,
        gateway,
        operator_headers,
        "/c2b/payments/RKL51ZDR4F/review/dismiss",
        {"reason": "our other paybill: refunded by hand"},
    )
    assert (status, payment["status"], payment["needs_review"]) == (200, "held", False)
    assert (await attention(http, gateway, operator_headers))["c2b_needs_review"]["count"] == 0
    policy = await idle_policy(gateway.services, "070707070", BASIC_KES)
    status, body = await post(
        http,
        gateway,
        operator_headers,
        "/c2b/payments/RKL51ZDR4F/allocate",
        {"policy_uuid": policy["_id"], "note": "trying anyway"},
    )
    assert (status, body["error"]["code"]) == (409, "shortcode_not_served")


@pytest.mark.asyncio
async def test_a_payment_never_flagged_has_nothing_to_dismiss(
    http, gateway, operator_headers
) -> None:
    await confirm(http, gateway)
    why = {"reason": "looked"}
    status, body = await post(
        http, gateway, operator_headers, "/c2b/payments/RKL51ZDR4F/review/dismiss", why
    )
    assert (status, body["error"]["code"]) == (409, "nothing_to_dismiss")
    status, body = await post(
        http, gateway, operator_headers, "/c2b/payments/NOSUCHTX/review/dismiss", why
    )
    assert (status, body["error"]["code"]) == (404, "not_found")


def stored_payment(trans_id: str, review: list[dict]) -> dict:
    """A payment as a gateway stored it before review flags could be dismissed."""
    at = datetime.now(UTC) - timedelta(days=3)
    return {
        "trans_id": trans_id,
        "transaction_type": "Pay Bill",
        "trans_time": at,
        "amount": 150000,
        "currency": "KES",
        "shortcode": "600984",
        "bill_ref": ACCOUNT,
        "invoice_number": "",
        "org_balance": None,
        "third_party_trans_id": "",
        "msisdn": "2547 ***** 126",
        "msisdn_form": "masked",
        "payer_name": "JOHN DOE",
        "fingerprint": trans_id,
        "inbox_id": f"inbox-{trans_id}",
        "received_at": at,
        "review": review,
        "status": "unmatched",
        "updated_at": at,
        "unmatched_reason": "unknown_account",
        "allocation_history": [],
    }


@pytest.mark.asyncio
async def test_payments_flagged_before_flags_could_be_dismissed_still_need_review(
    http, store, start_gateway_with, headers_for
) -> None:
    flag = {"inbox_id": "inbox-x", "reason": "conflicting_duplicate", "at": datetime.now(UTC)}
    await store.collection(PAYMENTS).insert_many(
        [stored_payment("OLDFLAGGED", [flag]), stored_payment("OLDPLAIN", [])]
    )
    gateway = await start_gateway_with()  # start-up marks the stored payments once
    stored = await store.collection(PAYMENTS).find({}).to_list(None)
    assert {payment["trans_id"]: payment["review_open"] for payment in stored} == {
        "OLDFLAGGED": True,
        "OLDPLAIN": False,
    }

    headers = await headers_for("operator", "operator")
    board = await attention(http, gateway, headers)
    assert [item["trans_id"] for item in board["c2b_needs_review"]["oldest"]] == ["OLDFLAGGED"]
    page = await get(http, gateway, headers, "/c2b/payments", needs_review="true")
    assert [item["trans_id"] for item in page["items"]] == ["OLDFLAGGED"]

    status, _ = await post(
        http, gateway, headers, "/c2b/payments/OLDFLAGGED/review/dismiss", {"reason": "seen"}
    )
    assert status == 200
    await start_gateway_with()  # a later start leaves a dismissed flag dismissed
    assert (await attention(http, gateway, headers))["c2b_needs_review"]["count"] == 0
