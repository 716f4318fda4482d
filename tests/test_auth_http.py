import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import pytest_asyncio

from server.startup.runtime import Gateway

from support import USERS, create_user, request_json

SECRET = "test-only-jwt-secret-of-at-least-32-chars"


async def get_payments(http, gateway: Gateway, token: str) -> tuple[int, dict]:
    return await request_json(http, "GET", f"{gateway.url}/api/v1/c2b/payments", token=token)


@pytest_asyncio.fixture
async def operator(gateway: Gateway) -> str:
    await create_user(gateway.services, "olga", "operator")
    return "olga"


@pytest.mark.asyncio
async def test_token_pair_is_issued_for_valid_credentials(http, gateway, operator) -> None:
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": "olga", "password": "olga-password"},
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 15 * 60
    claims = jwt.decode(body["access_token"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "olga" and claims["role"] == "operator"
    assert {"exp", "iat"} <= set(claims)
    status, _ = await get_payments(http, gateway, body["access_token"])
    assert status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("username", "password"), [("olga", "wrong-password"), ("nobody", "olga-password")]
)
async def test_wrong_password_or_unknown_user_is_401(
    http, gateway, operator, username, password
) -> None:
    status, body = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": username, "password": password},
    )
    assert status == 401
    assert body["error"]["code"] == "invalid_credentials"
    assert body["error"]["message"] == "invalid username or password"


@pytest.mark.asyncio
async def test_refresh_token_gives_a_new_pair_but_is_not_an_access_token(
    http, gateway, operator
) -> None:
    _, pair = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": "olga", "password": "olga-password"},
    )
    status, _ = await get_payments(http, gateway, pair["refresh_token"])
    assert status == 401
    status, fresh = await request_json(
        http, "POST", f"{gateway.url}/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]}
    )
    assert status == 200
    assert (await get_payments(http, gateway, fresh["access_token"]))[0] == 200
    status, body = await request_json(
        http, "POST", f"{gateway.url}/api/v1/auth/refresh", {"refresh_token": pair["access_token"]}
    )
    assert status == 401 and body["error"]["code"] == "invalid_token"


def forged(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": "olga",
        "role": "operator",
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm)


def unsigned(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(datetime.now(UTC).timestamp())
    return (
        part({"alg": "none", "typ": "JWT"})
        + "."
        + part(
            {
                "sub": "olga",
                "role": "admin",
                "typ": "access",
                "iat": now,
                "exp": now + 300,
                **claims,
            }
        )
        + "."
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token",
    [
        forged({"exp": int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())}),
        forged({}, key="another-secret-that-is-also-long-enough"),
        forged({"role": "admin"})[:-4] + "AAAA",
        unsigned({}),
        forged({"sub": "nobody"}),
        forged({"role": "admin"}),  # role claim differs from the stored user's role
        "not-a-jwt",
    ],
)
async def test_expired_tampered_or_unsigned_tokens_are_401(http, gateway, operator, token) -> None:
    status, body = await get_payments(http, gateway, token)
    assert status == 401
    assert body["error"]["code"] == "invalid_token"


@pytest.mark.asyncio
async def test_missing_token_is_401(http, gateway) -> None:
    async with http.get(f"{gateway.url}/api/v1/c2b/payments") as answer:
        assert answer.status == 401
        assert (await answer.json())["error"]["code"] == "missing_token"


@pytest.mark.asyncio
async def test_wrong_role_is_403(http, gateway, headers_for) -> None:
    headers = await headers_for("afri", "psp")
    async with http.get(f"{gateway.url}/api/v1/c2b/payments", headers=headers) as answer:
        assert answer.status == 403
        assert (await answer.json())["error"]["code"] == "forbidden"


@pytest.mark.asyncio
async def test_inactive_user_loses_access_immediately(http, gateway, operator) -> None:
    _, pair = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": "olga", "password": "olga-password"},
    )
    await gateway.services.store.collection(USERS).update_one(
        {"username": "olga"}, {"$set": {"active": False}}
    )
    assert (await get_payments(http, gateway, pair["access_token"]))[0] == 401
    status, _ = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": "olga", "password": "olga-password"},
    )
    assert status == 401
