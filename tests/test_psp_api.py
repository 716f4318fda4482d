"""The payment-provider API over HTTP: access, verify, idempotent payment, audit."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import pytest_asyncio

from server.psp_api.schemas import PaymentRequestSchema
from server.psp_api.service import PspApiService

from support import (
    POLICIES,
    PREMIUMS,
    PSP_AUDIT,
    TEST_ENV,
    TRANSACTIONS,
    USERS,
    ensure_insuree,
    idle_policy,
    make_settings,
    psp_user,
    request_json,
    wait_until,
)


class Provider:
    def __init__(self, http, gateway, headers, psp) -> None:
        self.http, self.gateway, self.headers, self.psp = http, gateway, headers, psp

    async def call(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        answer = await request_json(
            self.http,
            method,
            self.gateway.url + path,
            body,
            headers=self.headers if headers is None else headers,
        )
        self.last_headers = answer.headers
        return answer

    async def verify(self, chf_id: str) -> tuple[int, dict]:
        return await self.call("GET", f"/api/v1/insurees/{chf_id}/policies")

    async def pay(self, body: dict, headers=None) -> tuple[int, dict]:
        return await self.call("POST", "/api/v1/payments", body, headers)


async def provider_user(
    gateway, http, name: str, *, currency: str = "GMD", active: bool = True
) -> Provider:
    headers, psp = await psp_user(http, gateway, name, currency=currency, active=active)
    return Provider(http, gateway, headers, psp)


@pytest_asyncio.fixture
async def afrimoney(http, gateway) -> Provider:
    return await provider_user(gateway, http, "afrimoney")


def payment(policy: dict, reference: str = "AFR-0001", amount: str = "500.00", **changes) -> dict:
    body = {
        "chf_id": policy["chf_id"],
        "amount": amount,
        "psp_transaction_id": reference,
        "policy": {
            "token": policy["payment_token"],
            "product_code": policy["product_code"],
            "product_name": policy["product_name"],
        },
        "json_ext": {"channel": "ussd"},
    }
    body.update(changes)
    return body


@pytest.mark.asyncio
async def test_verify_lists_idle_policies_with_opaque_tokens(gateway, afrimoney) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    active = await idle_policy(gateway.services, "070707070", amount="800.00")
    await gateway.services.policies.update(active["_id"], {"status": 2})
    status, body = await afrimoney.verify("070707070")
    assert status == 200
    assert (body["chf_id"], body["first_name"], body["last_name"]) == ("070707070", "Awa", "Jallow")
    [item] = body["policies"]
    assert item == {
        "token": policy["payment_token"],
        "product_code": "BASIC-GMD",
        "product_name": "Basic cover",
        "amount": "500.00",
        "currency": "GMD",
        "status": 1,
    }
    assert item["token"] != policy["_id"] and len(item["token"]) >= 20


@pytest.mark.asyncio
async def test_verify_unknown_insuree_is_404_and_none_idle_is_an_empty_list(
    gateway, afrimoney
) -> None:
    status, body = await afrimoney.verify("999999")
    assert status == 404 and body["error"]["code"] == "unknown_insuree"
    await ensure_insuree(gateway.services, "123", first_name="A", last_name="B")
    status, body = await afrimoney.verify("123")
    assert status == 200 and body["policies"] == [] and body["message"]


@pytest.mark.asyncio
async def test_payment_settles_the_policy(gateway, afrimoney, store, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ledger")
    policy = await idle_policy(gateway.services, "070707070")
    status, body = await afrimoney.pay(payment(policy))
    assert status == 201
    assert body["status"] == "succeeded" and body["psp_transaction_id"] == "AFR-0001"
    assert (body["amount"], body["currency"]) == ("500.00", "GMD")
    assert body["receipt"].startswith("R-") and body["premium"]["pay_type"] == "M"
    assert body["policy"]["status"] == 2 and body["policy"]["effective_date"]
    transaction = await store.collection(TRANSACTIONS).find_one({"_id": body["payment_id"]})
    assert transaction["channel"] == "psp_api" and transaction["psp_uuid"] == afrimoney.psp["_id"]
    assert transaction["channel_data"]["json_ext"] == {"channel": "ussd"}
    assert (await gateway.services.policies.get(policy["_id"]))["status"] == 2
    prefix = f"transaction_state transaction={body['payment_id']}"
    changes = [
        record.getMessage() for record in caplog.records if record.getMessage().startswith(prefix)
    ]
    assert [line.split(" reason=")[0].split(" channel=")[1] for line in changes] == [
        "psp_api from=- to=processing",
        "psp_api from=processing to=succeeded",
    ]


@pytest.mark.asyncio
async def test_replay_answers_the_first_outcome(gateway, afrimoney, store) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    _, first = await afrimoney.pay(payment(policy))
    status, again = await afrimoney.pay(payment(policy))
    assert status == 200 and again == first
    assert await store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_a_replay_refused_by_the_unique_index_answers_the_first_outcome(
    gateway, afrimoney, store
) -> None:
    """A payment is not looked up before it is recorded: with its policy idle again (set
    straight in the store), a replay passes every check and the unique index on the
    provider's reference refuses its transaction; the stored payment answers it."""
    policy = await idle_policy(gateway.services, "070707070")
    status, first = await afrimoney.pay(payment(policy))
    assert status == 201
    await store.collection(POLICIES).update_one(
        {"_id": policy["_id"]},
        {"$set": {"status": 1}, "$unset": {"activated_by": "", "effective_date": ""}},
    )
    status, again = await afrimoney.pay(payment(policy))
    assert status == 200 and again == first
    status, body = await afrimoney.pay(payment(policy, json_ext={"channel": "app"}))
    assert status == 409 and body["error"]["code"] == "duplicate_transaction_id"
    assert body["error"]["details"]["payment_id"] == first["payment_id"]
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1
    assert await store.collection(PREMIUMS).count_documents({}) == 1
    assert (await gateway.services.policies.get(policy["_id"]))["status"] == 1


@pytest.mark.asyncio
async def test_a_request_refused_as_policy_not_idle_is_refused_again(
    http, gateway, afrimoney, store
) -> None:
    """Another provider paid the policy first, with the same psp_transaction_id: the
    refusal stored nothing, so the same request is refused the same way (never answered
    with the other provider's payment)."""
    wave = await provider_user(gateway, http, "wave")
    policy = await idle_policy(gateway.services, "070707070")
    status, paid = await wave.pay(payment(policy))
    assert status == 201
    answers = [await afrimoney.pay(payment(policy)) for _ in range(2)]
    for status, body in answers:
        assert status == 409 and body["error"]["code"] == "policy_not_idle"
    assert answers[0][1]["error"] == answers[1][1]["error"]
    transactions = await store.collection(TRANSACTIONS).find({}).to_list(None)
    assert [transaction["_id"] for transaction in transactions] == [paid["payment_id"]]
    assert await store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_conflicting_replay_is_409_and_changes_nothing(gateway, afrimoney, store) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    other = await idle_policy(gateway.services, "080808080")
    _, first = await afrimoney.pay(payment(policy))
    status, body = await afrimoney.pay(payment(other))
    assert status == 409 and body["error"]["code"] == "duplicate_transaction_id"
    assert body["error"]["details"]["payment_id"] == first["payment_id"]
    assert (await gateway.services.policies.get(other["_id"]))["status"] == 1
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_concurrent_identical_requests_make_exactly_one_payment(
    gateway, afrimoney, store
) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    results = await asyncio.gather(*(afrimoney.pay(payment(policy)) for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [201]
    assert len({body["payment_id"] for _, body in results}) == 1
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1
    assert await store.collection(PREMIUMS).count_documents({}) == 1


class PausedLookups:
    """Policy look-ups by token that wait until released, so a request's checks run
    after a concurrent identical request has already paid the policy."""

    def __init__(self, policies) -> None:
        self.policies = policies
        self.waiting, self.release = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str):
        return getattr(self.policies, name)

    async def by_payment_token(self, token: str):
        self.waiting.set()
        await self.release.wait()
        return await self.policies.by_payment_token(token)


@pytest.mark.asyncio
async def test_identical_request_checked_after_the_first_paid_answers_its_outcome(
    gateway, afrimoney, store
) -> None:
    api = gateway.services.psp_api
    paused = PausedLookups(api.policies)
    late = PspApiService(
        api.insurees, paused, api.psps, api.transactions, api.incoming, api.audit, api.clock
    )
    request = PaymentRequestSchema().load(payment(await idle_policy(gateway.services, "070707070")))
    second = asyncio.create_task(late.pay(afrimoney.psp, request, "afrimoney"))
    await paused.waiting.wait()  # it found no payment yet and is checking
    first_status, first = await api.pay(afrimoney.psp, request, "afrimoney")
    paused.release.set()
    second_status, again = await second
    assert (first_status, second_status) == (201, 200) and again["_id"] == first["_id"]
    assert await store.collection(TRANSACTIONS).count_documents({}) == 1


@pytest.mark.asyncio
async def test_concurrent_different_payments_of_one_policy_pay_it_once(
    gateway, afrimoney, store
) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    results = await asyncio.gather(*(afrimoney.pay(payment(policy, f"AFR-{n}")) for n in range(6)))
    assert sorted(status for status, _ in results).count(201) == 1
    assert {body["error"]["code"] for status, body in results if status != 201} <= {
        "payment_in_progress",
        "policy_not_idle",
    }
    assert await store.collection(PREMIUMS).count_documents({}) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"amount": "499.99"}, 400, "amount_too_small"),
        ({"amount": "500.01"}, 400, "amount_too_large"),
        ({"amount": "5,00"}, 400, "invalid_amount"),
        ({"amount": "500.001"}, 400, "invalid_amount"),
        ({"chf_id": "999999"}, 404, "unknown_insuree"),
        (
            {
                "policy": {
                    "token": "guessed-token",
                    "product_code": "BASIC-GMD",
                    "product_name": "Basic cover",
                }
            },
            400,
            "invalid_policy_token",
        ),
        ({"policy_product_code": "GOLD"}, 400, "product_mismatch"),
        ({"policy_product_name": "Gold cover"}, 400, "product_mismatch"),
        ({"amount": 500}, 400, "validation_error"),
        ({"psp_transaction_id": ""}, 400, "validation_error"),
        ({"unexpected": 1}, 400, "validation_error"),
        ({"json_ext": {"blob": "x" * 5000}}, 400, "validation_error"),
    ],
)
async def test_each_check_has_its_own_error(
    gateway, afrimoney, store, change, status, code
) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    body = payment(policy)
    for key, value in change.items():
        if key.startswith("policy_"):
            body["policy"][key.removeprefix("policy_")] = value
        else:
            body[key] = value
    answer_status, answer = await afrimoney.pay(body)
    assert (answer_status, answer["error"]["code"]) == (status, code)
    assert answer["error"]["message"]
    assert await store.collection(TRANSACTIONS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_token_of_another_insurees_policy_is_refused(gateway, afrimoney) -> None:
    mine = await idle_policy(gateway.services, "070707070")
    theirs = await idle_policy(gateway.services, "080808080")
    body = payment(mine)
    body["policy"]["token"] = theirs["payment_token"]
    status, answer = await afrimoney.pay(body)
    assert status == 400 and answer["error"]["code"] == "invalid_policy_token"


@pytest.mark.asyncio
async def test_policy_not_idle_is_409(gateway, afrimoney) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    await gateway.services.policies.update(policy["_id"], {"status": 4})
    status, answer = await afrimoney.pay(payment(policy))
    assert status == 409 and answer["error"]["code"] == "policy_not_idle"


@pytest.mark.asyncio
async def test_provider_in_another_currency_is_refused(http, gateway, afrimoney) -> None:
    kenyan = await provider_user(gateway, http, "mshwari", currency="KES")
    status, answer = await kenyan.pay(payment(await idle_policy(gateway.services, "070707070")))
    assert status == 400 and answer["error"]["code"] == "currency_mismatch"


@pytest.mark.asyncio
async def test_another_provider_may_reuse_a_transaction_id(http, gateway, afrimoney) -> None:
    wave = await provider_user(gateway, http, "wave")
    first = await idle_policy(gateway.services, "1")
    second = await idle_policy(gateway.services, "2")
    assert (await afrimoney.pay(payment(first, "SAME-1")))[0] == 201
    status, body = await wave.pay(payment(second, "SAME-1"))
    assert status == 201 and body["chf_id"] == "2"


def expired_token(username: str) -> str:
    past = datetime.now(UTC) - timedelta(hours=1)
    return jwt.encode(
        {
            "sub": username,
            "role": "psp",
            "typ": "access",
            "iat": int(past.timestamp()),
            "exp": int((past + timedelta(minutes=15)).timestamp()),
        },
        TEST_ENV["GATEWAY_AUTH_JWT_SECRET"],
        algorithm="HS256",
    )


@pytest.mark.asyncio
async def test_authorization_matrix(http, gateway, afrimoney, headers_for, store) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    operator = await headers_for("olga", "operator")
    loner = await headers_for("loner", "psp")
    cases = [
        ({}, 401, "missing_token"),
        (operator, 403, "forbidden"),
        (loner, 403, "not_a_psp"),
        ({"Authorization": f"Bearer {expired_token('afrimoney')}"}, 401, "invalid_token"),
    ]
    endpoints = (
        ("GET", "/api/v1/insurees/070707070/policies", None),
        ("POST", "/api/v1/payments", payment(policy)),
    )

    async def assert_refused(headers, status: int, code: str) -> None:
        for method, path, body in endpoints:
            answer_status, answer = await afrimoney.call(method, path, body, headers)
            assert (answer_status, answer["error"]["code"]) == (status, code), (path, headers)

    for headers, status, code in cases:
        await assert_refused(headers, status, code)
    await gateway.services.psps.update(afrimoney.psp["_id"], {"active": False})
    await assert_refused(afrimoney.headers, 403, "psp_inactive")
    await gateway.services.psps.update(afrimoney.psp["_id"], {"active": True})
    await store.collection(USERS).update_one({"username": "afrimoney"}, {"$set": {"active": False}})
    await assert_refused(afrimoney.headers, 401, "invalid_token")
    assert await store.collection(TRANSACTIONS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_rate_limit_answers_429_with_retry_after(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(make_settings(psp_api={"rate_limit_per_minute": 3}))
    provider = await provider_user(gateway, http, "afrimoney")
    await idle_policy(gateway.services, "070707070")
    statuses = [(await provider.verify("070707070"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body = await provider.verify("070707070")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert 1 <= int(provider.last_headers["Retry-After"]) <= 60
    status, body = await provider.pay(
        {
            "chf_id": "070707070",
            "amount": "500.00",
            "psp_transaction_id": "AFR-LIMITED",
            "policy": {},
        }
    )
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert "Retry-After" in provider.last_headers
    assert await gateway.services.store.collection(TRANSACTIONS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_every_request_and_answer_is_audited_without_credentials(
    gateway, afrimoney, store
) -> None:
    policy = await idle_policy(gateway.services, "070707070")
    await afrimoney.verify("070707070")
    _, paid = await afrimoney.pay(payment(policy))
    other = await idle_policy(gateway.services, "080808080")
    await afrimoney.pay(payment(other, amount="1.00", psp_transaction_id="AFR-2"))

    async def three_entries() -> list[dict] | None:
        entries = await store.collection(PSP_AUDIT).find({}).sort("at", 1).to_list(None)
        return entries if len(entries) == 3 else None

    entries = await wait_until(three_entries, "3 audit entries")
    assert [(entry["method"], entry["status"]) for entry in entries] == [
        ("GET", 200),
        ("POST", 201),
        ("POST", 400),
    ]
    assert entries[1]["request"]["psp_transaction_id"] == "AFR-0001"
    assert entries[1]["answer"]["payment_id"] == paid["payment_id"]
    assert entries[2]["reason"] == "amount_too_small"
    assert all(entry["psp_uuid"] == afrimoney.psp["_id"] for entry in entries)
    assert "Bearer" not in str(entries)
    await afrimoney.call(
        "GET",
        "/api/v1/insurees/070707070/policies",
        headers={"Authorization": "Bearer forged.token.value"},
    )
    refused = await wait_until(
        lambda: store.collection(PSP_AUDIT).find_one({"status": 401}),
        "the refused request's audit entry",
    )
    assert refused["psp_uuid"] is None and refused["reason"] == "invalid_token"
    assert "forged" not in str(refused)
