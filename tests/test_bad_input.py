"""Bad input on every endpoint: a clear 4xx in the right format, never a 500, nothing written."""

import json

import pytest

from support import INBOX, PAYMENTS, callback_body

MEGABYTE = b'{"padding": "' + b"x" * (1024 * 1024) + b'"}'

JSON_ENDPOINTS = ["/api/v1/auth/token", "/api/v1/auth/refresh"]
BAD_BODIES = [
    (b"{not json", "request body is not valid JSON"),
    (b"[1, 2]", "request body must be a JSON object"),
    (b'{"username": 5, "password": ["x"]}', "request body is invalid"),
    (b"{}", "request body is invalid"),
    (b'{"username": "a", "password": "b", "admin": true}', "request body is invalid"),
    (b'{"refresh_token": {"$gt": ""}}', "request body is invalid"),
    (b"\xff\xfe", "request body is not valid JSON"),
]


def assert_error_shape(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code


@pytest.mark.asyncio
@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_bad_json_bodies_get_a_400_with_the_error_shape(
    http, gateway, path, body, message
) -> None:
    async with http.post(
        gateway.url + path, data=body, headers={"Content-Type": "application/json"}
    ) as answer:
        assert answer.status == 400
        payload = await answer.json()
    assert_error_shape(payload, "validation_error")
    assert payload["error"]["message"] == message


@pytest.mark.asyncio
async def test_unknown_and_mistyped_fields_are_named(http, gateway) -> None:
    async with http.post(
        f"{gateway.url}/api/v1/auth/token", json={"username": 5, "password": "x", "extra": 1}
    ) as answer:
        fields = (await answer.json())["error"]["details"]["fields"]
    assert set(fields) == {"username", "extra"}


@pytest.mark.asyncio
@pytest.mark.parametrize("path", [*JSON_ENDPOINTS, "/api/v1/c2b/payments"])
async def test_huge_body_is_413(http, gateway, path) -> None:
    async with http.post(gateway.url + path, data=MEGABYTE) as answer:
        assert answer.status == 413
        assert_error_shape(await answer.json(), "payload_too_large")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["validation", "confirmation"])
async def test_huge_callback_is_413_in_daraja_format_and_not_stored(
    http, gateway, store, kind
) -> None:
    async with http.post(f"{gateway.url}/api/v1/c2b/{kind}/test-callback", data=MEGABYTE) as answer:
        assert answer.status == 413
        assert set(await answer.json()) == {"ResultCode", "ResultDesc"}
    assert await store.collection(INBOX).count_documents({}) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/v1/auth/token", "POST"),
        ("DELETE", "/api/v1/auth/refresh", "POST"),
        ("POST", "/api/v1/c2b/payments", "GET"),
        ("PUT", "/api/v1/c2b/payments/RKL51ZDR4F", "GET"),
        ("TRACE", "/api/v1/transactions", "GET, POST"),
        ("DELETE", "/api/v1/insurees/070707070", "GET, PATCH"),
    ],
)
async def test_wrong_method_is_405_with_the_error_shape_and_allow(
    http, gateway, method, path, allowed
) -> None:
    async with http.request(method, gateway.url + path) as answer:
        assert answer.status == 405
        assert answer.headers["Allow"] == allowed
        assert_error_shape(await answer.json(), "method_not_allowed")


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["validation", "confirmation"])
async def test_wrong_method_on_a_callback_is_405_in_daraja_format(http, gateway, kind) -> None:
    async with http.get(f"{gateway.url}/api/v1/c2b/{kind}/test-callback") as answer:
        assert answer.status == 405 and answer.headers["Allow"] == "POST"
        assert set(await answer.json()) == {"ResultCode", "ResultDesc"}


@pytest.mark.asyncio
async def test_unknown_path_is_404_with_the_error_shape(http, gateway) -> None:
    async with http.get(f"{gateway.url}/api/v1/nothing-here") as answer:
        assert answer.status == 404
        assert_error_shape(await answer.json(), "not_found")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "query",
    [
        {"limit": "abc"},
        {"limit": "0"},
        {"limit": "100000"},
        {"offset": "-1"},
        {"from": "yesterday"},
        {"status": "stolen"},
        {"colour": "red"},
        {"needs_review": "maybe"},
    ],
)
async def test_bad_list_parameters_are_400(http, gateway, operator_headers, query) -> None:
    async with http.get(
        f"{gateway.url}/api/v1/c2b/payments", params=query, headers=operator_headers
    ) as answer:
        assert answer.status == 400
        assert_error_shape(await answer.json(), "validation_error")


@pytest.mark.asyncio
async def test_unknown_payment_is_404(http, gateway, operator_headers) -> None:
    async with http.get(
        f"{gateway.url}/api/v1/c2b/payments/NOPE", headers=operator_headers
    ) as answer:
        assert answer.status == 404
        assert_error_shape(await answer.json(), "not_found")


@pytest.mark.asyncio
async def test_callback_with_unknown_fields_is_still_recorded(http, gateway, store) -> None:
    body = {**callback_body(), "NewDarajaField": "x"}
    async with http.post(
        f"{gateway.url}/api/v1/c2b/confirmation/test-callback", data=json.dumps(body)
    ) as answer:
        assert answer.status == 200
    assert await store.collection(PAYMENTS).count_documents({}) == 1
