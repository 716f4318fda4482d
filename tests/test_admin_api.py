"""Admin endpoints for insurees, products, policies and PSPs over HTTP."""

import pytest
import pytest_asyncio

PIN = "4321"


@pytest_asyncio.fixture
async def admin(headers_for) -> dict[str, str]:
    return await headers_for("root", "admin")


async def call(http, gateway, method: str, path: str, headers: dict, body=None,
               params=None) -> tuple[int, dict]:
    async with http.request(method, gateway.url + path, json=body, headers=headers,
                            params=params) as answer:
        return answer.status, await answer.json()


async def seed(http, gateway, admin) -> dict:
    await call(http, gateway, "POST", "/api/v1/insurees", admin,
               {"chf_id": "070707070", "first_name": "Awa", "last_name": "Jallow",
                "phone": "2207000000", "wallet": "5811724c"})
    await call(http, gateway, "POST", "/api/v1/products", admin,
               {"code": "BASIC", "name": "Basic cover", "price": "500.00", "currency": "GMD"})
    _, policy = await call(http, gateway, "POST", "/api/v1/policies", admin,
                           {"chf_id": "070707070", "product_code": "BASIC",
                            "start_date": "2026-01-01"})
    return policy


@pytest.mark.asyncio
async def test_policy_defaults_to_the_product_price_and_is_idle(http, gateway, admin) -> None:
    policy = await seed(http, gateway, admin)
    assert policy["amount"] == "500.00" and policy["currency"] == "GMD"
    assert policy["status"] == 1 and policy["product_name"] == "Basic cover"
    assert policy["start_date"] == "2026-01-01" and policy["effective_date"] is None
    status, listed = await call(http, gateway, "GET", "/api/v1/policies", admin,
                                params={"chf_id": "070707070", "status": "1"})
    assert status == 200 and [item["uuid"] for item in listed["items"]] == [policy["uuid"]]
    status, none = await call(http, gateway, "GET", "/api/v1/policies", admin,
                              params={"status": "2"})
    assert none["items"] == [] and none["total"] == 0


@pytest.mark.asyncio
async def test_operators_read_but_only_admins_write(http, gateway, admin,
                                                    operator_headers) -> None:
    await seed(http, gateway, admin)
    status, _ = await call(http, gateway, "GET", "/api/v1/insurees/070707070",
                           operator_headers)
    assert status == 200
    status, body = await call(http, gateway, "POST", "/api/v1/insurees", operator_headers,
                              {"chf_id": "1", "first_name": "A", "last_name": "B"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = await call(http, gateway, "PATCH", "/api/v1/insurees/070707070",
                           operator_headers, {"phone": "1"})
    assert status == 403


@pytest.mark.asyncio
async def test_duplicate_insuree_is_409(http, gateway, admin) -> None:
    await seed(http, gateway, admin)
    status, body = await call(http, gateway, "POST", "/api/v1/insurees", admin,
                              {"chf_id": "070707070", "first_name": "X", "last_name": "Y"})
    assert status == 409 and body["error"]["code"] == "insuree_exists"


@pytest.mark.asyncio
async def test_policy_for_unknown_insuree_or_product_is_404(http, gateway, admin) -> None:
    await seed(http, gateway, admin)
    status, body = await call(http, gateway, "POST", "/api/v1/policies", admin,
                              {"chf_id": "999", "product_code": "BASIC",
                               "start_date": "2026-01-01"})
    assert status == 404 and body["error"]["code"] == "unknown_insuree"
    status, body = await call(http, gateway, "POST", "/api/v1/policies", admin,
                              {"chf_id": "070707070", "product_code": "GOLD",
                               "start_date": "2026-01-01"})
    assert status == 404 and body["error"]["code"] == "unknown_product"


@pytest.mark.asyncio
async def test_update_changes_only_the_given_fields(http, gateway, admin) -> None:
    policy = await seed(http, gateway, admin)
    status, updated = await call(http, gateway, "PATCH", f"/api/v1/policies/{policy['uuid']}",
                                 admin, {"amount": "450.5", "status": 4})
    assert status == 200
    assert (updated["amount"], updated["status"]) == ("450.50", 4)
    assert updated["start_date"] == "2026-01-01"
    status, body = await call(http, gateway, "PATCH", f"/api/v1/policies/{policy['uuid']}",
                              admin, {})
    assert status == 400 and body["error"]["code"] == "validation_error"


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "field"), [
    ({"chf_id": "07a", "first_name": "A", "last_name": "B"}, "chf_id"),
    ({"chf_id": "1", "first_name": "", "last_name": "B"}, "first_name"),
    ({"chf_id": "1", "first_name": "A", "last_name": "B", "pin": "1"}, "pin"),
])
async def test_invalid_insuree_fields_are_named(http, gateway, admin, body, field) -> None:
    status, answer = await call(http, gateway, "POST", "/api/v1/insurees", admin, body)
    assert status == 400 and field in answer["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_product_price_with_too_many_decimals_is_refused(http, gateway, admin) -> None:
    status, body = await call(http, gateway, "POST", "/api/v1/products", admin,
                              {"code": "X", "name": "X", "price": "1.005", "currency": "GMD"})
    assert status == 400 and "price" in body["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_psp_pin_is_encrypted_at_rest_and_never_returned(http, gateway, admin,
                                                               store) -> None:
    status, psp = await call(http, gateway, "POST", "/api/v1/psps", admin,
                             {"name": "Qmoney", "kind": "qmoney", "account": "14001502",
                              "currency": "GMD", "pin": PIN})
    assert status == 201
    assert "pin" not in psp and "pin_encrypted" not in psp and psp["has_pin"] is True
    stored = await store.collection("psps").find_one({"_id": psp["uuid"]})
    assert PIN not in str(stored)
    assert gateway.services.psps.merchant_pin(stored) == PIN
    _, listed = await call(http, gateway, "GET", "/api/v1/psps", admin)
    assert PIN not in str(listed) and "pin_encrypted" not in str(listed)


@pytest.mark.asyncio
async def test_qmoney_psp_without_a_pin_is_refused(http, gateway, admin) -> None:
    status, body = await call(http, gateway, "POST", "/api/v1/psps", admin,
                              {"name": "Q", "kind": "qmoney", "account": "1",
                               "currency": "GMD"})
    assert status == 400 and "pin" in body["error"]["details"]["fields"]


@pytest.mark.asyncio
async def test_psp_user_must_have_the_psp_role(http, gateway, admin, headers_for) -> None:
    await headers_for("afrimoney", "psp")
    body = {"name": "Afrimoney", "kind": "external", "account": "A1", "currency": "GMD",
            "is_external_api": True}
    status, answer = await call(http, gateway, "POST", "/api/v1/psps", admin,
                                {**body, "username": "root"})
    assert status == 400 and "username" in answer["error"]["details"]["fields"]
    status, psp = await call(http, gateway, "POST", "/api/v1/psps", admin,
                             {**body, "username": "afrimoney"})
    assert status == 201 and psp["username"] == "afrimoney"
    status, answer = await call(http, gateway, "POST", "/api/v1/psps", admin,
                                {**body, "name": "Other", "username": "afrimoney"})
    assert status == 409 and answer["error"]["code"] == "psp_exists"
