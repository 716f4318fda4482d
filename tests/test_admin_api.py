"""Admin endpoints for insurees, products, policies and PSPs over HTTP."""

import pytest
import pytest_asyncio

from support import PSPS, Product, idle_policy_over_api, request_json

PIN = "4321"
BASIC = Product("BASIC", "500.00", "GMD")


@pytest_asyncio.fixture
async def admin(headers_for) -> dict[str, str]:
    return await headers_for("root", "admin")


async def seed(http, gateway, admin) -> dict:
    return await idle_policy_over_api(
        http, gateway.url, admin, product=BASIC, phone="2207000000", wallet="5811724c"
    )


@pytest.mark.asyncio
async def test_policy_defaults_to_the_product_price_and_is_idle(http, gateway, admin) -> None:
    policy = await seed(http, gateway, admin)
    assert policy["amount"] == "500.00" and policy["currency"] == "GMD"
    assert policy["status"] == 1 and policy["product_name"] == "Basic cover"
    assert policy["start_date"] == "2026-01-01" and policy["effective_date"] is None
    status, listed = await request_json(
        http,
        "GET",
        f"{gateway.url}/api/v1/policies",
        headers=admin,
        params={"chf_id": "070707070", "status": "1"},
    )
    assert status == 200 and [item["uuid"] for item in listed["items"]] == [policy["uuid"]]
    status, none = await request_json(
        http, "GET", f"{gateway.url}/api/v1/policies", headers=admin, params={"status": "2"}
    )
    assert none["items"] == [] and none["total"] == 0


@pytest.mark.asyncio
async def test_operators_read_but_only_admins_write(http, gateway, admin, operator_headers) -> None:
    await seed(http, gateway, admin)
    status, _ = await request_json(
        http, "GET", f"{gateway.url}/api/v1/insurees/070707070", headers=operator_headers
    )
    assert status == 200
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/insurees",
        {"chf_id": "1", "first_name": "A", "last_name": "B"},
        headers=operator_headers,
    )
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await request_json(
        http,
        "PATCH",
        f"{gateway.url}/api/v1/insurees/070707070",
        {"phone": "1"},
        headers=operator_headers,
    )
    assert status == 403


@pytest.mark.asyncio
async def test_duplicate_insuree_is_409(http, gateway, admin) -> None:
    await seed(http, gateway, admin)
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/insurees",
        {"chf_id": "070707070", "first_name": "X", "last_name": "Y"},
        headers=admin,
    )
    assert status == 409 and body["error"]["code"] == "insuree_exists"


@pytest.mark.asyncio
async def test_policy_for_unknown_insuree_or_product_is_404(http, gateway, admin) -> None:
    await seed(http, gateway, admin)
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/policies",
        {"chf_id": "999", "product_code": "BASIC", "start_date": "2026-01-01"},
        headers=admin,
    )
    assert status == 404 and body["error"]["code"] == "unknown_insuree"
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/policies",
        {"chf_id": "070707070", "product_code": "GOLD", "start_date": "2026-01-01"},
        headers=admin,
    )
    assert status == 404 and body["error"]["code"] == "unknown_product"


@pytest.mark.asyncio
async def test_update_changes_only_the_given_fields(http, gateway, admin) -> None:
    policy = await seed(http, gateway, admin)
    url = f"{gateway.url}/api/v1/policies/{policy['uuid']}"
    status, updated = await request_json(
        http, "PATCH", url, {"amount": "450.5", "status": 4}, headers=admin
    )
    assert status == 200
    assert (updated["amount"], updated["status"]) == ("450.50", 4)
    assert updated["start_date"] == "2026-01-01"
    status, body = await request_json(http, "PATCH", url, {}, headers=admin)
    assert status == 400 and body["error"]["code"] == "validation_error"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"chf_id": "07a", "first_name": "A", "last_name": "B"}, "chf_id"),
        ({"chf_id": "1", "first_name": "", "last_name": "B"}, "first_name"),
        ({"chf_id": "1", "first_name": "A", "last_name": "B", "pin": "1"}, "pin"),
    ],
)
async def test_invalid_insuree_fields_are_named(http, gateway, admin, body, field) -> None:
    status, answer = await request_json(
        http, "POST", f"{gateway.url}/api/v1/insurees", body, headers=admin
    )
    assert status == 400 and field in answer["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_product_price_with_too_many_decimals_is_refused(http, gateway, admin) -> None:
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/products",
        {"code": "X", "name": "X", "price": "1.005", "currency": "GMD"},
        headers=admin,
    )
    assert status == 400 and "price" in body["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_psp_pin_is_encrypted_at_rest_and_never_returned(http, gateway, admin, store) -> None:
    status, psp = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/psps",
        {"name": "Qmoney", "kind": "qmoney", "account": "14001502", "currency": "GMD", "pin": PIN},
        headers=admin,
    )
    assert status == 201
    assert "pin" not in psp and "pin_encrypted" not in psp and psp["has_pin"] is True
    stored = await store.collection(PSPS).find_one({"_id": psp["uuid"]})
    assert PIN not in str(stored)
    assert gateway.services.psps.merchant_pin(stored) == PIN
    _, listed = await request_json(http, "GET", f"{gateway.url}/api/v1/psps", headers=admin)
    assert PIN not in str(listed) and "pin_encrypted" not in str(listed)


@pytest.mark.asyncio
async def test_qmoney_psp_without_a_pin_is_refused(http, gateway, admin) -> None:
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/psps",
        {"name": "Q", "kind": "qmoney", "account": "1", "currency": "GMD"},
        headers=admin,
    )
    assert status == 400 and "pin" in body["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_psp_user_must_have_the_psp_role(http, gateway, admin, headers_for) -> None:
    await headers_for("afrimoney", "psp")
    url = f"{gateway.url}/api/v1/psps"
    body = {
        "name": "Afrimoney",
        "kind": "external",
        "account": "A1",
        "currency": "GMD",
        "is_external_api": True,
    }
    status, answer = await request_json(
        http, "POST", url, {**body, "username": "root"}, headers=admin
    )
    assert status == 400 and "username" in answer["error"]["details"]["fields"]
    status, psp = await request_json(
        http, "POST", url, {**body, "username": "afrimoney"}, headers=admin
    )
    assert status == 201 and psp["username"] == "afrimoney"
    status, answer = await request_json(
        http, "POST", url, {**body, "name": "Other", "username": "afrimoney"}, headers=admin
    )
    assert status == 409 and answer["error"]["code"] == "psp_exists"
