"""Our own JSON APIs take a body only as application/json (415 otherwise), so no HTML
form from another site can post to them; the Daraja callbacks take any type."""

from __future__ import annotations

import json

import aiohttp
import pytest

from support import PAYMENTS, callback_body, create_user

LOGIN = json.dumps({"username": "nobody", "password": "wrong"}).encode()
NOT_JSON = [
    "application/x-www-form-urlencoded",
    "text/plain",
    "text/plain; charset=utf-8",
    "application/jsonp",
    None,
]


def assert_unsupported(status: int, body: dict) -> None:
    assert status == 415
    assert set(body) == {"error"}
    assert body["error"]["code"] == "unsupported_media_type"


@pytest.mark.asyncio
@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("path", ["/api/v1/auth/token", "/api/v1/auth/refresh"])
async def test_a_body_sent_as_another_type_than_json_is_415(
    http, gateway, path, content_type
) -> None:
    # aiohttp sends raw bytes as application/octet-stream unless told otherwise.
    headers = {"Content-Type": content_type} if content_type else {}
    async with http.post(gateway.url + path, data=LOGIN, headers=headers) as answer:
        assert_unsupported(answer.status, await answer.json())


@pytest.mark.asyncio
@pytest.mark.parametrize("multipart", [False, True])
async def test_a_form_posted_to_the_login_is_415(http, gateway, multipart) -> None:
    await create_user(gateway.services, "clerk", "operator")
    form = aiohttp.FormData(
        {"username": "clerk", "password": "clerk-password"}, default_to_multipart=multipart
    )
    async with http.post(f"{gateway.url}/api/v1/auth/token", data=form) as answer:
        assert answer.request_info.headers["Content-Type"].startswith(
            "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
        )
        assert_unsupported(answer.status, await answer.json())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/products"),
        ("PATCH", "/api/v1/products/BASIC-GMD"),
        ("POST", "/api/v1/transactions"),
        ("POST", "/api/v1/c2b/payments/RKL51ZDR4F/allocate"),
    ],
)
async def test_authenticated_json_endpoints_refuse_other_types(
    http, gateway, headers_for, method, path
) -> None:
    headers = {**await headers_for("admin", "admin"), "Content-Type": "text/plain"}
    async with http.request(
        method, gateway.url + path, data=b'{"name": "x"}', headers=headers
    ) as answer:
        assert_unsupported(answer.status, await answer.json())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        " application/json ; charset=utf-8",
    ],
)
async def test_json_with_or_without_parameters_in_any_case_is_read(
    http, gateway, content_type
) -> None:
    async with http.post(
        f"{gateway.url}/api/v1/auth/token", data=LOGIN, headers={"Content-Type": content_type}
    ) as answer:
        assert answer.status == 401


@pytest.mark.asyncio
async def test_no_body_and_no_type_is_a_400_not_a_415(http, gateway) -> None:
    async with http.post(f"{gateway.url}/api/v1/auth/token") as answer:
        assert answer.status == 400
        assert (await answer.json())["error"]["code"] == "validation_error"


@pytest.mark.asyncio
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_daraja_callbacks_take_any_content_type(http, gateway, store, content_type) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with http.post(
        f"{gateway.url}/api/v1/c2b/confirmation/test-callback",
        data=json.dumps(callback_body()),
        headers=headers,
    ) as answer:
        assert answer.status == 200
        assert (await answer.json())["ResultCode"] == 0
    assert await store.collection(PAYMENTS).count_documents({}) == 1
