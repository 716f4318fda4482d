"""A confirmation for a shortcode the gateway does not serve is kept exactly once (the
money moved somewhere) but never settles a policy: it is held for review."""

import pytest
import pytest_asyncio

from server.notifications.documents import NOTICE_STATE

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    PREMIUMS,
    TRANSACTIONS,
    callback_body,
    deliver_callback,
    idle_policy,
)

FOREIGN = callback_body(
    TransID="RP5878D37Z",
    BusinessShortCode="999999",
    BillRefNumber="070707070",
    TransAmount="1500.00",
)


@pytest_asyncio.fixture
async def policy(gateway) -> dict:
    """An idle policy the foreign payment's account number and amount point to."""
    return await idle_policy(
        gateway.services, "070707070", BASIC_KES, first_name="Wanjiru", last_name="Kamau"
    )


@pytest.mark.asyncio
async def test_confirmation_for_a_shortcode_not_served_is_held_and_settles_nothing(
    http, gateway, store, notifier, policy
) -> None:
    for _ in range(2):
        assert await deliver_callback(http, gateway, "confirmation", FOREIGN) == (
            200,
            {"ResultCode": 0, "ResultDesc": "Success"},
        )
    [payment] = await store.collection(PAYMENTS).find({}).to_list(None)
    assert (payment["status"], payment["unmatched_reason"]) == ("held", "shortcode_not_served")
    assert [item["reason"] for item in payment["review"]] == ["shortcode_not_served"]
    assert (await gateway.services.policies.get(policy["_id"]))["status"] == 1
    assert await store.collection(TRANSACTIONS).count_documents({}) == 0
    assert await store.collection(PREMIUMS).count_documents({}) == 0
    statuses = {entry["status"] for entry in await store.collection(INBOX).find({}).to_list(None)}
    assert statuses == {"processed", "duplicate"}
    assert NOTICE_STATE not in payment  # a held payment carries no notice for the payer
    assert (await gateway.services.sms.send_due())["recorded"] == 0
    assert notifier.sent == []


@pytest.mark.asyncio
async def test_validation_still_refuses_a_shortcode_not_served(http, gateway) -> None:
    assert await deliver_callback(http, gateway, "validation", FOREIGN) == (
        200,
        {"ResultCode": "C2B00015", "ResultDesc": "Rejected"},
    )


@pytest.mark.asyncio
async def test_held_payment_is_shown_for_review_in_the_list_detail_and_dashboard(
    http, gateway, operator_headers, policy
) -> None:
    await deliver_callback(http, gateway, "confirmation", FOREIGN)
    base = f"{gateway.url}/api/v1"
    async with http.get(
        f"{base}/c2b/payments", params={"needs_review": "true"}, headers=operator_headers
    ) as answer:
        [item] = (await answer.json())["items"]
    assert (item["status"], item["unmatched_reason"]) == ("held", "shortcode_not_served")
    assert [entry["reason"] for entry in item["review"]] == ["shortcode_not_served"]
    async with http.get(f"{base}/c2b/payments/RP5878D37Z", headers=operator_headers) as answer:
        assert (await answer.json())["status"] == "held"
    async with http.get(f"{base}/dashboard", headers=operator_headers) as answer:
        attention = (await answer.json())["attention"]
    assert attention["c2b_unmatched"]["count"] == 0
    [listed] = attention["c2b_needs_review"]["oldest"]
    assert (listed["trans_id"], listed["reason"]) == ("RP5878D37Z", "shortcode_not_served")


@pytest.mark.asyncio
async def test_allocating_a_held_payment_is_refused_with_a_409(
    http, gateway, store, operator_headers, policy
) -> None:
    await deliver_callback(http, gateway, "confirmation", FOREIGN)
    async with http.post(
        f"{gateway.url}/api/v1/c2b/payments/RP5878D37Z/allocate",
        headers=operator_headers,
        json={"policy_uuid": policy["_id"], "note": "apply it anyway"},
    ) as answer:
        status, body = answer.status, await answer.json()
    assert status == 409 and body["error"]["code"] == "shortcode_not_served"
    assert "999999" in body["error"]["message"]
    assert body["error"]["details"] == {
        "status": "held",
        "reason": "shortcode_not_served",
        "shortcode": "999999",
    }
    assert (await gateway.services.policies.get(policy["_id"]))["status"] == 1
    assert (await store.collection(PAYMENTS).find_one({}))["status"] == "held"
