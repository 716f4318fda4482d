"""POST /api/graphql: the seed module's documents, sent as its payment providers and
operators send them, answered in its shapes by the REST endpoints' services (the real
gateway over HTTP; the Qmoney simulator over real sockets for the debits)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio

from server.insurance.repository import IDLE

from support import (
    CHF_ID,
    JSON_TYPE,
    PREMIUMS,
    PSP_AUDIT,
    TRANSACTIONS,
    bearer,
    create_user,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
    wait_until,
)
from systems import WALLET

# The seed's documents as its module shows them; the tests fill the `<...>` values and
# change a quoted value where they say so.
TOKEN_AUTH = """mutation { tokenAuth(username: "afrimoney", password: "afrimoney-password") { token refreshToken } }"""  # noqa: E501
VERIFY_INSUREE = """query { verifyInsuree(chfId: "070707070") { lastName firstName message policies { amount status productName productCode token } } }"""  # noqa: E501
PROCESS_PAYMENT = r"""mutation { processPayment(inputData: { chfId: "070707070", amount: "500", pspTransactionId: "AFR-0001", policy: { productName: "Basic cover", productCode: "BASIC-GMD", token: "<token>" }, jsonExt: "{\"k\": \"v\"}" }) { Success responseMessage detail } }"""  # noqa: E501
# The seed's later form of it: a relay mutation, its fields in `input`.
PROCESS_PAYMENT_RELAY = r"""mutation { processPayment(input: { chfId: "070707070", amount: "500", pspTransactionId: "AFR-0001", policy: { productName: "Basic cover", productCode: "BASIC-GMD", token: "<token>" }, clientMutationId: "m-1" }) { Success responseMessage detail clientMutationId } }"""  # noqa: E501
INITIATE_TRANSACTION = """mutation { initiateTransaction(input: { amount: 500.00, paymentServiceProviderUuid: "<psp>", insureeUuid: "070707070" }) { responseMessage Success uuids clientMutationId } }"""  # noqa: E501
PROCESS_TRANSACTION = """mutation { processTransaction(input: { uuid: "<uuid>", amount: 500.00, otp: "<otp>", paymentServiceProviderUuid: "<psp>", insureeUuid: "070707070", clientMutationId: "m-2" }) { responseCode responseMessage Success detail clientMutationId } }"""  # noqa: E501

# The seed's initiateTransaction document selects no `detail`; these tests read it too.
INITIATE_WITH_DETAIL = INITIATE_TRANSACTION.replace(
    "uuids clientMutationId", "uuids detail clientMutationId"
)
PAID = {"Success": True, "responseMessage": "Payment processed successfully", "detail": None}


def document(template: str, **values: str) -> str:
    """The template with its `<name>` placeholders filled."""
    for name, value in values.items():
        template = template.replace(f"<{name}>", value)
    return template


async def graphql(http, gateway, query: str, token: str | None = None) -> Any:
    return await request_json(
        http, "POST", f"{gateway.url}/api/graphql", {"query": query}, token=token
    )


async def login(http, gateway, username: str = "afrimoney") -> str:
    # The test users' passwords are "<username>-password" (support.password_for).
    status, body = await graphql(http, gateway, TOKEN_AUTH.replace("afrimoney", username))
    assert status == 200 and "errors" not in body, body
    return body["data"]["tokenAuth"]["token"]


@pytest_asyncio.fixture
async def provider(http, gateway) -> dict:
    """afrimoney: a psp user of an external-API provider, and an idle policy to pay."""
    _, psp = await psp_user(http, gateway, "afrimoney")
    policy = await idle_policy(gateway.services, CHF_ID)
    return {"psp": psp, "policy": policy, "token": await login(http, gateway)}


async def count(store, collection: str) -> int:
    return await store.collection(collection).count_documents({})


# --- payment providers -------------------------------------------------------


@pytest.mark.asyncio
async def test_a_provider_logs_in_verifies_and_pays_with_the_seeds_documents(
    http, gateway, store
) -> None:
    await psp_user(http, gateway, "afrimoney")
    policy = await idle_policy(gateway.services, CHF_ID)

    status, logged_in = await graphql(http, gateway, TOKEN_AUTH)
    assert status == 200 and set(logged_in["data"]["tokenAuth"]) == {"token", "refreshToken"}
    token = logged_in["data"]["tokenAuth"]["token"]
    # The gateway's own tokens: the REST API takes the access token, the refresh
    # endpoint the refresh token.
    status, _ = await request_json(
        http, "GET", f"{gateway.url}/api/v1/insurees/{CHF_ID}/policies", token=token
    )
    assert status == 200
    status, _ = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/refresh",
        {"refresh_token": logged_in["data"]["tokenAuth"]["refreshToken"]},
    )
    assert status == 200

    status, verified = await graphql(http, gateway, VERIFY_INSUREE, token)
    assert status == 200
    assert verified == {
        "data": {
            "verifyInsuree": {
                "lastName": "Jallow",
                "firstName": "Awa",
                "message": "1 for idle policy",
                "policies": [
                    {
                        "amount": 500.0,
                        "status": 1,
                        "productName": "Basic cover",
                        "productCode": "BASIC-GMD",
                        "token": policy["payment_token"],
                    }
                ],
            }
        }
    }
    offered = verified["data"]["verifyInsuree"]["policies"][0]["token"]

    pay = document(PROCESS_PAYMENT, token=offered)
    status, paid = await graphql(http, gateway, pay, token)
    assert status == 200 and paid == {"data": {"processPayment": PAID}}
    [transaction] = await store.collection(TRANSACTIONS).find({}).to_list(None)
    assert (transaction["channel"], transaction["provider_reference"]) == ("psp_api", "AFR-0001")
    assert transaction["status"] == "succeeded" and transaction["amount"] == 50000
    assert transaction["channel_data"]["json_ext"] == {"k": "v"}
    [premium] = await store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["transaction_uuid"] == transaction["_id"] and premium["amount"] == 50000
    settled = await gateway.services.policies.get(policy["_id"])
    assert settled["status"] == 2 and settled["effective_date"]

    # The same pspTransactionId again: the same answer, nothing paid twice.
    assert await graphql(http, gateway, pay, token) == (200, {"data": {"processPayment": PAID}})
    assert await count(store, TRANSACTIONS) == 1 and await count(store, PREMIUMS) == 1
    # One idempotency with the REST twin: the same payment over REST is its replay.
    status, replay = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/payments",
        {
            "chf_id": CHF_ID,
            "amount": "500",
            "psp_transaction_id": "AFR-0001",
            "policy": {
                "token": offered,
                "product_code": "BASIC-GMD",
                "product_name": "Basic cover",
            },
            "json_ext": {"k": "v"},
        },
        token=token,
    )
    assert status == 200 and replay["payment_id"] == transaction["_id"]

    async def audited() -> list[dict] | None:
        entries = await store.collection(PSP_AUDIT).find({}).sort("at", 1).to_list(None)
        return entries if len(entries) == 5 else None

    entries = await wait_until(audited, "5 audit entries")
    graphql_entries = [entry for entry in entries if entry["path"].startswith("/api/graphql")]
    assert [(entry["path"], entry["status"]) for entry in graphql_entries] == [
        ("/api/graphql#verifyInsuree", 200),
        ("/api/graphql#processPayment", 201),
        ("/api/graphql#processPayment", 200),
    ]
    assert graphql_entries[0]["request"] == {"chf_id": CHF_ID}
    assert graphql_entries[1]["request"]["psp_transaction_id"] == "AFR-0001"
    assert graphql_entries[1]["answer"]["payment_id"] == transaction["_id"]
    assert "Bearer" not in str(entries) and token not in str(entries)


@pytest.mark.asyncio
async def test_the_relay_form_of_process_payment_echoes_its_client_mutation_id(
    http, gateway, provider
) -> None:
    pay = document(PROCESS_PAYMENT_RELAY, token=provider["policy"]["payment_token"])
    status, paid = await graphql(http, gateway, pay, provider["token"])
    assert status == 200
    assert paid == {"data": {"processPayment": {**PAID, "clientMutationId": "m-1"}}}


@pytest.mark.asyncio
async def test_refusals_are_answered_in_the_seeds_words_and_pay_nothing(
    http, gateway, provider, store
) -> None:
    token, policy_token = provider["token"], provider["policy"]["payment_token"]
    refusals = {
        ('"400"', policy_token, CHF_ID): (
            "Amount is too small. It needs to be the exact amount of the product.",
            "amount_too_small",
        ),
        ('"600.00"', policy_token, CHF_ID): (
            "Amount is too large. pls enter the exact amount the product cost.",
            "amount_too_large",
        ),
        ('"500"', policy_token, "999999999"): (
            "Please pass in the correct CH ID.",
            "unknown_insuree",
        ),
        ('"500"', "no-such-token", CHF_ID): (
            "Unable to process payment. insuree does not have any idle policy that requires "
            "payment.",
            "invalid_policy_token",
        ),
        ('"0"', policy_token, CHF_ID): ("Process failed to work", "validation_error"),
    }
    for (amount, policy_token_sent, chf_id), (message, code) in refusals.items():
        pay = (
            document(PROCESS_PAYMENT, token=policy_token_sent)
            .replace('amount: "500"', f"amount: {amount}")
            .replace(f'chfId: "{CHF_ID}"', f'chfId: "{chf_id}"')
        )
        status, body = await graphql(http, gateway, pay, token)
        assert status == 200 and "errors" not in body, body
        answer = body["data"]["processPayment"]
        assert (answer["Success"], answer["responseMessage"]) == (False, message), answer
        assert answer["detail"].startswith(f"{code}: "), answer
    assert await count(store, TRANSACTIONS) == 0
    assert (await gateway.services.policies.get(provider["policy"]["_id"]))["status"] == IDLE

    unknown = VERIFY_INSUREE.replace(CHF_ID, "999999999")
    assert await graphql(http, gateway, unknown, token) == (
        200,
        {
            "data": {
                "verifyInsuree": {
                    "lastName": None,
                    "firstName": None,
                    "message": "chf_id does not exist",
                    "policies": None,
                }
            }
        },
    )
    reasons = await wait_until(
        lambda: store.collection(PSP_AUDIT).distinct("reason"), "the refusals' audit entries"
    )
    assert {"amount_too_small", "unknown_insuree", "invalid_policy_token"} <= set(reasons)


@pytest.mark.asyncio
async def test_an_insuree_with_nothing_to_pay_gets_the_seeds_message(
    http, gateway, provider
) -> None:
    pay = document(PROCESS_PAYMENT, token=provider["policy"]["payment_token"])
    await graphql(http, gateway, pay, provider["token"])
    _, body = await graphql(http, gateway, VERIFY_INSUREE, provider["token"])
    assert body["data"]["verifyInsuree"]["policies"] == []
    assert body["data"]["verifyInsuree"]["message"] == (
        "insuree does not have any idle policy that requires payment,"
    )
    _, again = await graphql(http, gateway, pay.replace("AFR-0001", "AFR-0002"), provider["token"])
    assert again["data"]["processPayment"]["responseMessage"] == (
        "Please check again if your policy you are trying to pay for is idle  or active."
    )


@pytest.mark.asyncio
async def test_a_policy_amount_is_answered_with_its_exact_digits(http, gateway, provider) -> None:
    """A JSON number, as the seed answers it, written from the stored decimal: never
    through a binary float (which would print 500.0)."""
    async with http.post(
        f"{gateway.url}/api/graphql",
        json={"query": VERIFY_INSUREE},
        headers=bearer(provider["token"]),
    ) as answer:
        assert answer.status == 200
        text = await answer.text()
    assert '"amount":500.00,' in text, text


@pytest.mark.asyncio
async def test_an_amount_is_read_from_its_text_never_through_a_float(
    http, gateway, provider, store
) -> None:
    token, policy_token = provider["token"], provider["policy"]["payment_token"]
    # As a float this number is 500.0, the policy's price; as written it is not.
    pay = document(PROCESS_PAYMENT, token=policy_token)
    near = pay.replace('amount: "500"', "amount: 500.000000000000000001")
    _, body = await graphql(http, gateway, near, token)
    assert body["data"]["processPayment"]["Success"] is False
    assert body["data"]["processPayment"]["detail"].startswith("invalid_amount: ")
    with_variable = pay.replace('amount: "500"', "amount: $amount").replace(
        "mutation {", "mutation ($amount: Decimal!) {"
    )
    # The number as a JSON number in the variables, sent as written.
    sent = json.dumps({"query": with_variable, "variables": {"amount": "AMOUNT"}})
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/graphql",
        data=sent.replace('"AMOUNT"', "500.000000000000000001"),
        headers={**JSON_TYPE, **bearer(token)},
    )
    assert status == 200 and body["data"]["processPayment"]["detail"].startswith("invalid_amount")
    for amount, message in (
        ("1e99999999", "Decimal: the amount is out of range"),
        ("true", "Decimal: an amount is a decimal number or string"),
    ):
        _, body = await graphql(
            http, gateway, pay.replace('amount: "500"', f"amount: {amount}"), token
        )
        assert [error["message"] for error in body["errors"]] == [message]
    assert await count(store, TRANSACTIONS) == 0

    exact = pay.replace('amount: "500"', "amount: 5.0E2")
    assert await graphql(http, gateway, exact, token) == (
        200,
        {"data": {"processPayment": PAID}},
    )


@pytest.mark.asyncio
async def test_json_ext_must_be_json_and_nothing_is_paid_without(
    http, gateway, provider, store
) -> None:
    pay = document(PROCESS_PAYMENT, token=provider["policy"]["payment_token"]).replace(
        r'jsonExt: "{\"k\": \"v\"}"', r'jsonExt: "{\"k\": v}"'
    )
    status, body = await graphql(http, gateway, pay, provider["token"])
    assert status == 200 and "data" not in body
    [error] = body["errors"]
    assert "JSONString" in error["message"] and "the text is not valid JSON" in error["message"]
    assert await count(store, TRANSACTIONS) == 0


BAD_DOCUMENTS = {
    "unknown field": (
        VERIFY_INSUREE.replace("lastName", "nickname"),
        "Cannot query field 'nickname' on type 'VerifyGQLtype'.",
    ),
    "syntax error": ("mutation { processPayment(", "Syntax Error"),
    "wrong argument type": (VERIFY_INSUREE.replace('"070707070"', "70"), "String cannot represent"),
    "unknown input field": (
        PROCESS_PAYMENT.replace("pspTransactionId", "transactionId"),
        "Field 'transactionId' is not defined by type 'ProcessPaymentInput'.",
    ),
    "too deep": (
        "{ __schema { types { fields { type " + "{ ofType " * 17 + "{ name }" + " }" * 20 + " }",
        "nested deeper than 20 fields",
    ),
    "too many root fields": (
        "query { "
        + " ".join(f'v{n}: verifyInsuree(chfId: "{n}") {{ message }}' for n in range(6))
        + " }",
        "6 root fields; at most 5",
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(BAD_DOCUMENTS))
async def test_a_bad_document_is_a_graphql_error_and_changes_nothing(
    http, gateway, provider, store, case: str
) -> None:
    query, message = BAD_DOCUMENTS[case]
    status, body = await graphql(http, gateway, query, provider["token"])
    assert status == 200 and set(body) == {"errors"}, body
    assert any(message in error["message"] for error in body["errors"]), body
    assert await count(store, TRANSACTIONS) == 0


@pytest.mark.asyncio
async def test_the_introspection_query_of_graphql_tools_is_answered(http, gateway) -> None:
    from graphql import get_introspection_query

    status, body = await graphql(http, gateway, get_introspection_query())
    assert status == 200 and "errors" not in body
    names = {kind["name"] for kind in body["data"]["__schema"]["types"]}
    assert {"VerifyGQLtype", "ProcessPaymentInput", "Decimal", "JSONString"} <= names


@pytest.mark.asyncio
async def test_without_a_bearer_every_operation_but_token_auth_is_a_graphql_error(
    http, gateway, provider, store
) -> None:
    pay = document(PROCESS_PAYMENT, token=provider["policy"]["payment_token"])
    for query in (VERIFY_INSUREE, pay, INITIATE_TRANSACTION, PROCESS_TRANSACTION):
        status, body = await graphql(http, gateway, query)
        assert status == 200
        [error] = body["errors"]
        assert error["extensions"]["code"] == "missing_token", body
        assert list(body["data"].values()) == [None]
    status, body = await graphql(http, gateway, VERIFY_INSUREE, "forged.token.value")
    assert body["errors"][0]["extensions"]["code"] == "invalid_token"
    assert await count(store, TRANSACTIONS) == 0
    refused = await wait_until(
        lambda: store.collection(PSP_AUDIT).find_one({"status": 401}),
        "a refused request's audit entry",
    )
    assert refused["psp_uuid"] is None and refused["reason"] in ("missing_token", "invalid_token")


@pytest.mark.asyncio
async def test_an_unreadable_body_is_a_400_in_graphqls_error_shape(http, gateway) -> None:
    url = f"{gateway.url}/api/graphql"
    for data, headers, code in (
        ("{not json", JSON_TYPE, "validation_error"),
        ('["a list"]', JSON_TYPE, "validation_error"),
        ('{"variables": {}}', JSON_TYPE, "validation_error"),
        (VERIFY_INSUREE, {"Content-Type": "application/graphql"}, "unsupported_media_type"),
        ('{"query": "' + "x" * 70_000 + '"}', JSON_TYPE, "payload_too_large"),
    ):
        status, body = await request_json(http, "POST", url, data=data, headers=headers)
        assert status == 400, (code, body)
        [error] = body["errors"]
        assert error["message"] and error["extensions"]["code"] == code


@pytest.mark.asyncio
async def test_wrong_credentials_count_as_the_rest_logins_do(http, gateway, provider) -> None:
    wrong = TOKEN_AUTH.replace("afrimoney-password", "wrong-password")
    for _ in range(5):
        status, body = await graphql(http, gateway, wrong)
        assert status == 200 and body["data"] == {"tokenAuth": None}
        [error] = body["errors"]
        assert error["message"] == "INCORRECT_CREDENTIALS"
        assert error["extensions"]["code"] == "invalid_credentials"
    # The throttle the REST login uses: the right password is refused now, both ways.
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": "afrimoney", "password": "afrimoney-password"},
    )
    assert status == 429
    _, body = await graphql(http, gateway, TOKEN_AUTH)
    assert body["errors"][0]["extensions"]["code"] == "too_many_login_attempts"


@pytest.mark.asyncio
async def test_the_providers_rate_limit_counts_each_operation(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(make_settings(psp_api={"rate_limit_per_minute": 2}))
    await psp_user(http, gateway, "afrimoney")
    policy = await idle_policy(gateway.services, CHF_ID)
    token = await login(http, gateway)
    for _ in range(2):
        _, body = await graphql(http, gateway, VERIFY_INSUREE, token)
        assert body["data"]["verifyInsuree"]["message"] == "1 for idle policy"
    _, body = await graphql(http, gateway, VERIFY_INSUREE, token)
    assert body["errors"][0]["extensions"]["code"] == "rate_limited"
    _, body = await graphql(
        http, gateway, document(PROCESS_PAYMENT, token=policy["payment_token"]), token
    )
    assert body["data"]["processPayment"]["Success"] is False
    assert body["data"]["processPayment"]["detail"].startswith("rate_limited: ")


# --- roles -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_provider_cannot_start_debits_and_an_operator_cannot_pay(
    http, gateway, provider, store
) -> None:
    for query, answer in (
        (INITIATE_WITH_DETAIL, "initiateTransaction"),
        (PROCESS_TRANSACTION, "processTransaction"),
    ):
        _, body = await graphql(http, gateway, query, provider["token"])
        refused = body["data"][answer]
        assert refused["Success"] is False
        assert refused["responseMessage"].startswith("transaction.mutation.failed_to_")
        assert refused["detail"] == "forbidden: this operation needs the role operator or admin"
    await create_user(gateway.services, "olga", "operator")
    operator = await login(http, gateway, "olga")
    _, body = await graphql(http, gateway, VERIFY_INSUREE, operator)
    assert body["errors"][0]["message"] == "You are not authorized to perform this operation"
    pay = document(PROCESS_PAYMENT, token=provider["policy"]["payment_token"])
    _, body = await graphql(http, gateway, pay, operator)
    assert body["data"]["processPayment"] == {
        "Success": False,
        "responseMessage": "Process failed to work",
        "detail": "forbidden: this operation needs the role psp",
    }
    assert await count(store, TRANSACTIONS) == 0


# --- operators: Qmoney debits ------------------------------------------------


@pytest.mark.asyncio
async def test_an_operator_debits_a_wallet_with_the_seeds_mutations(debits) -> None:
    http, gateway = debits.http, debits.gateway
    policy = await debits.policy()
    token = await login(http, gateway, "olga")

    start = document(INITIATE_TRANSACTION, psp=debits.psp["_id"])
    status, body = await graphql(http, gateway, start, token)
    assert status == 200
    started = body["data"]["initiateTransaction"]
    assert (started["Success"], started["responseMessage"]) == (True, "Success"), started
    transaction = await debits.services.ledger.get(started["uuids"])
    assert transaction["status"] == "otp_sent" and transaction["policy_uuid"] == policy["_id"]

    otp = await debits.otp()
    wrong = "000000" if otp != "000000" else "111111"
    process = document(PROCESS_TRANSACTION, uuid=started["uuids"], psp=debits.psp["_id"])
    _, body = await graphql(http, gateway, process.replace("<otp>", wrong), token)
    refused = body["data"]["processTransaction"]
    assert (refused["responseCode"], refused["Success"]) == ("-150005", False)
    assert refused["responseMessage"]  # Qmoney's own words
    assert (refused["detail"], refused["clientMutationId"]) == (
        "the transaction is otp_sent",
        "m-2",
    )
    _, body = await graphql(http, gateway, process.replace("<otp>", otp), token)
    assert body["data"]["processTransaction"] == {
        "responseCode": "1",
        "responseMessage": "Success",
        "Success": True,
        "detail": None,
        "clientMutationId": "m-2",
    }
    assert (await debits.services.policies.get(policy["_id"]))["status"] == 2
    assert await debits.balance() == "9500.00"
    [premium] = await debits.store.collection(PREMIUMS).find({}).to_list(None)
    assert premium["transaction_uuid"] == started["uuids"]

    _, body = await graphql(http, gateway, process.replace("<otp>", otp), token)
    again = body["data"]["processTransaction"]
    assert (again["responseCode"], again["Success"]) == ("0", False)
    assert again["detail"] == "invalid_state: the transaction is succeeded"


@pytest.mark.asyncio
async def test_a_wallet_short_of_money_answers_the_seeds_message(debits) -> None:
    await debits.control("PUT", f"wallets/{WALLET}", {"balance": "100.00"})
    await debits.policy()
    token = await login(debits.http, debits.gateway, "olga")
    start = document(INITIATE_TRANSACTION, psp=debits.psp["_id"])
    _, body = await graphql(debits.http, debits.gateway, start, token)
    uuid = body["data"]["initiateTransaction"]["uuids"]
    process = document(PROCESS_TRANSACTION, uuid=uuid, psp=debits.psp["_id"])
    _, body = await graphql(
        debits.http, debits.gateway, process.replace("<otp>", await debits.otp()), token
    )
    assert body["data"]["processTransaction"] == {
        "responseCode": "-120008",
        "responseMessage": "Insufficent Balance in your Qmoney wallet",
        "Success": False,
        "detail": "the transaction is failed",
        "clientMutationId": "m-2",
    }


@pytest.mark.asyncio
async def test_the_insurees_policy_is_its_only_idle_one_or_the_one_named(debits) -> None:
    http, gateway = debits.http, debits.gateway
    token = await login(http, gateway, "olga")
    start = document(INITIATE_WITH_DETAIL, psp=debits.psp["_id"])
    _, body = await graphql(http, gateway, start, token)
    assert body["data"]["initiateTransaction"]["detail"].startswith("unknown_insuree: ")

    first, second = await debits.policy(), await debits.policy()
    _, body = await graphql(http, gateway, start, token)
    refused = body["data"]["initiateTransaction"]
    assert (refused["Success"], refused["uuids"]) == (False, None)
    assert refused["detail"].startswith("policy_ambiguous: insuree 070707070 has 2 policies")

    named = start.replace(
        'insureeUuid: "070707070"', f'insureeUuid: "070707070", policyUuid: "{second["_id"]}"'
    )
    _, body = await graphql(http, gateway, named, token)
    started = body["data"]["initiateTransaction"]
    assert started["Success"] is True
    assert (await debits.services.ledger.get(started["uuids"]))["policy_uuid"] == second["_id"]
    assert (await debits.services.policies.get(first["_id"]))["status"] == IDLE

    no_wallet = await debits.policy(chf_id="080808080", wallet="")
    assert no_wallet["status"] == IDLE
    _, body = await graphql(http, gateway, start.replace(CHF_ID, "080808080"), token)
    assert body["data"]["initiateTransaction"]["responseMessage"] == (
        "Insuree wallet does not exist"
    )


# The samples of the seed module's README, laid out as it shows them (its older
# answers' `internalId` included).
README_INITIATE = """mutation {
    initiateTransaction(input:{
    amount:500.00
    paymentServiceProviderUuid:"<psp>"
    insureeUuid:"070707070"
    }),{
    internalId
    uuids
    clientMutationId



  }


  }"""
README_PROCESS = """mutation {
    processTransaction(input:{
    uuid:"<uuid>"
    amount:500.00
    otp:"<otp>"
    paymentServiceProviderUuid:"<psp>"
    insureeUuid:"070707070"
    }),{
    internalId
    clientMutationId



  }


  }"""


@pytest.mark.asyncio
async def test_the_seed_readmes_debit_samples_run_as_written(debits) -> None:
    policy = await debits.policy()
    token = await login(debits.http, debits.gateway, "olga")
    psp = debits.psp["_id"]
    _, body = await graphql(debits.http, debits.gateway, document(README_INITIATE, psp=psp), token)
    started = body["data"]["initiateTransaction"]
    assert started["uuids"] and started["internalId"] == started["uuids"]
    assert started["clientMutationId"] is None
    process = document(README_PROCESS, psp=psp, uuid=started["uuids"], otp=await debits.otp())
    _, body = await graphql(debits.http, debits.gateway, process, token)
    assert body == {
        "data": {"processTransaction": {"internalId": started["uuids"], "clientMutationId": None}}
    }
    assert (await debits.services.policies.get(policy["_id"]))["status"] == 2
