"""The Qmoney OTP debit simulator on real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from simulators.qmoney import ENGINE as QMONEY_ENGINE
from simulators.qmoney import QmoneySimSettings, QmoneySimulator

from support import simulator_command, wait_until

CHANNEL, CHANNEL_SECRET = "sandbox-channel", "sandbox-channel-secret"
USERNAME, PASSWORD = "14001502", "sandbox-qmoney"
MERCHANT, PIN = "14001502", "1234"
WALLET = "5811724c"

StartSim = Callable[..., Awaitable[str]]


def basic(login: str, password: str) -> dict[str, str]:
    """HTTP Basic header (aiohttp.BasicAuth is deprecated in recent aiohttp)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login_body(**changes: Any) -> dict[str, Any]:
    """A login body; a change to None removes that field."""
    body = {"grantType": "password", "username": USERNAME, "password": PASSWORD, **changes}
    return {name: value for name, value in body.items() if value is not None}


def debit_body(**changes: Any) -> dict[str, Any]:
    """A getMoney body as PROTOCOLS.md shows it; a change to None removes that field."""
    data = {
        "fromUser": {"userIdentifier": WALLET},
        "toUser": {"userIdentifier": MERCHANT},
        "serviceId": "MOBILE_MONEY",
        "productId": "NHIA_GETMONEY",
        "remarks": "add",
        "payment": [{"amount": 5.00}],
        "transactionPin": PIN,
        **changes,
    }
    return {"data": {name: value for name, value in data.items() if value is not None}}


@pytest_asyncio.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators (settings overridable); all are stopped afterwards."""
    started: list[QmoneySimulator] = []

    async def start(**overrides: Any) -> str:
        simulator = QmoneySimulator(QmoneySimSettings(**overrides))
        started.append(simulator)
        return await simulator.start()

    yield start
    for simulator in started:
        await simulator.stop()


@pytest_asyncio.fixture
async def sim(start_sim: StartSim) -> str:
    return await start_sim()


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """POST a JSON value (or, for a str body, that raw JSON text); the status and JSON answer."""
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json", **(headers or {})}
    async with http.post(url, data=data, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def put(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.put(url, json=body) as response:
        return response.status, await response.json()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


async def login_data(http: aiohttp.ClientSession, sim: str, **changes: Any) -> Any:
    """The data of a login that must succeed."""
    headers = basic(CHANNEL, CHANNEL_SECRET)
    status, answer = await post(http, f"{sim}/login", login_body(**changes), headers)
    assert (status, answer["responseCode"]) == (200, "1"), answer
    return answer["data"]


async def login(http: aiohttp.ClientSession, sim: str) -> str:
    return (await login_data(http, sim))["access_token"]


async def get_money(http: aiohttp.ClientSession, sim: str, token: str, **changes: Any) -> str:
    """Start a debit that must succeed; its transactionId."""
    status, answer = await post(http, f"{sim}/getMoney", debit_body(**changes), bearer(token))
    assert (status, answer["responseCode"]) == (200, "1"), answer
    return answer["data"]["transactionId"]


async def verify(
    http: aiohttp.ClientSession, sim: str, token: str, transaction_id: str, otp: str
) -> Any:
    body = {"data": {"otp": otp, "transactionId": transaction_id}}
    status, answer = await post(http, f"{sim}/verifyCode", body, bearer(token))
    assert status == 200
    return answer


async def latest_otp(http: aiohttp.ClientSession, sim: str, wallet: str = WALLET) -> str:
    return (await get_json(http, f"{sim}/_sim/otp/{wallet}"))["otp"]


async def debit_from(http: aiohttp.ClientSession, sim: str, wallet: str) -> tuple[str, str, str]:
    """Log in and start a debit of that payer wallet: (token, transactionId, its OTP)."""
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token, fromUser={"userIdentifier": wallet})
    return token, transaction_id, await latest_otp(http, sim, wallet)


async def state(http: aiohttp.ClientSession, sim: str) -> Any:
    return await get_json(http, f"{sim}/_sim/state")


async def arm(http: aiohttp.ClientSession, sim: str, **fault: Any) -> None:
    status, answer = await post(http, f"{sim}/_sim/faults", fault)
    assert status == 200, answer


# --------------------------------------------------------------------------- login and tokens


@pytest.mark.asyncio
async def test_login_issues_a_token_with_expiry_as_string_and_no_two_factor(
    http: aiohttp.ClientSession, sim: str
) -> None:
    status, answer = await post(http, f"{sim}/login", login_body(), basic(CHANNEL, CHANNEL_SECRET))
    assert status == 200
    assert (answer["responseCode"], answer["responseMessage"]) == ("1", "Success")
    assert answer["data"]["accessTokenExpiry"] == "3600"
    assert answer["data"]["twoFactorEnable"] == "false"
    assert len(answer["data"]["access_token"]) >= 32


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers", [basic(CHANNEL, "wrong"), basic(USERNAME, PASSWORD), {}, bearer("x")]
)
async def test_login_without_the_channel_credential_is_http_401(
    http: aiohttp.ClientSession, sim: str, headers: dict[str, str]
) -> None:
    status, answer = await post(http, f"{sim}/login", login_body(), headers)
    assert status == 401
    assert answer == {
        "error": "unauthorized",
        "error_description": "Full authentication is required to access this resource",
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"password": "wrong"}, "-5100002", "Invalid username or password"),
        ({"username": "14001503"}, "-5100002", "Invalid username or password"),
        ({"grantType": "client_credentials"}, "-5100006", "Invalid grant type"),
        ({"grantType": None}, "-150008", "Mandatory parameter missing"),
        ({"username": None}, "-150008", "Mandatory parameter missing"),
        ({"password": ""}, "-150008", "Mandatory parameter missing"),
    ],
)
async def test_login_refusals_are_http_200_with_a_string_response_code(
    http: aiohttp.ClientSession, sim: str, changes: dict[str, Any], code: str, message: str
) -> None:
    status, answer = await post(
        http, f"{sim}/login", login_body(**changes), basic(CHANNEL, CHANNEL_SECRET)
    )
    assert status == 200
    assert answer == {"responseCode": code, "responseMessage": message}


@pytest.mark.asyncio
async def test_tokens_expire_after_the_stated_seconds_but_never_when_it_is_minus_one(
    http: aiohttp.ClientSession, start_sim: StartSim
) -> None:
    sim = await start_sim(token_expiry="1")
    short_lived = await login(http, sim)
    await post(http, f"{sim}/_sim/settings", {"token_expiry": "-1"})
    data = await login_data(http, sim)
    assert data["accessTokenExpiry"] == "-1"
    everlasting = data["access_token"]
    await asyncio.sleep(1.1)  # the 1 s token lifetime running out is what is under test
    status, answer = await post(http, f"{sim}/getMoney", debit_body(), bearer(short_lived))
    assert (status, answer["error"]) == (401, "invalid_token")
    assert await get_money(http, sim, everlasting)


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [{}, bearer("not-a-token"), basic(CHANNEL, CHANNEL_SECRET)])
async def test_provider_call_without_a_valid_bearer_token_is_http_401_invalid_token(
    http: aiohttp.ClientSession, sim: str, headers: dict[str, str]
) -> None:
    status, answer = await post(http, f"{sim}/getMoney", debit_body(), headers)
    assert status == 401
    assert answer == {"error": "invalid_token", "error_description": "Invalid access token"}
    assert (await state(http, sim))["debits"] == []


@pytest.mark.asyncio
async def test_revoked_tokens_are_refused_until_the_next_login(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    status, answer = await post(http, f"{sim}/_sim/tokens/revoke", {})
    assert (status, answer) == (200, {"revoked": 1})
    status, _ = await post(http, f"{sim}/getMoney", debit_body(), bearer(token))
    assert status == 401
    assert await get_money(http, sim, await login(http, sim))


# --------------------------------------------------------------------------- getMoney


@pytest.mark.asyncio
async def test_get_money_sends_an_otp_to_the_payer_and_leaves_balances_alone(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    status, answer = await post(http, f"{sim}/getMoney", debit_body(), bearer(token))
    assert status == 200
    assert (answer["responseCode"], answer["responseMessage"]) == ("1", "OTP Send Successfully")
    transaction_id = answer["data"]["transactionId"]
    assert re.fullmatch(r"\d{12}", transaction_id)
    [message] = (await get_json(http, f"{sim}/_sim/outbox/{WALLET}"))["items"]
    assert re.fullmatch(r"\d{6}", message["otp"])
    assert (message["transactionId"], message["amount"]) == (transaction_id, "5.00")
    assert message["sent_at"]
    latest = await get_json(http, f"{sim}/_sim/otp/{WALLET}")
    assert (latest["otp"], latest["transactionId"]) == (message["otp"], transaction_id)
    current = await state(http, sim)
    assert (current["wallets"], current["merchant_balance"]) == ({WALLET: "10000.00"}, "0.00")
    [debit] = current["debits"]
    assert debit["transactionId"] == transaction_id
    assert (debit["wallet"], debit["amount"], debit["status"]) == (WALLET, "5.00", "pending")
    assert debit["created_at"] and debit["completed_at"] is None


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"transactionPin": "0000"}, "-150002"),
        ({"toUser": {"userIdentifier": "14009999"}}, "-150004"),
        ({"fromUser": {"userIdentifier": "unknown-wallet"}}, "-120001"),
        ({"payment": [{"amount": 0}]}, "-150009"),
        ({"payment": [{"amount": -5}]}, "-150009"),
        ({"payment": [{"amount": "1.234"}]}, "-150009"),
        ({"payment": [{"amount": "five"}]}, "-150009"),
        ({"payment": [{"amount": "1e999999999"}]}, "-150009"),
        ({"payment": [{"amount": "1e-999999999"}]}, "-150009"),
        ({"payment": [{"amount": 5}, {"amount": 5}]}, "-150009"),
        ({"transactionPin": None}, "-150008"),
        ({"fromUser": None}, "-150008"),
        ({"toUser": {}}, "-150008"),
        ({"serviceId": None}, "-150008"),
        ({"payment": []}, "-150008"),
        ({"payment": [{}]}, "-150008"),
    ],
)
async def test_get_money_refusals_send_no_otp(
    http: aiohttp.ClientSession, sim: str, changes: dict[str, Any], code: str
) -> None:
    token = await login(http, sim)
    status, answer = await post(http, f"{sim}/getMoney", debit_body(**changes), bearer(token))
    assert (status, answer["responseCode"]) == (200, code)
    assert (await get_json(http, f"{sim}/_sim/outbox/{WALLET}"))["items"] == []
    assert (await state(http, sim))["debits"] == []


@pytest.mark.asyncio
async def test_get_money_without_data_wrapper_is_mandatory_parameter_missing(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    status, answer = await post(http, f"{sim}/getMoney", debit_body()["data"], bearer(token))
    assert status == 200
    assert answer == {"responseCode": "-150008", "responseMessage": "Mandatory parameter missing"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("amount_json", "amount", "balance_after"),
    [("5.00", "5.00", "9995.00"), ("0.29", "0.29", "9999.71"), ('"7.5"', "7.50", "9992.50")],
)
async def test_amounts_are_exact_whether_sent_as_number_or_string(
    http: aiohttp.ClientSession, sim: str, amount_json: str, amount: str, balance_after: str
) -> None:
    token = await login(http, sim)
    placeholder = "AMOUNT"
    body = json.dumps(debit_body(payment=[{"amount": placeholder}]))
    body = body.replace(f'"{placeholder}"', amount_json)  # raw JSON: 0.29 stays a number
    status, answer = await post(http, f"{sim}/getMoney", body, bearer(token))
    assert (status, answer["responseCode"]) == (200, "1")
    assert (await state(http, sim))["debits"][0]["amount"] == amount
    answer = await verify(
        http, sim, token, answer["data"]["transactionId"], await latest_otp(http, sim)
    )
    assert answer["data"]["balanceData"][0]["availableBalance"] == balance_after
    assert (await state(http, sim))["merchant_balance"] == amount


# --------------------------------------------------------------------------- verifyCode


@pytest.mark.asyncio
async def test_wrong_otp_keeps_the_debit_pending_and_the_right_one_moves_the_money(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    wrong = f"{(int(otp) + 1) % 10**6:06d}"
    answer = await verify(http, sim, token, transaction_id, wrong)
    assert answer == {"responseCode": "-150005", "responseMessage": "OTP validation failed"}
    assert (await state(http, sim))["debits"][0]["status"] == "pending"
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {
        "responseCode": "1",
        "responseMessage": "Success",
        "data": {
            "transactionId": transaction_id,
            "balanceData": [{"walletExternalId": WALLET, "availableBalance": "9995.00"}],
        },
    }
    current = await state(http, sim)
    assert current["wallets"][WALLET] == "9995.00"
    assert current["merchant_balance"] == "5.00"
    assert current["debits"][0]["status"] == "completed"
    assert current["debits"][0]["completed_at"]


@pytest.mark.asyncio
async def test_replayed_verify_is_session_not_found_and_moves_nothing_more(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "1"
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {"responseCode": "-150001", "responseMessage": "Session not found"}
    assert (await state(http, sim))["wallets"][WALLET] == "9995.00"


@pytest.mark.asyncio
async def test_unknown_transaction_is_session_not_found(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    answer = await verify(http, sim, token, "999999999999", "123456")
    assert answer["responseCode"] == "-150001"


@pytest.mark.asyncio
async def test_insufficient_balance_is_found_at_verify_and_closes_the_debit(
    http: aiohttp.ClientSession, sim: str
) -> None:
    status, answer = await put(http, f"{sim}/_sim/wallets/poor", {"balance": "3.00"})
    assert (status, answer) == (200, {"wallet": "poor", "balance": "3.00"})
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token, fromUser={"userIdentifier": "poor"})
    otp = await latest_otp(http, sim, "poor")
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {"responseCode": "-120008", "responseMessage": "Balance not sufficient"}
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "-150001"
    current = await state(http, sim)
    assert (current["wallets"]["poor"], current["merchant_balance"]) == ("3.00", "0.00")
    assert current["debits"][0]["status"] == "failed"


@pytest.mark.asyncio
async def test_expired_otp_is_refused_and_closes_the_debit(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    status, answer = await post(http, f"{sim}/_sim/settings", {"otp_lifetime_seconds": 0.2})
    assert (status, answer) == (200, {"token_expiry": "3600", "otp_lifetime_seconds": 0.2})
    await asyncio.sleep(0.3)  # the 0.2 s OTP lifetime running out is what is under test
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {"responseCode": "-150006", "responseMessage": "OTP expired"}
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "-150001"
    current = await state(http, sim)
    assert current["debits"][0]["status"] == "expired"
    assert current["wallets"][WALLET] == "10000.00"


@pytest.mark.asyncio
async def test_unwrapped_verify_body_is_accepted(http: aiohttp.ClientSession, sim: str) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    body = {"otp": await latest_otp(http, sim), "transactionId": transaction_id}
    status, answer = await post(http, f"{sim}/verifyCode", body, bearer(token))
    assert (status, answer["responseCode"]) == (200, "1")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"data": {"otp": "123456"}}, "-20002"),
        ({"otp": "123456"}, "-20002"),
        ({"data": {"transactionId": "999999999999"}}, "-150008"),
    ],
)
async def test_verify_with_missing_fields_is_refused(
    http: aiohttp.ClientSession, sim: str, body: dict[str, Any], code: str
) -> None:
    token = await login(http, sim)
    status, answer = await post(http, f"{sim}/verifyCode", body, bearer(token))
    assert (status, answer["responseCode"]) == (200, code)


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_http_500_fault_fails_one_verify_without_acting(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    await arm(http, sim, target="verifyCode", kind="http_500")
    body = {"data": {"otp": otp, "transactionId": transaction_id}}
    status, answer = await post(http, f"{sim}/verifyCode", body, bearer(token))
    assert (status, answer) == (
        500,
        {"responseCode": "-1", "responseMessage": "Internal server error"},
    )
    assert (await state(http, sim))["debits"][0]["status"] == "pending"
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "1"


@pytest.mark.asyncio
async def test_drop_fault_closes_the_connection_without_sending_an_otp(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    await arm(http, sim, target="getMoney", kind="drop")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, f"{sim}/getMoney", debit_body(), bearer(token))
    assert (await state(http, sim))["debits"] == []
    assert (await get_json(http, f"{sim}/_sim/outbox/{WALLET}"))["items"] == []
    assert await get_money(http, sim, token)


@pytest.mark.asyncio
async def test_drop_after_on_get_money_sends_the_otp_but_no_answer(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    await arm(http, sim, target="getMoney", kind="drop_after")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, f"{sim}/getMoney", debit_body(), bearer(token))
    [debit] = (await state(http, sim))["debits"]
    assert debit["status"] == "pending"
    assert (await get_json(http, f"{sim}/_sim/otp/{WALLET}"))["transactionId"] == (
        debit["transactionId"]
    )


@pytest.mark.asyncio
async def test_drop_after_on_verify_moves_the_money_but_loses_the_answer(
    http: aiohttp.ClientSession, sim: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    await arm(http, sim, target="verifyCode", kind="drop_after")
    body = {"data": {"otp": otp, "transactionId": transaction_id}}
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, f"{sim}/verifyCode", body, bearer(token))
    current = await state(http, sim)
    assert current["debits"][0]["status"] == "completed"
    assert (current["wallets"][WALLET], current["merchant_balance"]) == ("9995.00", "5.00")
    record = (await get_json(http, f"{sim}/_sim/requests"))["items"][-1]
    assert (record["path"], record["fault"]) == ("/verifyCode", "drop_after")
    assert record["answer"]["responseCode"] == "1"  # the answer the caller never got
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "-150001"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_slow_body_acts_sends_the_head_then_holds_the_rest_of_the_body(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    otp = await latest_otp(http, sim)
    await arm(http, sim, target="verifyCode", kind="slow_body", seconds=0.6)
    body = {"data": {"otp": otp, "transactionId": transaction_id}}
    async with http.post(f"{sim}/verifyCode", json=body, headers=bearer(token)) as answer:
        assert answer.status == 200  # the head arrives at once,
        first = await answer.content.readany()  # then half the body,
        rest = await answer.content.read()  # the rest after the pause
    assert first and rest
    assert json.loads(first + rest)["responseCode"] == "1"
    assert (await state(http, sim))["debits"][0]["status"] == "completed"
    record = (await get_json(http, f"{sim}/_sim/requests"))["items"][-1]
    assert (record["path"], record["fault"]) == ("/verifyCode", "slow_body")


@pytest.mark.asyncio
async def test_malformed_fault_acts_then_answers_200_with_a_body_that_is_not_json(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token)
    await arm(http, sim, target="verifyCode", kind="malformed")
    body = {"data": {"otp": await latest_otp(http, sim), "transactionId": transaction_id}}
    async with http.post(f"{sim}/verifyCode", json=body, headers=bearer(token)) as response:
        text = await response.text()
    assert response.status == 200
    with pytest.raises(ValueError):
        json.loads(text)
    assert (await state(http, sim))["debits"][0]["status"] == "completed"


@pytest.mark.asyncio
async def test_latency_fault_delays_a_normal_answer(http: aiohttp.ClientSession, sim: str) -> None:
    await arm(http, sim, target="login", kind="latency", seconds=0.3)
    started = asyncio.get_running_loop().time()
    assert await login(http, sim)
    assert asyncio.get_running_loop().time() - started >= 0.3


@pytest.mark.asyncio
async def test_timeout_fault_outlasts_the_caller_and_then_acts(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    await arm(http, sim, target="getMoney", kind="timeout", seconds=0.5)
    with pytest.raises(TimeoutError):
        await post(
            http,
            f"{sim}/getMoney",
            debit_body(),
            bearer(token),
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    assert (await state(http, sim))["debits"] == []

    async def otp_sent() -> bool:
        return bool((await get_json(http, f"{sim}/_sim/outbox/{WALLET}"))["items"])

    await wait_until(otp_sent, "the OTP text in the outbox")


@pytest.mark.asyncio
async def test_default_timeout_fault_does_not_delay_stop(http: aiohttp.ClientSession) -> None:
    simulator = QmoneySimulator()
    sim = await simulator.start()
    await arm(http, sim, target="login", kind="timeout")
    assert (await get_json(http, f"{sim}/_sim/faults"))["items"][0]["seconds"] == 30.0
    with pytest.raises(TimeoutError):
        await post(
            http,
            f"{sim}/login",
            login_body(),
            basic(CHANNEL, CHANNEL_SECRET),
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    started = asyncio.get_running_loop().time()
    await simulator.stop()
    assert asyncio.get_running_loop().time() - started < 2


@pytest.mark.asyncio
async def test_fault_armed_until_cleared_stays_until_deleted(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await arm(http, sim, target="login", kind="http_500", times=0)
    for _ in range(2):
        status, _ = await post(http, f"{sim}/login", login_body(), basic(CHANNEL, CHANNEL_SECRET))
        assert status == 500
    async with http.delete(f"{sim}/_sim/faults") as response:
        assert await response.json() == {"cleared": 1}
    assert await login(http, sim)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "fault",
    [
        {"target": "simulate", "kind": "drop"},
        {"target": "verifyCode", "kind": "duplicate"},
        {"target": "login", "kind": "latency"},
        {"target": "login", "kind": "drop", "times": -1},
    ],
)
async def test_invalid_faults_are_refused_with_http_400(
    http: aiohttp.ClientSession, sim: str, fault: dict[str, Any]
) -> None:
    status, answer = await post(http, f"{sim}/_sim/faults", fault)
    assert status == 400
    assert answer["error"]


# --------------------------------------------------------------------------- magic values


class KeptAppSimulator(QmoneySimulator):
    """A simulator whose app (and so its engine) stays reachable after stop()."""

    app: web.Application | None = None

    def build_app(self) -> web.Application:
        self.app = super().build_app()
        return self.app


async def wallet(http: aiohttp.ClientSession, sim: str, wallet_id: str) -> Any:
    return await get_json(http, f"{sim}/_sim/wallets/{wallet_id}")


async def last_request(http: aiohttp.ClientSession, sim: str) -> Any:
    return (await get_json(http, f"{sim}/_sim/requests"))["items"][-1]


def verify_body(transaction_id: str, otp: str) -> dict[str, Any]:
    return {"data": {"otp": otp, "transactionId": transaction_id}}


@pytest.mark.asyncio
async def test_magic_wallets_are_seeded_beside_the_configured_ones_and_after_reset(
    http: aiohttp.ClientSession, sim: str
) -> None:
    expected = [
        {"wallet": WALLET, "balance": "10000.00", "magic": None},
        {"wallet": "10000001", "balance": "0.00", "magic": "insufficient_balance"},
        {"wallet": "10000002", "balance": "10000.00", "magic": "otp_expired"},
        {"wallet": "10000003", "balance": "10000.00", "magic": "drop_after"},
        {"wallet": "10000004", "balance": "10000.00", "magic": "timeout"},
        {"wallet": "10000005", "balance": "10000.00", "magic": "http_500"},
    ]
    assert (await get_json(http, f"{sim}/_sim/wallets"))["items"] == expected
    assert (await state(http, sim))["wallets"] == {WALLET: "10000.00"}  # unchanged view
    await put(http, f"{sim}/_sim/wallets/10000001", {"balance": "7.00"})
    assert (await wallet(http, sim, "10000001"))["balance"] == "7.00"
    await post(http, f"{sim}/_sim/reset", {})
    assert (await get_json(http, f"{sim}/_sim/wallets"))["items"] == expected
    async with http.get(f"{sim}/_sim/wallets/unknown") as response:
        assert response.status == 404


@pytest.mark.asyncio
async def test_a_configured_wallet_with_a_magic_id_is_an_ordinary_wallet(
    http: aiohttp.ClientSession, start_sim: StartSim
) -> None:
    sim = await start_sim(wallets={"10000005": "50.00"})
    assert (await state(http, sim))["wallets"] == {"10000005": "50.00"}
    assert await wallet(http, sim, "10000005") == {
        "wallet": "10000005",
        "balance": "50.00",
        "magic": None,
    }
    token = await login(http, sim)
    transaction_id = await get_money(http, sim, token, fromUser={"userIdentifier": "10000005"})
    answer = await verify(http, sim, token, transaction_id, await latest_otp(http, sim, "10000005"))
    assert answer["data"]["balanceData"][0]["availableBalance"] == "45.00"


@pytest.mark.asyncio
async def test_magic_wallet_10000001_has_no_money_so_verify_is_120008(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token, transaction_id, otp = await debit_from(http, sim, "10000001")
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {"responseCode": "-120008", "responseMessage": "Balance not sufficient"}
    current = await state(http, sim)
    assert (current["debits"][0]["status"], current["merchant_balance"]) == ("failed", "0.00")
    assert (await wallet(http, sim, "10000001"))["balance"] == "0.00"
    assert (await last_request(http, sim))["fault"] is None  # a plain balance, nothing injected


@pytest.mark.asyncio
async def test_magic_wallet_10000002_otp_expires_at_once(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token, transaction_id, otp = await debit_from(http, sim, "10000002")
    answer = await verify(http, sim, token, transaction_id, otp)
    assert answer == {"responseCode": "-150006", "responseMessage": "OTP expired"}
    record = await last_request(http, sim)
    assert (record["path"], record["fault"], record["status"]) == (
        "/verifyCode",
        "magic:otp_expired",
        200,
    )
    assert (await state(http, sim))["debits"][0]["status"] == "expired"
    assert (await wallet(http, sim, "10000002"))["balance"] == "10000.00"
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "-150001"


@pytest.mark.asyncio
async def test_magic_wallet_10000003_verify_debits_then_drops_the_connection(
    http: aiohttp.ClientSession, sim: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    token, transaction_id, otp = await debit_from(http, sim, "10000003")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, f"{sim}/verifyCode", verify_body(transaction_id, otp), bearer(token))
    current = await state(http, sim)
    assert (current["debits"][0]["status"], current["merchant_balance"]) == ("completed", "5.00")
    assert (await wallet(http, sim, "10000003"))["balance"] == "9995.00"
    record = await last_request(http, sim)
    assert (record["path"], record["fault"]) == ("/verifyCode", "magic:drop_after")
    assert record["answer"]["responseCode"] == "1"  # the answer the caller never got
    # Once per debit, as a fault armed with times=1: a replay is answered, and refused.
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "-150001"
    assert (await get_json(http, f"{sim}/_sim/faults"))["items"] == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_magic_wallet_10000004_verify_outlasts_the_caller_then_debits_and_stop_is_prompt(
    http: aiohttp.ClientSession,
) -> None:
    simulator = KeptAppSimulator()
    sim = await simulator.start()
    try:
        token = await login(http, sim)
        transaction_id = await get_money(http, sim, token, fromUser={"userIdentifier": "10000004"})
        otp = await latest_otp(http, sim, "10000004")
        with pytest.raises(TimeoutError):
            await post(
                http,
                f"{sim}/verifyCode",
                verify_body(transaction_id, otp),
                bearer(token),
                timeout=aiohttp.ClientTimeout(total=0.3),
            )
        assert (await state(http, sim))["debits"][0]["status"] == "pending"
        record = await last_request(http, sim)
        assert (record["path"], record["fault"], record["status"]) == (
            "/verifyCode",
            "magic:timeout",
            None,
        )
    finally:
        started = asyncio.get_running_loop().time()
        await simulator.stop()
    assert asyncio.get_running_loop().time() - started < 2
    # Stopping cut the 30 s wait short: the held call answered, so the debit was applied.
    assert simulator.app is not None
    engine = simulator.app[QMONEY_ENGINE]
    assert engine.debits[transaction_id].status == "completed"
    assert engine.state_json()["merchant_balance"] == "5.00"
    assert engine.wallet_json("10000004")["balance"] == "9995.00"
    assert engine.requests.items[-1]["answer"]["responseCode"] == "1"


@pytest.mark.asyncio
async def test_magic_wallet_10000005_get_money_is_http_500_without_acting(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    body = debit_body(fromUser={"userIdentifier": "10000005"})
    for _ in range(2):
        status, answer = await post(http, f"{sim}/getMoney", body, bearer(token))
        assert (status, answer) == (
            500,
            {"responseCode": "-1", "responseMessage": "Internal server error"},
        )
        record = await last_request(http, sim)
        assert (record["path"], record["fault"], record["status"]) == (
            "/getMoney",
            "magic:http_500",
            500,
        )
    assert (await state(http, sim))["debits"] == []
    assert (await get_json(http, f"{sim}/_sim/outbox/10000005"))["items"] == []


@pytest.mark.asyncio
async def test_an_armed_fault_takes_precedence_over_a_magic_wallet(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await login(http, sim)
    await arm(http, sim, target="getMoney", kind="latency", seconds=0)
    transaction_id = await get_money(http, sim, token, fromUser={"userIdentifier": "10000005"})
    assert (await last_request(http, sim))["fault"] == "latency"
    assert (await state(http, sim))["debits"][0]["transactionId"] == transaction_id


# --------------------------------------------------------------------------- control API


@pytest.mark.asyncio
async def test_recorded_requests_hide_password_pin_otp_and_credentials(
    http: aiohttp.ClientSession, start_sim: StartSim
) -> None:
    # Values that cannot turn up by chance in ids, tokens or timestamps.
    password, pin = "pa55-w0rd-xyz", "PIN#97531"
    sim = await start_sim(password=password, merchant_pin=pin)
    token = (await login_data(http, sim, password=password))["access_token"]
    transaction_id = await get_money(http, sim, token, transactionPin=pin)
    otp = await latest_otp(http, sim)
    assert (await verify(http, sim, token, transaction_id, otp))["responseCode"] == "1"
    async with http.get(f"{sim}/_sim/requests") as response:
        text = await response.text()
    assert password not in text
    assert pin not in text
    items = json.loads(text)["items"]
    assert token not in json.dumps([item["headers"] for item in items])
    logged_in, debited, verified = items
    assert logged_in["body"]["password"] == "[redacted]"
    assert logged_in["headers"]["Authorization"] == "Basic [redacted]"
    assert debited["body"]["data"]["transactionPin"] == "[redacted]"
    assert debited["headers"]["Authorization"] == "Bearer [redacted]"
    assert verified["body"]["data"]["otp"] == "[redacted]"
    assert verified["body"]["data"]["transactionId"] == transaction_id
    assert [r["status"] for r in (logged_in, debited, verified)] == [200, 200, 200]


@pytest.mark.asyncio
async def test_reset_restores_initial_settings_and_wallets_and_forgets_everything(
    http: aiohttp.ClientSession, sim: str
) -> None:
    initial = await state(http, sim)
    token = await login(http, sim)
    await get_money(http, sim, token)
    await put(http, f"{sim}/_sim/wallets/{WALLET}", {"balance": "1.00"})
    await post(http, f"{sim}/_sim/settings", {"token_expiry": "-1", "otp_lifetime_seconds": 2})
    await arm(http, sim, target="verifyCode", kind="drop", times=0)
    status, answer = await post(http, f"{sim}/_sim/reset", {})
    assert (status, answer) == (200, initial)
    assert initial == {
        "token_expiry": "3600",
        "otp_lifetime_seconds": 300.0,
        "wallets": {WALLET: "10000.00"},
        "merchant_balance": "0.00",
        "debits": [],
    }
    for resource in ("requests", "faults", f"outbox/{WALLET}"):
        assert (await get_json(http, f"{sim}/_sim/{resource}"))["items"] == []
    async with http.get(f"{sim}/_sim/otp/{WALLET}") as response:
        assert response.status == 404
    status, _ = await post(http, f"{sim}/getMoney", debit_body(), bearer(token))
    assert status == 401


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/_sim/settings", {"token_expiry": "soon"}),
        ("POST", "/_sim/settings", {"otp_lifetime_seconds": 0}),
        ("POST", "/_sim/settings", {"otp_lifetime": 5}),
        ("POST", "/_sim/settings", "[]"),
        ("PUT", f"/_sim/wallets/{WALLET}", {"balance": "1.234"}),
        ("PUT", f"/_sim/wallets/{WALLET}", {"balance": "-1.00"}),
        ("PUT", f"/_sim/wallets/{WALLET}", {}),
    ],
)
async def test_control_api_refuses_bad_values_with_http_400_and_changes_nothing(
    http: aiohttp.ClientSession, sim: str, method: str, path: str, body: Any
) -> None:
    before = await state(http, sim)
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.request(method, f"{sim}{path}", data=data) as response:
        assert response.status == 400
        assert (await response.json())["error"]
    assert await state(http, sim) == before


@pytest.mark.asyncio
async def test_unknown_paths_are_json_errors(http: aiohttp.ClientSession, sim: str) -> None:
    status, answer = await post(http, f"{sim}/sendMoney", {})
    assert (status, answer["error"]) == (404, "not_found")
    async with http.get(f"{sim}/login") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"
    async with http.get(f"{sim}/_sim/otp/{WALLET}") as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with http.get(f"{sim}/_sim/nothing-here") as response:
        assert response.status == 404
        assert "error" in await response.json()


@pytest.mark.asyncio
async def test_command_line_applies_its_options_and_exits_cleanly_on_sigint(
    http: aiohttp.ClientSession,
) -> None:
    async with simulator_command("qmoney", "--token-expiry", "-1", "--otp-lifetime", "2") as url:
        current = await state(http, url)
        assert (current["token_expiry"], current["otp_lifetime_seconds"]) == ("-1", 2.0)
