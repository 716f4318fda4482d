"""Prices, policy values and payments are more than zero, on every path that sets or pays
one; a value of zero already in the store never activates a policy."""

import json
import uuid
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from server.insurance.repository import IDLE, PolicyRepository
from server.kernel.clock import Clock
from server.kernel.errors import ValidationFailed
from server.kernel.money import AmountNotPositive, parse_positive_amount
from server.ledger.repository import PremiumRepository, TransactionRepository
from server.ledger.settlement import Settlement

from support import (
    INBOX,
    PAYMENTS,
    POLICIES,
    PREMIUMS,
    PRODUCTS,
    TRANSACTIONS,
    Product,
    callback_body,
    ensure_insuree,
    ensure_product,
    idle_policy,
    insuree_body,
    policy_body,
    psp_user,
    request_json,
    stored_debit,
    stored_policy,
)

NOT_POSITIVE = ["0", "0.00", "0.0", "-5.00", "-0"]
START = datetime(2026, 1, 1, tzinfo=UTC)
BASIC = Product("BASIC", "500.00", "GMD", "Basic")


@pytest_asyncio.fixture
async def admin(headers_for) -> dict[str, str]:
    return await headers_for("root", "admin")


@pytest_asyncio.fixture
async def provider(http, gateway) -> dict[str, str]:
    """Headers of an active external-API provider settling in GMD."""
    return (await psp_user(http, gateway, "afrimoney")).headers


async def policy_of_5(gateway, currency: str = "GMD") -> dict:
    """An idle policy worth 5.00 in `currency`."""
    return await idle_policy(gateway.services, product=Product("BASIC", "5.00", currency, "Basic"))


def payment(policy: dict, amount: str) -> dict:
    return {
        "chf_id": policy["chf_id"],
        "amount": amount,
        "psp_transaction_id": "AFR-0001",
        "policy": {
            "token": policy["payment_token"],
            "product_code": policy["product_code"],
            "product_name": policy["product_name"],
        },
    }


async def worthless(store, policy: dict) -> dict:
    """A policy whose stored value is 0 (written before the rule held)."""
    await store.collection(POLICIES).update_one({"_id": policy["_id"]}, {"$set": {"value": 0}})
    return {**policy, "value": 0}


async def still_idle(store, policy: dict) -> bool:
    stored = await store.collection(POLICIES).find_one({"_id": policy["_id"]})
    return (
        stored["status"] == IDLE
        and "activated_by" not in stored
        and await store.collection(PREMIUMS).count_documents({}) == 0
    )


def refused_field(status: int, body: dict, field: str) -> bool:
    return (
        status == 400
        and body["error"]["code"] == "validation_error"
        and field in body["error"]["details"]["fields"]
    )


# --- the rule --------------------------------------------------------------


@pytest.mark.parametrize("text", NOT_POSITIVE)
def test_an_amount_of_zero_or_less_is_not_positive(text) -> None:
    with pytest.raises(AmountNotPositive, match="greater than 0"):
        parse_positive_amount(text, "KES")


def test_a_positive_amount_is_parsed_into_minor_units() -> None:
    assert parse_positive_amount("0.01", "KES") == 1
    assert parse_positive_amount("1500", "KES") == 150000


# --- admin API and services ------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("price", NOT_POSITIVE)
async def test_a_product_priced_at_zero_or_less_is_refused(http, gateway, admin, price) -> None:
    products = f"{gateway.url}/api/v1/products"
    status, body = await request_json(
        http,
        "POST",
        products,
        {"code": "FREE", "name": "Free", "price": price, "currency": "GMD"},
        headers=admin,
    )
    assert refused_field(status, body, "price"), body
    await request_json(http, "POST", products, BASIC.body(), headers=admin)
    status, body = await request_json(
        http, "PATCH", f"{products}/BASIC", {"price": price}, headers=admin
    )
    assert refused_field(status, body, "price"), body
    assert (await gateway.services.products.get("BASIC"))["price"] == 50000


@pytest.mark.asyncio
@pytest.mark.parametrize("amount", NOT_POSITIVE)
async def test_a_policy_worth_zero_or_less_is_refused(http, gateway, admin, amount) -> None:
    api = f"{gateway.url}/api/v1"
    await request_json(http, "POST", f"{api}/insurees", insuree_body(), headers=admin)
    await request_json(http, "POST", f"{api}/products", BASIC.body(), headers=admin)
    status, body = await request_json(
        http, "POST", f"{api}/policies", policy_body(product=BASIC, amount=amount), headers=admin
    )
    assert refused_field(status, body, "amount"), body
    _, policy = await request_json(
        http, "POST", f"{api}/policies", policy_body(product=BASIC), headers=admin
    )
    status, body = await request_json(
        http, "PATCH", f"{api}/policies/{policy['uuid']}", {"amount": amount}, headers=admin
    )
    assert refused_field(status, body, "amount"), body
    assert (await gateway.services.policies.get(policy["uuid"]))["value"] == 50000


@pytest.mark.asyncio
async def test_services_refuse_a_zero_price_or_value_without_the_api_schemas(
    gateway, store
) -> None:
    services = gateway.services
    with pytest.raises(ValidationFailed) as refused:
        await services.products.create(
            {"code": "FREE", "name": "Free", "price": "0.00", "currency": "GMD"}
        )
    assert "price" in refused.value.details["fields"]
    await ensure_insuree(services)
    await ensure_product(services, BASIC)
    # A product stored with a price of 0 gives no policy its price.
    await store.collection(PRODUCTS).update_one({"code": "BASIC"}, {"$set": {"price": 0}})
    with pytest.raises(ValidationFailed, match="greater than 0") as refused:
        await services.policies.create(
            {
                "chf_id": "070707070",
                "product_code": "BASIC",
                "start_date": START.date(),
                "status": IDLE,
            }
        )
    assert "amount" in refused.value.details["fields"]
    assert await store.collection(POLICIES).count_documents({}) == 0


# --- payments --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("amount", ["0.00", "0", "-500.00"])
async def test_a_provider_payment_of_zero_or_less_is_refused(
    http, gateway, provider, store, amount
) -> None:
    policy = await worthless(store, await policy_of_5(gateway))
    status, body = await request_json(
        http, "POST", f"{gateway.url}/api/v1/payments", payment(policy, amount), headers=provider
    )
    assert refused_field(status, body, "amount"), body
    assert await still_idle(store, policy)
    assert await store.collection(TRANSACTIONS).count_documents({}) == 0


@pytest.mark.asyncio
async def test_a_policy_worth_zero_cannot_be_paid_by_a_provider(
    http, gateway, provider, store
) -> None:
    policy = await worthless(store, await policy_of_5(gateway))
    status, body = await request_json(
        http, "POST", f"{gateway.url}/api/v1/payments", payment(policy, "5.00"), headers=provider
    )
    assert status == 409 and body["error"]["code"] == "policy_value_not_positive"
    assert await still_idle(store, policy)


@pytest.mark.asyncio
async def test_a_qmoney_debit_of_zero_is_refused_before_any_provider_call(debits, store) -> None:
    policy = await worthless(store, await debits.policy())
    for amount in ("0.00", "0"):
        status, body = await debits.start(policy, amount=amount)
        assert refused_field(status, body, "amount"), body
    assert (await debits.control("GET", "requests"))["items"] == []
    assert await still_idle(store, policy)


@pytest.mark.asyncio
async def test_an_operator_cannot_allocate_a_payment_of_zero(
    http, gateway, store, operator_headers
) -> None:
    policy = await worthless(store, await policy_of_5(gateway, "KES"))
    # A payment of 0 stored unmatched before confirmations of 0 were refused.
    await store.collection(PAYMENTS).insert_one(
        {
            "_id": str(uuid.uuid4()),
            "trans_id": "RKL51ZDR4F",
            "amount": 0,
            "currency": "KES",
            "status": "unmatched",
            "unmatched_reason": "unknown_account",
            "bill_ref": "x",
            "shortcode": "600984",
            "msisdn": "2547 ***** 126",
            "review": [],
        }
    )
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/c2b/payments/RKL51ZDR4F/allocate",
        {"policy_uuid": policy["_id"], "note": "typed wrongly"},
        headers=operator_headers,
    )
    assert status == 400 and body["error"]["code"] == "amount_not_positive", body
    assert await still_idle(store, policy)


@pytest.mark.asyncio
async def test_a_confirmation_of_zero_is_kept_but_never_settles(http, gateway, store) -> None:
    policy = await worthless(store, await policy_of_5(gateway, "KES"))
    secret = gateway.settings.c2b.callback_secret
    async with http.post(
        f"{gateway.url}/api/v1/c2b/confirmation/{secret}",
        data=json.dumps(callback_body(TransAmount="0.00")),
        headers={"Content-Type": "application/json"},
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["ResultCode"] == 0
    [entry] = await store.collection(INBOX).find({}).to_list(None)
    assert entry["status"] == "needs_review"
    assert await store.collection(PAYMENTS).count_documents({}) == 0
    assert await still_idle(store, policy)


# --- settlement, the last line ---------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("amount", "value"), [(0, 0), (0, 50000), (50000, 0)])
async def test_settlement_never_activates_a_policy_for_zero(store, amount, value) -> None:
    policy = await stored_policy(store, value=value)
    await stored_debit(store, policy, amount=amount, paid_at=START)
    settlement = Settlement(
        TransactionRepository(store), PremiumRepository(store), PolicyRepository(store), Clock()
    )
    assert await settlement.settle_pending() == 1
    [transaction] = await store.collection(TRANSACTIONS).find({}).to_list(None)
    assert transaction["settlement"]["status"] == "refused"
    assert transaction["settlement"]["reason"] == "amount_not_positive"
    assert await still_idle(store, policy)
