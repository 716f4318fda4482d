"""Identifiers are normalised once (surrounding whitespace; TransID upper-cased) before
any uniqueness check or look-up, and then matched whole: a final newline, inner
whitespace or a control character never makes a second record."""

import pytest
from marshmallow import ValidationError

from server.auth.repository import UserExists
from server.debits.schemas import ProcessRequestSchema
from server.insurance.schemas import InsureeCreateSchema, ProductCreateSchema
from server.kernel.errors import Conflict, ValidationFailed
from server.kernel.schemas import Whole
from server.psp_api.schemas import PaymentRequestSchema

from support import (
    BASIC_KES,
    INBOX,
    PAYMENTS,
    TRANSACTIONS,
    callback_body,
    create_user,
    deliver_callback,
    ensure_insuree,
    ensure_product,
    external_psp,
    idle_policy,
    insuree_body,
    login_headers,
)

TRANS_ID = "RP5878D37Z"
SAME_TRANS_ID = [f"{TRANS_ID}\n", f" {TRANS_ID.lower()} ", f"{TRANS_ID}\r\n", f"\t{TRANS_ID}"]
NOT_A_TRANS_ID = ["RP58 78D37Z", "RP5878\x00D37Z", f"{TRANS_ID}\nX", "RP5878D37Z\u200b"]


async def confirm(http, gateway, **fields: str) -> None:
    status, answer = await deliver_callback(http, gateway, "confirmation", callback_body(**fields))
    assert (status, answer["ResultCode"]) == (200, 0)


async def kenyan_policy(gateway) -> dict:
    return await idle_policy(
        gateway.services, "070707070", BASIC_KES, first_name="Wanjiru", last_name="Kamau"
    )


# --- TransID ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("resent", SAME_TRANS_ID, ids=repr)
async def test_resent_confirmation_with_another_spelling_of_the_trans_id_is_a_duplicate(
    http, gateway, store, notifier, resent
) -> None:
    await confirm(http, gateway, TransID=TRANS_ID)
    await confirm(http, gateway, TransID=resent)
    [payment] = await store.collection(PAYMENTS).find({}).to_list(None)
    assert payment["trans_id"] == TRANS_ID
    entries = await store.collection(INBOX).find({}).sort("received_at", 1).to_list(None)
    assert [entry["status"] for entry in entries] == ["processed", "duplicate"]
    assert {entry["trans_id"] for entry in entries} == {TRANS_ID}
    await gateway.services.sms.send_due()  # the job hands the payer's notice over
    assert len(notifier.sent) == 1


@pytest.mark.asyncio
async def test_first_confirmation_with_a_lower_case_trans_id_is_stored_normalised(
    http, gateway, store
) -> None:
    await confirm(http, gateway, TransID=f"{TRANS_ID.lower()}\n")
    await confirm(http, gateway, TransID=TRANS_ID)
    [payment] = await store.collection(PAYMENTS).find({}).to_list(None)
    assert payment["trans_id"] == TRANS_ID


@pytest.mark.asyncio
@pytest.mark.parametrize("trans_id", NOT_A_TRANS_ID, ids=repr)
async def test_trans_id_with_inner_whitespace_or_control_characters_is_kept_for_review(
    http, gateway, store, trans_id
) -> None:
    await confirm(http, gateway, TransID=trans_id)
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert entry["status"] == "needs_review" and "TransID" in entry["errors"]
    assert await store.collection(PAYMENTS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_validation_normalises_the_trans_id_it_records(http, gateway, store) -> None:
    _, answer = await deliver_callback(
        http, gateway, "validation", callback_body(TransID=f"{TRANS_ID.lower()}\n")
    )
    assert answer["ResultCode"] == "0"
    entry = await store.collection(INBOX).find_one({})
    assert entry["trans_id"] == TRANS_ID


@pytest.mark.asyncio
async def test_payment_detail_and_allocation_paths_find_the_normalised_trans_id(
    http, gateway, operator_headers
) -> None:
    await confirm(http, gateway, TransID=TRANS_ID, BillRefNumber="nobody", TransAmount="1500")
    policy = await kenyan_policy(gateway)
    spelt = "%20rp5878d37z%0A"
    async with http.get(
        f"{gateway.url}/api/v1/c2b/payments/{spelt}", headers=operator_headers
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["trans_id"] == TRANS_ID
    async with http.post(
        f"{gateway.url}/api/v1/c2b/payments/{spelt}/allocate",
        headers=operator_headers,
        json={"policy_uuid": policy["_id"], "note": "typed wrongly"},
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["status"] == "settled"


# --- insuree numbers, also as the paybill account ------------------------------------


@pytest.mark.asyncio
async def test_account_number_with_surrounding_whitespace_pays_the_insurees_policy(
    http, gateway, store
) -> None:
    policy = await kenyan_policy(gateway)
    await confirm(http, gateway, BillRefNumber=" 070707070\n", TransAmount="1500.00")
    payment = await store.collection(PAYMENTS).find_one({})
    assert (payment["bill_ref"], payment["status"]) == ("070707070", "settled")
    assert payment["policy_uuid"] == policy["_id"]


@pytest.mark.asyncio
async def test_account_number_with_an_inner_newline_is_rejected_at_validation(
    http, gateway
) -> None:
    _, answer = await deliver_callback(
        http, gateway, "validation", callback_body(BillRefNumber="0707\n07070")
    )
    assert answer["ResultCode"] == "C2B00012"


@pytest.mark.asyncio
async def test_insuree_number_with_a_final_newline_is_the_same_insuree(gateway) -> None:
    insurees = gateway.services.insurees
    created = await insurees.create(InsureeCreateSchema().load(insuree_body(" 070707070\n")))
    assert created["chf_id"] == "070707070"
    with pytest.raises(Conflict) as caught:
        await insurees.create(InsureeCreateSchema().load(insuree_body("070707070\n")))
    assert caught.value.code == "insuree_exists"
    assert (await insurees.get("070707070\n"))["_id"] == created["_id"]


@pytest.mark.parametrize("chf_id", ["0707 07070", "0707\x0007070", "07070707a", ""], ids=repr)
def test_insuree_number_with_inner_whitespace_or_other_characters_is_refused(chf_id) -> None:
    with pytest.raises(ValidationError) as caught:
        InsureeCreateSchema().load({"chf_id": chf_id, "first_name": "A", "last_name": "B"})
    assert "chf_id" in caught.value.messages


# --- provider API ----------------------------------------------------------------------


async def provider(http, gateway) -> dict[str, str]:
    """A provider whose user is named, and logs in, with surrounding whitespace."""
    services = gateway.services
    await ensure_product(services)
    await create_user(services, "afri", "psp")
    await external_psp(services, " afri\n", name="Afrimoney", account="A")
    return await login_headers(http, gateway.url, "afri\n", "afri-password")


@pytest.mark.asyncio
async def test_provider_payment_resent_with_a_padded_psp_transaction_id_is_a_replay(
    http, gateway, store
) -> None:
    headers = await provider(http, gateway)
    policy = await idle_policy(
        gateway.services, "060606060", first_name="Fatou", last_name="Ceesay"
    )
    answers = []
    for reference, chf_id in (
        ("AFR-0001", "060606060"),
        ("AFR-0001\n", " 060606060"),
        (" AFR-0001 ", "060606060\n"),
    ):
        body = {
            "chf_id": chf_id,
            "amount": "500.00",
            "psp_transaction_id": reference,
            "policy": {
                "token": policy["payment_token"],
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
        }
        async with http.post(
            f"{gateway.url}/api/v1/payments", json=body, headers=headers
        ) as answer:
            answers.append((answer.status, (await answer.json())["payment_id"]))
    assert [status for status, _ in answers] == [201, 200, 200]
    assert len({payment_id for _, payment_id in answers}) == 1
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_provider_look_up_finds_an_insuree_number_with_surrounding_whitespace(
    http, gateway
) -> None:
    headers = await provider(http, gateway)
    await ensure_insuree(gateway.services, "060606060", first_name="Fatou", last_name="Ceesay")
    async with http.get(
        f"{gateway.url}/api/v1/insurees/%20060606060%0A/policies", headers=headers
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["chf_id"] == "060606060"


def test_psp_transaction_id_with_inner_whitespace_is_refused() -> None:
    body = {
        "chf_id": "060606060",
        "amount": "500.00",
        "psp_transaction_id": "AFR 0001",
        "policy": {"token": "t", "product_code": "P", "product_name": "N"},
    }
    with pytest.raises(ValidationError) as caught:
        PaymentRequestSchema().load(body)
    assert "psp_transaction_id" in caught.value.messages


# --- usernames -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_username_with_a_final_newline_is_the_same_user(gateway) -> None:
    auth = gateway.services.auth
    await auth.create_user("olga\n", "olga-password", "operator")
    with pytest.raises(UserExists):
        await auth.create_user(" olga", "other-password", "operator")
    assert (await auth.login("olga", "olga-password")).access_token


@pytest.mark.asyncio
@pytest.mark.parametrize("username", ["ol ga", "ol\x00ga", "ol\nga", ""], ids=repr)
async def test_username_with_inner_whitespace_or_control_characters_is_refused(
    gateway, username
) -> None:
    with pytest.raises(ValidationFailed):
        await gateway.services.auth.create_user(username, "olga-password", "operator")


# --- other patterns are matched whole too ----------------------------------------------


@pytest.mark.parametrize("value", ["1234\n", "12345\n", "1234\r\n"], ids=repr)
def test_otp_with_a_final_newline_is_refused(value) -> None:
    with pytest.raises(ValidationError):
        ProcessRequestSchema().load({"otp": value})


@pytest.mark.parametrize(
    ("pattern", "value"),
    [(r"[0-9]{1,3}", "12\n"), (r"[0-9]{1,3}", "x12"), (r"[0-9]{1,3}", "12x")],
    ids=repr,
)
def test_whole_pattern_refuses_anything_around_the_match(pattern, value) -> None:
    with pytest.raises(ValidationError):
        Whole(pattern, error="no")(value)


def test_product_code_with_a_final_newline_is_the_same_code() -> None:
    loaded = ProductCreateSchema().load(
        {"code": "BASIC-KES\n", "name": "Basic", "price": "1.00", "currency": "KES"}
    )
    assert loaded["code"] == "BASIC-KES"
    with pytest.raises(ValidationError):
        ProductCreateSchema().load(
            {"code": "BASIC KES", "name": "Basic", "price": "1.00", "currency": "KES"}
        )


@pytest.mark.asyncio
async def test_an_account_named_before_the_username_rule_can_still_log_in(gateway, http) -> None:
    await gateway.services.auth.users.create(
        "jane doe",
        await gateway.services.auth.passwords.hash("jane-password"),
        "operator",
        gateway.services.auth.clock.now(),
    )
    async with http.post(
        f"{gateway.url}/api/v1/auth/token",
        json={"username": " jane doe\n", "password": "jane-password"},
    ) as answer:
        assert answer.status == 200
