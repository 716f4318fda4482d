"""GET /api/v1/search: one text, every key it can be, newest first."""

from __future__ import annotations

import pytest
import pytest_asyncio
from test_openapi import Caller

from server.ops.search_keys import phone_forms, search_keys

from desk_data import (
    CHECKOUT_ID,
    GMD_INSUREE,
    HASHED,
    KES_INSUREE,
    MASKED,
    PHONE,
    PSP_REFERENCE,
    STK_RECEIPT,
    WALLET,
    History,
    make_history,
    stamp,
)
from support import PREMIUMS, request_json


@pytest_asyncio.fixture
async def history(http, gateway) -> History:
    return await make_history(http, gateway)


@pytest_asyncio.fixture
async def search(http, gateway, operator_headers, history):
    call = Caller(http, gateway)

    async def run(q: str, **params: str) -> list[dict]:
        answer = await call(
            "GET", "/api/v1/search", 200, headers=operator_headers, params={"q": q, **params}
        )
        assert answer["query"] == q.strip()
        return answer["items"]

    return run


def found(items: list[dict]) -> set[tuple[str, str, str]]:
    return {(item["kind"], item["id"], item["match"]) for item in items}


def assert_newest_first(items: list[dict]) -> None:
    times = [stamp(item["at"]) for item in items]
    assert times == sorted(times, reverse=True)


# --- the keys a text can be --------------------------------------------------


def test_a_kenyan_number_in_any_form_has_every_stored_form() -> None:
    for typed in ("0708 374 149", "+254708374149", "254-708-374-149", "0708374149"):
        forms = phone_forms(typed)
        assert forms.clear == (PHONE, "+" + PHONE, "0708374149", "708374149")
        assert forms.masked == (MASKED,)
        assert forms.hashed == (HASHED, HASHED.upper())


def test_a_masked_or_hashed_number_is_looked_up_as_such() -> None:
    assert phone_forms("2547*****149").msisdns == (MASKED,)
    assert phone_forms(" 2547 ***** 149").masked == (MASKED,)
    assert phone_forms(HASHED.upper()).msisdns == (HASHED, HASHED.upper())


def test_another_countrys_number_is_looked_up_only_as_typed() -> None:
    forms = phone_forms("+220 771 2345")
    assert forms.clear == ("+2207712345", "2207712345") and not forms.masked
    assert phone_forms("RKA0000001").msisdns == ()


def test_keys_are_normalised_and_only_the_possible_ones_are_asked() -> None:
    keys = search_keys("  rka0000001 ")
    assert keys.trans_id == "RKA0000001" and keys.chf_id is None and keys.uuid is None
    keys = search_keys("r-2b9e1c0d4a7f")
    assert keys.receipt == "R-2B9E1C0D4A7F"
    keys = search_keys("6F1C2A4E-8B3D-4F7A-9C21-5D0E8A7B3F42")
    assert keys.uuid == "6f1c2a4e-8b3d-4f7a-9c21-5d0e8a7b3f42"
    keys = search_keys("a b c")
    assert keys.trans_id is None and keys.account is None and keys.references == ()


# --- over HTTP ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_trans_id_in_any_case_finds_the_payment(search, history) -> None:
    items = await search("  rka0000001 ")
    assert found(items) >= {("c2b_payment", "RKA0000001", "trans_id")}
    [payment] = [item for item in items if item["kind"] == "c2b_payment"]
    assert payment["summary"] == (
        f"M-Pesa payment RKA0000001 of 1500.00 KES from {MASKED} to account {KES_INSUREE}: "
        f"settled to policy {history.kes_policy['_id']}, receipt "
        f"{payment['summary'].rsplit('receipt ', 1)[1]}"
    )
    assert payment["status"] == "settled" and payment["at"] == "2026-01-05T07:00:00+00:00"
    assert payment["links"]["self"] == "/api/v1/c2b/payments/RKA0000001"
    assert payment["links"]["policy"] == f"/api/v1/policies/{history.kes_policy['_id']}"


@pytest.mark.asyncio
async def test_a_receipt_finds_the_premium_and_the_debit_it_completed(
    search, history, store
) -> None:
    premium = await store.collection(PREMIUMS).find_one({"chf_id": GMD_INSUREE})
    items = await search(premium["receipt"].lower())
    assert found(items) == {("premium", premium["_id"], "receipt")}
    assert items[0]["links"]["self"] == f"/api/v1/transactions/{premium['transaction_uuid']}"
    assert f"Premium {premium['receipt']}: 500.00 GMD" in items[0]["summary"]

    items = await search(STK_RECEIPT)
    assert ("transaction", history.stk["_id"], "provider_receipt") in found(items)
    items = await search(CHECKOUT_ID)
    assert found(items) == {("transaction", history.stk["_id"], "provider_reference")}


@pytest.mark.asyncio
async def test_an_insuree_number_finds_the_insuree_its_payments_and_transactions(
    search, history
) -> None:
    items = await search(KES_INSUREE)
    assert {("insuree", KES_INSUREE, "insuree_number")} <= found(items)
    assert {("c2b_payment", "RKA0000001", "account"), ("c2b_payment", "RKC0000003", "account")} <= (
        found(items)
    )
    kinds = [item["kind"] for item in items]
    assert kinds.count("transaction") == 2  # the paybill payment's and the prompt's
    assert_newest_first(items)
    [insuree] = [item for item in items if item["kind"] == "insuree"]
    assert insuree["summary"] == f"Insuree {KES_INSUREE}: Awa Jallow, phone 0708374149"
    assert insuree["links"] == {"self": f"/api/v1/insurees/{KES_INSUREE}/overview"}


@pytest.mark.asyncio
async def test_a_phone_finds_payments_it_sent_clear_masked_or_hashed(search, history) -> None:
    items = await search("0708 374 149")
    assert found(items) == {
        ("c2b_payment", "RKA0000001", "phone_masked"),
        ("c2b_payment", "RKB0000002", "phone_hashed"),
        ("c2b_payment", "RKC0000003", "phone"),
        ("insuree", KES_INSUREE, "phone"),
        ("transaction", history.stk["_id"], "payer"),
    }
    assert_newest_first(items)


@pytest.mark.asyncio
async def test_a_masked_or_hashed_number_as_typed_finds_its_payments(search) -> None:
    assert found(await search("2547*****149")) == {("c2b_payment", "RKA0000001", "phone_masked")}
    assert found(await search(HASHED.upper())) == {("c2b_payment", "RKB0000002", "phone_hashed")}


@pytest.mark.asyncio
async def test_another_countrys_phone_finds_the_insuree_as_stored(search) -> None:
    assert found(await search("+220 7712345")) == {("insuree", GMD_INSUREE, "phone")}


@pytest.mark.asyncio
async def test_a_providers_transaction_id_or_a_wallet_finds_the_transaction(
    search, history
) -> None:
    uuid = history.psp_payment["payment_id"]
    items = await search(PSP_REFERENCE)
    assert found(items) == {("transaction", uuid, "provider_reference")}
    assert items[0]["summary"].startswith(
        f"Payment provider API of 500.00 GMD for insuree {GMD_INSUREE}: succeeded, receipt R-"
    )
    assert found(await search(WALLET)) == {("transaction", history.qmoney["_id"], "payer")}


@pytest.mark.asyncio
async def test_ids_find_transactions_inbox_entries_policies_and_premiums(
    search, history, store
) -> None:
    uuid = history.psp_payment["payment_id"]
    assert found(await search(uuid.upper())) == {("transaction", uuid, "id")}
    items = await search(history.failed_id)
    assert found(items) == {("inbox_entry", history.failed_id, "id")}
    assert items[0]["summary"] == (
        "M-Pesa paybill confirmation received: failed; RuntimeError: store down"
    )
    assert items[0]["links"] == {"self": f"/api/v1/c2b/inbox/{history.failed_id}"}
    policy = history.gmd_policy["_id"]
    assert found(await search(policy)) == {("policy", policy, "id")}
    premium = await store.collection(PREMIUMS).find_one({"chf_id": GMD_INSUREE})
    assert found(await search(premium["_id"])) == {("premium", premium["_id"], "id")}


@pytest.mark.asyncio
async def test_a_text_that_names_nothing_finds_no_item(search) -> None:
    assert await search("ZZZ999") == []


@pytest.mark.asyncio
async def test_limit_keeps_the_newest_items(search) -> None:
    everything = await search(PHONE)
    assert len(everything) == 5
    assert await search(PHONE, limit="2") == everything[:2]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": ""},
        {"q": "ab"},
        {"q": "   a   "},
        {"q": "x" * 101},
        {"q": "RKA0000001", "limit": "0"},
        {"q": "RKA0000001", "limit": "101"},
        {"q": "RKA0000001", "limit": "many"},
        {"q": "RKA0000001", "kind": "payment"},
    ],
)
async def test_bad_queries_are_refused(http, gateway, operator_headers, params) -> None:
    answer = await Caller(http, gateway)(
        "GET", "/api/v1/search", 400, headers=operator_headers, params=params
    )
    assert answer["error"]["code"] == "validation_error"
    assert answer["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_only_operators_and_admins_search(http, gateway, headers_for, history) -> None:
    url, params = f"{gateway.url}/api/v1/search", {"q": "RKA0000001"}
    status, body = await request_json(http, "GET", url, params=params)
    assert status == 401 and body["error"]["code"] == "missing_token"
    status, _ = await request_json(http, "GET", url, params=params, headers=history.psp_headers)
    assert status == 403
    admin = await headers_for("root", "admin")
    status, body = await request_json(http, "GET", url, params=params, headers=admin)
    assert status == 200 and body["items"]
