"""The allocation picker, GET /api/v1/c2b/payments/<trans_id>/candidates: the idle
policies an unmatched payment could take, the account's insuree first, with the amount
each needs beside the amount paid; and unmatched reasons in words wherever operators
see them."""

import pytest
import pytest_asyncio

from server.mpesa.action_schemas import CandidateListSchema
from server.mpesa.schemas import C2BPaymentSchema, render_payment

from support import (
    BASIC_KES,
    PAYMENTS,
    callback_body,
    deliver_callback,
    ensure_insuree,
    idle_policy,
    request_json,
)

ACCOUNT = "070707070"  # Awa Jallow: one idle policy of 1500.00 KES
OTHER = "080808080"  # Fatou Ceesay: one idle policy of 350.00 KES


async def confirm(http, gateway, trans_id: str, account: str, amount: str, **fields) -> None:
    body = callback_body(TransID=trans_id, BillRefNumber=account, TransAmount=amount, **fields)
    status, answer = await deliver_callback(http, gateway, "confirmation", body)
    assert (status, answer["ResultCode"]) == (200, 0)


async def candidates(http, gateway, headers, trans_id: str, **params):
    return await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/c2b/payments/{trans_id}/candidates",
        headers=headers,
        params=params,
    )


async def payments(http, gateway, headers, **params) -> dict[str, dict]:
    status, page = await request_json(
        http, "GET", f"{gateway.url}/api/v1/c2b/payments", headers=headers, params=params
    )
    assert status == 200, page
    return {item["trans_id"]: item for item in page["items"]}


async def attention(http, gateway, headers) -> dict:
    status, board = await request_json(
        http, "GET", f"{gateway.url}/api/v1/dashboard", headers=headers
    )
    assert status == 200, board
    return board["attention"]


@pytest_asyncio.fixture
async def insurees(gateway) -> dict[str, dict]:
    services = gateway.services
    return {
        ACCOUNT: await idle_policy(services, ACCOUNT, BASIC_KES),
        OTHER: await idle_policy(
            services, OTHER, BASIC_KES, amount="350.00", first_name="Fatou", last_name="Ceesay"
        ),
    }


@pytest.mark.asyncio
async def test_the_accounts_policies_come_first_then_those_the_search_finds(
    http, gateway, operator_headers, insurees
) -> None:
    await confirm(http, gateway, "RKL0000001", ACCOUNT, "350.00")

    status, body = await candidates(http, gateway, operator_headers, "RKL0000001")
    assert status == 200, body
    assert CandidateListSchema().validate(body) == {}
    assert body["account_insuree"] == {"chf_id": ACCOUNT, "name": "Awa Jallow"}
    assert (body["unmatched_reason"], body["paid"]) == (
        "amount_mismatch",
        {"amount": "350.00", "currency": "KES"},
    )
    assert body["reason_text"] == "paid 350.00 KES; the policy needs 1500.00 KES"
    [own] = body["items"]
    assert own == {
        "policy_uuid": insurees[ACCOUNT]["_id"],
        "chf_id": ACCOUNT,
        "insuree_name": "Awa Jallow",
        "product_code": "BASIC-KES",
        "product_name": "Basic cover",
        "expected": {"amount": "1500.00", "currency": "KES"},
        "paid": {"amount": "350.00", "currency": "KES"},
        "fits": False,
        "reason_text": "paid 350.00 KES; the policy needs 1500.00 KES",
        "found_by": "account",
    }

    for query in ("ceesay", OTHER, "Fatou Ceesay"):
        status, body = await candidates(http, gateway, operator_headers, "RKL0000001", q=query)
        assert status == 200 and body["q"] == query, body
        assert [(item["chf_id"], item["found_by"], item["fits"]) for item in body["items"]] == [
            (ACCOUNT, "account", False),
            (OTHER, "search", True),
        ], query
        assert body["items"][1]["reason_text"] is None
        assert body["items"][1]["expected"] == {"amount": "350.00", "currency": "KES"}

    # The account's insuree found again by the search is listed once, as the account's.
    status, body = await candidates(http, gateway, operator_headers, "RKL0000001", q=ACCOUNT)
    assert [item["found_by"] for item in body["items"]] == ["account"]

    # The picked policy is what allocating takes.
    status, settled = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/c2b/payments/RKL0000001/allocate",
        {"policy_uuid": insurees[OTHER]["_id"], "note": "the payer named his wife's policy"},
        headers=operator_headers,
    )
    assert (status, settled["status"], settled["reason_text"]) == (200, "settled", None)


@pytest.mark.asyncio
async def test_names_are_found_by_their_start_in_any_usual_case(
    http, gateway, operator_headers, insurees
) -> None:
    await confirm(http, gateway, "RKL0000002", "999999999", "350.00")
    found = {}
    for query in ("fat", "CEE", "Fatou", "fatou cee", "  ceesay  ", "awa", "zzz", "atou"):
        status, body = await candidates(http, gateway, operator_headers, "RKL0000002", q=query)
        assert status == 200, body
        found[query] = [item["chf_id"] for item in body["items"]]
    assert found == {
        "fat": [OTHER],
        "CEE": [OTHER],
        "Fatou": [OTHER],
        "fatou cee": [OTHER],
        "  ceesay  ": [OTHER],
        "awa": [ACCOUNT],
        "zzz": [],
        "atou": [],  # the start of a name, not any part of it
    }
    status, body = await candidates(http, gateway, operator_headers, "RKL0000002")
    assert (body["account_insuree"], body["items"]) == (None, [])
    assert body["reason_text"] == "no insuree has account number 999999999"


@pytest.mark.asyncio
async def test_only_an_unmatched_payment_has_candidates(
    http, gateway, operator_headers, insurees
) -> None:
    await confirm(http, gateway, "RKL0000003", ACCOUNT, "1500.00")  # settles the policy
    status, body = await candidates(http, gateway, operator_headers, "RKL0000003")
    assert (status, body["error"]["code"]) == (409, "invalid_state")
    assert body["error"]["message"] == (
        "the payment is settled: only an unmatched payment is allocated"
    )

    await confirm(http, gateway, "RKL0000004", OTHER, "350.00", BusinessShortCode="999999")
    status, body = await candidates(http, gateway, operator_headers, "rkl0000004 ")
    assert (status, body["error"]["code"]) == (409, "shortcode_not_served")

    status, body = await candidates(http, gateway, operator_headers, "NOSUCHTX")
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.asyncio
async def test_candidates_are_for_operators_and_refuse_bad_queries(
    http, gateway, operator_headers, headers_for, insurees
) -> None:
    await confirm(http, gateway, "RKL0000005", ACCOUNT, "350.00")
    status, _ = await candidates(http, gateway, {}, "RKL0000005")
    assert status == 401
    status, _ = await candidates(http, gateway, await headers_for("afrimoney", "psp"), "RKL0000005")
    assert status == 403
    status, _ = await candidates(http, gateway, await headers_for("root", "admin"), "RKL0000005")
    assert status == 200
    for params in ({"limit": "5"}, {"q": "x" * 101}, {"q": "   "}, {"q": ""}):
        status, body = await candidates(http, gateway, operator_headers, "RKL0000005", **params)
        assert (status, body["error"]["code"]) == (400, "validation_error"), params


@pytest.mark.asyncio
async def test_unmatched_reasons_are_given_in_words_with_the_amounts(
    http, gateway, operator_headers, insurees
) -> None:
    services = gateway.services
    await ensure_insuree(services, "060606060")  # no policy at all
    await idle_policy(services, "050505050", BASIC_KES)
    await idle_policy(services, "050505050", BASIC_KES)  # two of 1500.00 KES
    await idle_policy(services, "040404040", BASIC_KES)
    await idle_policy(services, "040404040", BASIC_KES, amount="2000.00")
    sent = {
        "RKL0000011": (ACCOUNT, "350.00"),
        "RKL0000012": ("999999999", "350.00"),
        "RKL0000013": ("060606060", "350.00"),
        "RKL0000014": ("050505050", "1500.00"),
        "RKL0000015": ("040404040", "350.00"),
        "RKL0000016": ("", "350.00"),
    }
    for trans_id, (account, amount) in sent.items():
        await confirm(http, gateway, trans_id, account, amount)
    await confirm(http, gateway, "RKL0000017", ACCOUNT, "350.00", BusinessShortCode="999999")

    expected = {
        "RKL0000011": ("amount_mismatch", "paid 350.00 KES; the policy needs 1500.00 KES"),
        "RKL0000012": ("unknown_account", "no insuree has account number 999999999"),
        "RKL0000013": ("no_idle_policy", "insuree 060606060 has no policy awaiting payment"),
        "RKL0000014": (
            "several_candidates",
            "2 policies of insuree 050505050 await exactly 1500.00 KES: choose one",
        ),
        "RKL0000015": (
            "amount_mismatch",
            "paid 350.00 KES; the policies of insuree 040404040 awaiting payment need "
            "1500.00 KES or 2000.00 KES",
        ),
        "RKL0000016": ("unknown_account", "the payment names no account number"),
        "RKL0000017": (
            "shortcode_not_served",
            "paid to shortcode 999999, which this gateway does not serve: kept for review, "
            "never applied to a policy",
        ),
    }
    listed = await payments(http, gateway, operator_headers)
    assert {
        trans_id: (item["unmatched_reason"], item["reason_text"])
        for trans_id, item in listed.items()
    } == expected
    assert all(C2BPaymentSchema().validate(item) == {} for item in listed.values())
    held = listed["RKL0000017"]["review"][0]
    assert (held["reason"], held["reason_text"]) == (
        "shortcode_not_served",
        expected["RKL0000017"][1],
    )

    board = await attention(http, gateway, operator_headers)
    unmatched = {item["trans_id"]: item for item in board["c2b_unmatched"]["oldest"]}
    assert board["c2b_unmatched"]["count"] == 6
    for trans_id, item in unmatched.items():
        assert (item["reason"], item["reason_text"]) == expected[trans_id]
    [review] = board["c2b_needs_review"]["oldest"]
    assert (review["reason"], review["reason_text"]) == expected["RKL0000017"]


@pytest.mark.asyncio
async def test_a_payment_stored_without_its_amounts_gets_them_when_read_alone(
    http, gateway, store, operator_headers, insurees
) -> None:
    """A payment unmatched before the needed amounts were stored with it: a list says
    its reason without them (it reads no policies); the payment read alone has them."""
    await confirm(http, gateway, "RKL0000021", ACCOUNT, "350.00")
    await store.collection(PAYMENTS).update_one(
        {"trans_id": "RKL0000021"}, {"$unset": {"unmatched_detail": ""}}
    )
    listed = await payments(http, gateway, operator_headers)
    assert listed["RKL0000021"]["reason_text"] == (
        f"paid 350.00 KES; no policy of insuree {ACCOUNT} awaiting payment costs that"
    )
    payment = await gateway.services.c2b.get_payment("RKL0000021")
    assert render_payment(payment)["reason_text"] == (
        "paid 350.00 KES; the policy needs 1500.00 KES"
    )
    stored = await store.collection(PAYMENTS).find_one({"trans_id": "RKL0000021"})
    assert "unmatched_detail" not in stored  # computed for the reading, never written
