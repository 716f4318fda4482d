"""Hostile JSON and paths get the documented 4xx, never a 500: JSON nested thousands
deep (Python's parser recurses), numbers past Python's 4,300-digit conversion limit,
NaN and Infinity, and NUL bytes in the paths of the page files."""

from __future__ import annotations

import pytest

from support import external_psp

DEEP_ARRAY = b"[" * 2000 + b"]" * 2000
DEEP_OBJECT = b'{"a": ' * 2000 + b"1" + b"}" * 2000
NESTED_33 = b'{"username": ' + b"[" * 32 + b"]" * 32 + b', "password": "x"}'
HUGE_INTEGER = b'{"username": ' + b"9" * 5000 + b', "password": "x"}'
HOSTILE = {
    "nested 2,000 deep (arrays)": (DEEP_ARRAY, "request body is nested deeper than 32 levels"),
    "nested 2,000 deep (objects)": (DEEP_OBJECT, "request body is nested deeper than 32 levels"),
    "nested 33 deep": (NESTED_33, "request body is nested deeper than 32 levels"),
    "5,000 digits": (HUGE_INTEGER, "request body has NaN, Infinity or a number out of range"),
    "NaN": (b'{"username": NaN}', "request body has NaN, Infinity or a number out of range"),
    "-Infinity": (b'{"a": -Infinity}', "request body has NaN, Infinity or a number out of range"),
    "1e999": (b'{"a": 1e999}', "request body has NaN, Infinity or a number out of range"),
}
JSON = {"Content-Type": "application/json"}


def assert_validation_error(status: int, body: dict, message: str) -> None:
    assert status == 400
    assert body["error"]["code"] == "validation_error"
    assert body["error"]["message"] == message


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/auth/refresh"])
@pytest.mark.parametrize(("body", "message"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_json_without_a_token_is_a_400(http, gateway, path, body, message) -> None:
    async with http.post(gateway.url + path, data=body, headers=JSON) as answer:
        assert_validation_error(answer.status, await answer.json(), message)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("POST", "/api/v1/products", "admin"),
        ("PATCH", "/api/v1/products/BASIC-GMD", "admin"),
        ("POST", "/api/v1/transactions", "operator"),
        ("POST", "/api/v1/payments", "psp"),
        ("POST", "/api/v1/c2b/payments/RKL51ZDR4F/allocate", "operator"),
        ("POST", "/api/v1/c2b/inbox/some-entry/replay", "operator"),
        ("POST", "/api/v1/transactions/some-uuid/process", "operator"),
    ],
)
@pytest.mark.parametrize(("body", "message"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_json_with_a_token_is_a_400(
    http, gateway, headers_for, method, path, role, body, message
) -> None:
    headers = {**await headers_for(role, role), **JSON}
    if role == "psp":  # an active external-API provider of that user
        await external_psp(gateway.services, role, name="Afrimoney", account="A")
    async with http.request(method, gateway.url + path, data=body, headers=headers) as answer:
        assert_validation_error(answer.status, await answer.json(), message)


@pytest.mark.asyncio
async def test_json_nested_32_deep_is_still_read(http, gateway) -> None:
    body = b'{"username": ' + b"[" * 31 + b"]" * 31 + b', "password": "x"}'
    async with http.post(f"{gateway.url}/api/v1/auth/token", data=body, headers=JSON) as answer:
        assert answer.status == 400
        assert (await answer.json())["error"]["message"] == "request body is invalid"


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/%00",
        "/dashboard/static/dashboard.js%00",
        "/dashboard/static/a%00/b.css",
        "/docs/static/%00",
        "/docs/static/swagger-ui.css%00.map",
    ],
)
async def test_a_nul_byte_in_a_file_path_is_a_404(http, gateway, method, path) -> None:
    async with http.request(method, gateway.url + path) as answer:
        assert answer.status == 404
