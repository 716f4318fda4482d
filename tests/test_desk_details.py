"""The desk's detail views: a payment with its deliveries and settlement, one inbox
entry, a transaction's whole history, an insuree's overview."""

from __future__ import annotations

import pytest
import pytest_asyncio
from test_openapi import Caller

from desk_data import GMD_INSUREE, KES_INSUREE, PHONE, History, make_history
from support import PREMIUMS, TRANSACTIONS, request_json


@pytest_asyncio.fixture
async def history(http, gateway) -> History:
    return await make_history(http, gateway)


@pytest_asyncio.fixture
async def get(http, gateway, operator_headers, history):
    call = Caller(http, gateway)

    async def run(path: str, answered: int = 200, **params: str) -> dict:
        return await call(
            "GET", f"/api/v1/{path}", answered, headers=operator_headers, params=params
        )

    return run


# --- a payment ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_payment_alone_is_answered_as_before(get) -> None:
    payment = await get("c2b/payments/rka0000001")
    assert payment["trans_id"] == "RKA0000001" and payment["status"] == "settled"
    assert "deliveries" not in payment and "settlement" not in payment


@pytest.mark.asyncio
async def test_a_payment_with_its_deliveries_and_settlement(get, store) -> None:
    payment = await get("c2b/payments/RKA0000001", include="deliveries,settlement")
    [delivery] = payment["deliveries"]
    assert (delivery["kind"], delivery["status"], delivery["trans_id"]) == (
        "confirmation",
        "processed",
        "RKA0000001",
    )
    assert delivery["answer"] == {"ResultCode": 0, "ResultDesc": "Success"}
    assert delivery["parsed_body"]["TransID"] == "RKA0000001"
    assert delivery["parsed_body"]["TransAmount"] == "1500.00"
    assert delivery["body_encoding"] == "utf-8" and '"RKA0000001"' in delivery["body"]
    assert delivery["processed_at"] and delivery["received_at"]

    transaction = payment["settlement"]["transaction"]
    assert transaction["uuid"] == payment["transaction_uuid"]
    assert (transaction["channel"], transaction["status"]) == ("mpesa_c2b", "succeeded")
    premium = payment["settlement"]["premium"]
    stored = await store.collection(PREMIUMS).find_one({"transaction_uuid": transaction["uuid"]})
    assert premium["uuid"] == stored["_id"] and premium["receipt"] == payment["receipt"]
    assert (premium["amount"], premium["currency"], premium["chf_id"]) == (
        "1500.00",
        "KES",
        KES_INSUREE,
    )
    assert [step["status"] for step in payment["allocation_history"]] == ["allocating", "settled"]


@pytest.mark.asyncio
async def test_a_redelivered_payment_shows_every_delivery_newest_first(get) -> None:
    payment = await get("c2b/payments/RKD0000004", include="deliveries")
    assert [item["status"] for item in payment["deliveries"]] == ["conflict", "processed"]
    assert [item["parsed_body"]["TransAmount"] for item in payment["deliveries"]] == [
        "80.00",
        "75.50",
    ]
    assert "settlement" not in payment


@pytest.mark.asyncio
async def test_an_unmatched_payment_has_settled_nothing(get) -> None:
    payment = await get("c2b/payments/RKB0000002", include="settlement")
    assert payment["settlement"] is None and "deliveries" not in payment


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params", [{"include": "history"}, {"include": "deliveries,"}, {"include": ""}, {"all": "1"}]
)
async def test_bad_includes_are_refused(get, params) -> None:
    answer = await get("c2b/payments/RKA0000001", 400, **params)
    assert answer["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_an_unknown_payment_is_404_whatever_it_includes(get) -> None:
    await get("c2b/payments/NOPE", 404, include="deliveries,settlement")


# --- an inbox entry ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_inbox_entry_with_its_body_read_or_not(get, history) -> None:
    entry = await get(f"c2b/inbox/{history.unreadable_id}")
    assert entry["status"] == "needs_review" and entry["body"] == "{not json"
    assert entry["parsed_body"] is None and entry["errors"]
    failed = await get(f"c2b/inbox/{history.failed_id}")
    assert failed["failure"] == {"type": "RuntimeError", "message": "store down"}
    assert failed["parsed_body"] == {}
    await get("c2b/inbox/no-such-entry", 404)


# --- a transaction ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_transaction_shows_its_whole_history(get, history, store) -> None:
    for uuid in (history.psp_payment["payment_id"], history.stk["_id"]):
        stored = await store.collection(TRANSACTIONS).find_one({"_id": uuid})
        transaction = await get(f"transactions/{uuid}")
        assert [(step["from"], step["to"]) for step in transaction["history"]] == [
            (step["from"], step["to"]) for step in stored["history"]
        ]
    stk = await get(f"transactions/{history.stk['_id']}")
    assert (stk["phone"], stk["mpesa_receipt"]) == (PHONE, "RKE0000005")


# --- an insuree --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_insurees_overview_lists_what_it_has(get, history) -> None:
    overview = await get(f"insurees/{KES_INSUREE}/overview")
    assert overview["insuree"]["chf_id"] == KES_INSUREE
    assert overview["insuree"]["phone"] == "0708374149"
    assert [policy["uuid"] for policy in overview["policies"]["items"]] == [
        history.kes_policy["_id"]
    ]
    assert overview["policies"]["items"][0]["status"] == 2  # active: RKA0000001 paid it
    assert [premium["amount"] for premium in overview["premiums"]["items"]] == ["1500.00"]
    assert [payment["trans_id"] for payment in overview["payments"]["items"]] == [
        "RKC0000003",
        "RKA0000001",
    ]
    channels = [item["channel"] for item in overview["transactions"]["items"]]
    assert channels == ["mpesa_stk", "mpesa_c2b"]
    for section in ("policies", "premiums", "payments", "transactions"):
        assert (overview[section]["limit"], overview[section]["offset"]) == (20, 0)


@pytest.mark.asyncio
async def test_each_list_of_the_overview_pages_on_its_own(get) -> None:
    overview = await get(
        f"insurees/{KES_INSUREE}/overview", limit="1", payments_offset="1", premiums_offset="5"
    )
    payments = overview["payments"]
    assert [item["trans_id"] for item in payments["items"]] == ["RKA0000001"]
    assert (payments["total"], payments["limit"], payments["offset"]) == (2, 1, 1)
    assert overview["premiums"] == {"items": [], "total": 1, "limit": 1, "offset": 5}
    transactions = overview["transactions"]
    assert (len(transactions["items"]), transactions["total"]) == (1, 2)
    assert transactions["items"][0]["channel"] == "mpesa_stk"


@pytest.mark.asyncio
async def test_an_insuree_paid_through_a_provider(get, history) -> None:
    overview = await get(f"insurees/ {GMD_INSUREE} /overview")
    assert overview["payments"]["total"] == 0
    assert {item["channel"] for item in overview["transactions"]["items"]} == {
        "psp_api",
        "qmoney",
    }
    assert (
        overview["premiums"]["items"][0]["transaction_uuid"] == (history.psp_payment["payment_id"])
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "answered"),
    [
        ({"limit": "0"}, 400),
        ({"limit": "101"}, 400),
        ({"payments_offset": "-1"}, 400),
        ({"offset": "1"}, 400),
    ],
)
async def test_bad_overview_queries_are_refused(get, params, answered) -> None:
    await get(f"insurees/{KES_INSUREE}/overview", answered, **params)


@pytest.mark.asyncio
async def test_an_unknown_insuree_has_no_overview(get) -> None:
    answer = await get("insurees/123456789/overview", 404)
    assert answer["error"]["code"] == "unknown_insuree"
    await get("insurees/not-a-number/overview", 404)


@pytest.mark.asyncio
async def test_the_overview_is_for_operators_and_the_policies_route_for_providers(
    http, gateway, operator_headers, history
) -> None:
    base = f"{gateway.url}/api/v1/insurees/{GMD_INSUREE}"
    assert (await request_json(http, "GET", f"{base}/overview")).status == 401
    provider = history.psp_headers
    assert (await request_json(http, "GET", f"{base}/overview", headers=provider)).status == 403
    # The providers' own route is untouched (no idle policy left: paid).
    status, body = await request_json(http, "GET", f"{base}/policies", headers=provider)
    assert (status, body["policies"]) == (200, [])
    status, _ = await request_json(http, "GET", f"{base}/policies", headers=operator_headers)
    assert status == 403
