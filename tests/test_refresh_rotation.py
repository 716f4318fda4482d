"""Refresh tokens rotate on every use, a reused one revokes its session, logout revokes
it, and all of it is kept in the store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import jwt
import pytest
import pytest_asyncio

from server.startup.runtime import Gateway

from support import REFRESH_TOKENS, TEST_ENV, create_user, request_json

SECRET = TEST_ENV["GATEWAY_AUTH_JWT_SECRET"]


async def post(
    http: aiohttp.ClientSession, gateway: Gateway, path: str, body: object
) -> tuple[int, dict | None]:
    return await request_json(http, "POST", f"{gateway.url}/api/v1/auth/{path}", body)


async def log_in(http: aiohttp.ClientSession, gateway: Gateway) -> dict:
    status, pair = await post(
        http, gateway, "token", {"username": "olga", "password": "olga-password"}
    )
    assert status == 200
    return pair


async def refresh(
    http: aiohttp.ClientSession, gateway: Gateway, token: str
) -> tuple[int, dict | None]:
    return await post(http, gateway, "refresh", {"refresh_token": token})


async def payments_status(http: aiohttp.ClientSession, gateway: Gateway, access: str) -> int:
    return (
        await request_json(http, "GET", f"{gateway.url}/api/v1/c2b/payments", token=access)
    ).status


@pytest_asyncio.fixture
async def olga(gateway: Gateway) -> None:
    await create_user(gateway.services, "olga", "operator")


@pytest.mark.asyncio
async def test_a_used_refresh_token_is_refused(http, gateway, olga) -> None:
    first = await log_in(http, gateway)
    status, second = await refresh(http, gateway, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    status, body = await refresh(http, gateway, first["refresh_token"])
    assert status == 401 and body["error"]["code"] == "invalid_token"
    assert await payments_status(http, gateway, second["access_token"]) == 200


@pytest.mark.asyncio
async def test_reusing_a_rotated_token_revokes_its_whole_family(http, gateway, olga) -> None:
    first = await log_in(http, gateway)
    other_session = await log_in(http, gateway)
    _, second = await refresh(http, gateway, first["refresh_token"])
    _, third = await refresh(http, gateway, second["refresh_token"])
    status, body = await refresh(http, gateway, first["refresh_token"])
    assert status == 401
    assert body["error"]["message"] == "refresh token was already used; its session is revoked"
    status, body = await refresh(http, gateway, third["refresh_token"])
    assert status == 401 and body["error"]["message"] == "refresh token has been revoked"
    assert (await refresh(http, gateway, other_session["refresh_token"]))[0] == 200


@pytest.mark.asyncio
async def test_concurrent_refreshes_with_one_token_give_at_most_one_pair_and_revoke_it(
    http, gateway, olga
) -> None:
    """Only one refresh can claim the token; the others are reuse, which revokes the
    family. Whether the winner's answer leaves before a reuse revokes it depends on
    timing, so the test asks what holds either way: at most one new pair, and no token
    of the family is good afterwards."""
    pair = await log_in(http, gateway)
    answers = await asyncio.gather(
        *(refresh(http, gateway, pair["refresh_token"]) for _ in range(6))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses in ([200] + [401] * 5, [401] * 6)
    for status, body in answers:
        if status == 200:
            assert (await refresh(http, gateway, body["refresh_token"]))[0] == 401


@pytest.mark.asyncio
async def test_logout_revokes_the_session_with_a_204_and_no_body(http, gateway, olga) -> None:
    first = await log_in(http, gateway)
    _, second = await refresh(http, gateway, first["refresh_token"])
    assert await post(http, gateway, "logout", {"refresh_token": second["refresh_token"]}) == (
        204,
        None,
    )
    status, body = await refresh(http, gateway, second["refresh_token"])
    assert status == 401 and body["error"]["message"] == "refresh token has been revoked"
    assert await post(http, gateway, "logout", {"refresh_token": first["refresh_token"]}) == (
        204,
        None,
    )
    # Access tokens are not recorded: one already issued works until it expires.
    assert await payments_status(http, gateway, second["access_token"]) == 200


def signed_refresh_token(**claims: object) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "olga",
        "role": "operator",
        "typ": "refresh",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        **claims,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        signed_refresh_token(),  # no id, no family
        signed_refresh_token(jti=uuid.uuid4().hex, fam=uuid.uuid4().hex),  # never issued
        signed_refresh_token(typ="access"),
    ],
    ids=["garbage", "without-id", "never-issued", "access-token"],
)
async def test_logout_and_refresh_refuse_an_invalid_or_unknown_token(
    http, gateway, olga, token
) -> None:
    for path in ("logout", "refresh"):
        status, body = await post(http, gateway, path, {"refresh_token": token})
        assert status == 401
        assert set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == "invalid_token"


@pytest.mark.asyncio
async def test_logout_takes_only_the_refresh_token(http, gateway, olga) -> None:
    pair = await log_in(http, gateway)
    status, body = await post(
        http, gateway, "logout", {"refresh_token": pair["refresh_token"], "all": True}
    )
    assert status == 400 and body["error"]["code"] == "validation_error"


@pytest.mark.asyncio
async def test_revocations_hold_for_another_gateway_and_after_a_restart(
    http, gateway, olga, start_gateway_with
) -> None:
    first = await log_in(http, gateway)
    _, second = await refresh(http, gateway, first["refresh_token"])
    other = await start_gateway_with()
    status, _ = await refresh(http, other, first["refresh_token"])
    assert status == 401
    await gateway.stop()
    restarted = await start_gateway_with()
    assert (await refresh(http, restarted, second["refresh_token"]))[0] == 401


@pytest.mark.asyncio
async def test_a_refresh_token_record_expires_with_its_token(http, gateway, olga, store) -> None:
    pair = await log_in(http, gateway)
    claims = jwt.decode(pair["refresh_token"], SECRET, algorithms=["HS256"])
    record = await store.collection(REFRESH_TOKENS).find_one({"jti": claims["jti"]})
    assert record["family"] == claims["fam"] and record["username"] == "olga"
    assert int(record["expires_at"].timestamp()) == claims["exp"]
    indexes = await store.collection(REFRESH_TOKENS).index_information()
    keys = {tuple(index["key"]): index for index in indexes.values()}
    assert keys[(("jti", 1),)]["unique"] is True
    assert keys[(("expires_at", 1),)]["expireAfterSeconds"] == 0
