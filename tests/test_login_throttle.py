"""Failed logins are throttled per username and per source address, in the store."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp
import pytest

from server.auth import passwords, throttle
from server.startup.runtime import Gateway

from support import create_user, make_settings, request_json, wait_until
from systems import ManualClock

LIMITS = {"login_max_failures_per_user": 5, "login_max_failures_per_address": 20}


async def log_in(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    username: str,
    password: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict, str | None]:
    answer = await request_json(
        http,
        "POST",
        f"{gateway.url}/api/v1/auth/token",
        {"username": username, "password": password},
        headers=headers,
    )
    return answer.status, answer.body, answer.headers.get("Retry-After")


async def fail(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    username: str,
    times: int,
    headers: dict[str, str] | None = None,
) -> list[int]:
    return [
        (await log_in(http, gateway, username, "wrong-password", headers))[0] for _ in range(times)
    ]


@pytest.mark.asyncio
async def test_a_user_is_locked_after_five_failures_even_with_the_right_password(
    http, start_gateway_with
) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    await create_user(gateway.services, "olga", "operator")
    assert await fail(http, gateway, "olga", 5) == [401] * 5
    status, body, retry_after = await log_in(http, gateway, "olga", "wrong-password")
    assert status == 429
    assert body["error"]["code"] == "too_many_login_attempts"
    assert retry_after == "60" and body["error"]["details"] == {"retry_after_seconds": 60}
    status, body, retry_after = await log_in(http, gateway, "olga", "olga-password")
    assert status == 429 and body["error"]["code"] == "too_many_login_attempts"
    assert int(retry_after) > 0


@pytest.mark.asyncio
async def test_an_unknown_user_is_throttled_exactly_like_a_known_one(
    http, start_gateway_with
) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    await create_user(gateway.services, "olga", "operator")
    answers = {}
    for username in ("olga", "nobody"):
        answers[username] = [
            await log_in(http, gateway, username, "wrong-password") for _ in range(6)
        ]
    assert answers["olga"] == answers["nobody"]
    assert [status for status, _, _ in answers["nobody"]] == [401] * 5 + [429]


@pytest.mark.asyncio
async def test_a_throttled_login_checks_no_password(http, start_gateway_with, monkeypatch) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    checks = []
    real_verify = passwords.verify_password

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checks.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting_verify)
    assert await fail(http, gateway, "olga", 8) == [401] * 5 + [429] * 3
    assert len(checks) == 5


@pytest.mark.asyncio
async def test_a_successful_login_clears_the_users_failures(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    await create_user(gateway.services, "olga", "operator")
    assert await fail(http, gateway, "olga", 4) == [401] * 4
    assert (await log_in(http, gateway, "olga", "olga-password"))[0] == 200
    assert await fail(http, gateway, "olga", 6) == [401] * 5 + [429]


@pytest.mark.asyncio
async def test_the_lock_doubles_with_each_failure_past_the_limit(http, start_gateway_with) -> None:
    clock = ManualClock()
    gateway = await start_gateway_with(make_settings(auth=LIMITS), clock=clock)
    await create_user(gateway.services, "olga", "operator")
    await fail(http, gateway, "olga", 5)
    waits = []
    for _ in range(3):
        status, _, retry_after = await log_in(http, gateway, "olga", "wrong-password")
        assert status == 429
        waits.append(int(retry_after))
        clock.offset += timedelta(seconds=int(retry_after) + 1)
        assert (await log_in(http, gateway, "olga", "wrong-password"))[0] == 401
    assert waits == [60, 120, 240]
    clock.offset += timedelta(minutes=9)
    assert (await log_in(http, gateway, "olga", "olga-password"))[0] == 200


@pytest.mark.asyncio
async def test_failures_are_forgotten_after_the_window(http, start_gateway_with) -> None:
    clock = ManualClock()
    gateway = await start_gateway_with(make_settings(auth=LIMITS), clock=clock)
    assert await fail(http, gateway, "olga", 4) == [401] * 4
    clock.offset += timedelta(minutes=16)
    assert await fail(http, gateway, "olga", 5) == [401] * 5


@pytest.mark.asyncio
async def test_concurrent_guesses_get_no_more_password_checks_than_the_limit(
    http, start_gateway_with
) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    statuses = await asyncio.gather(
        *(log_in(http, gateway, "olga", f"guess-{number}") for number in range(15))
    )
    assert sorted(status for status, _, _ in statuses) == [401] * 5 + [429] * 10


@pytest.mark.asyncio
async def test_an_address_is_locked_after_its_failures_whatever_the_usernames(
    http, start_gateway_with
) -> None:
    gateway = await start_gateway_with(
        make_settings(auth={"login_max_failures_per_user": 5, "login_max_failures_per_address": 3})
    )
    await create_user(gateway.services, "olga", "operator")
    statuses = [
        (await log_in(http, gateway, f"user-{number}", "wrong-password"))[0] for number in range(3)
    ]
    assert statuses == [401] * 3
    status, body, retry_after = await log_in(http, gateway, "olga", "olga-password")
    assert status == 429 and body["error"]["code"] == "too_many_login_attempts"
    assert retry_after == "60"


@pytest.mark.asyncio
async def test_the_address_is_the_client_named_by_a_trusted_proxy(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(
        make_settings(
            server={"trusted_proxies": ("127.0.0.1",)},
            auth={"login_max_failures_per_user": 5, "login_max_failures_per_address": 2},
        )
    )
    first = {"X-Forwarded-For": "203.0.113.5"}
    second = {"X-Forwarded-For": "203.0.113.6"}
    assert [(await log_in(http, gateway, f"user-{n}", "wrong", first))[0] for n in range(3)] == [
        401,
        401,
        429,
    ]
    assert (await log_in(http, gateway, "user-9", "wrong", second))[0] == 401


@pytest.mark.asyncio
async def test_failures_are_shared_by_every_gateway_on_the_store(http, start_gateway_with) -> None:
    settings = make_settings(auth=LIMITS)
    first, second = await start_gateway_with(settings), await start_gateway_with(settings)
    await create_user(first.services, "olga", "operator")
    assert await fail(http, first, "olga", 3) == [401] * 3
    assert await fail(http, second, "olga", 3) == [401, 401, 429]
    assert (await log_in(http, first, "olga", "olga-password"))[0] == 429


@pytest.mark.asyncio
async def test_refusals_are_counted_and_logged_without_the_password(
    http, start_gateway_with, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.auth")
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    for _ in range(6):
        await log_in(http, gateway, "olga", "Secret-Guess-1234")
    async with http.get(f"{gateway.url}/metrics") as answer:
        metrics = await answer.text()
    assert 'gateway_login_refusals_total{reason="invalid_credentials"} 5.0' in metrics
    assert 'gateway_login_refusals_total{reason="throttled_user"} 1.0' in metrics
    lines = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("login_refused ")
    ]
    assert len(lines) == 6
    assert lines[-1] == 'login_refused reason=throttled_user username="olga" source=127.0.0.1'
    assert "Secret-Guess-1234" not in caplog.text


class NeverAnswering:
    """Password checks that never finish, as when the gateway stops mid-login."""

    def __init__(self) -> None:
        self.waiting = 0

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.waiting += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.asyncio
async def test_a_cancelled_login_gives_its_reserved_checks_back(start_gateway_with) -> None:
    gateway = await start_gateway_with(make_settings(auth=LIMITS))
    auth = gateway.services.auth
    never = NeverAnswering()
    real_passwords, auth.passwords = auth.passwords, never
    cut = [
        asyncio.create_task(auth.login("olga", "olga-password", "203.0.113.5")) for _ in range(5)
    ]
    await wait_until(lambda: never.waiting == 5, "5 logins to reserve checks and wait")
    for task in cut:
        task.cancel()
    await asyncio.gather(*cut, return_exceptions=True)
    auth.passwords = real_passwords
    await create_user(gateway.services, "olga", "operator")
    assert (await auth.login("olga", "olga-password", "203.0.113.5")).access_token


def test_an_ipv6_caller_is_counted_by_its_64() -> None:
    assert throttle.address_key("2001:db8:1:2::7") == throttle.address_key("2001:db8:1:2:ffff::1")
    assert throttle.address_key("2001:db8:1:2::7") == "2001:db8:1:2::/64"
    assert throttle.address_key("2001:db8:1:3::7") != throttle.address_key("2001:db8:1:2::7")
    assert throttle.address_key("203.0.113.5") == "203.0.113.5"


@pytest.mark.asyncio
async def test_failures_from_one_ipv6_64_are_counted_together(http, start_gateway_with) -> None:
    gateway = await start_gateway_with(
        make_settings(
            server={"trusted_proxies": ("127.0.0.1",)},
            auth={"login_max_failures_per_user": 5, "login_max_failures_per_address": 2},
        )
    )
    answers = [
        (
            await log_in(
                http, gateway, f"user-{n}", "wrong", {"X-Forwarded-For": f"2001:db8:1:2::{n + 1}"}
            )
        )[0]
        for n in range(3)
    ]
    assert answers == [401, 401, 429]
