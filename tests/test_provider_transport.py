"""The provider transport on its own, against a tiny provider on an ephemeral port (real
sockets): the login retried once, one new login after a rejected token, timeouts typed,
and errors that carry the provider's HTTP status and correlation id."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from server.integrations.provider_transport import ProviderTransport
from server.integrations.transport import (
    Answer,
    CachedToken,
    CallLog,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.kernel.metrics import Metrics
from server.mpesa.client import DarajaClient
from server.mpesa.settings import DarajaSettings
from server.qmoney.client import QmoneyClient
from server.qmoney.settings import QmoneySettings

PROVIDER = "acme"


@dataclass
class Provider:
    """What the tiny provider answers, and what it was asked."""

    url: str = ""
    # Each login takes the next answer; once they are used up, logins succeed.
    login_answers: list[tuple[int, Any]] = field(default_factory=list)
    login_delay: float = 0.0
    call_answers: list[tuple[int, Any]] = field(default_factory=list)
    call_delay: float = 0.0
    valid_tokens: set[str] = field(default_factory=set)
    refuse_every_token: bool = False
    issued: int = 0
    logins: list[dict[str, str]] = field(default_factory=list)
    calls: list[dict[str, str]] = field(default_factory=list)

    def forget_tokens(self) -> None:
        self.valid_tokens.clear()


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()

    async def login(request: web.Request) -> web.Response:
        state.logins.append(dict(request.headers))
        await asyncio.sleep(state.login_delay)
        if state.login_answers:
            status, body = state.login_answers.pop(0)
            return web.json_response(body, status=status)
        state.issued += 1
        token = f"T{state.issued}"
        state.valid_tokens.add(token)
        return web.json_response({"token": token})

    async def pay(request: web.Request) -> web.Response:
        state.calls.append(dict(request.headers))
        await asyncio.sleep(state.call_delay)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if state.refuse_every_token or token not in state.valid_tokens:
            return web.json_response({"error": "invalid_token", "requestId": "r-401"}, status=401)
        if state.call_answers:
            status, body = state.call_answers.pop(0)
            return web.json_response(body, status=status)
        return web.json_response({"paid": True, "requestId": "r-ok"})

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_post("/pay", pay)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield state
    await runner.cleanup()


def rejected_token(answer: Answer) -> bool:
    return answer.status == 401


def transport_for(
    http, base_url: str, timeout: float = 5.0, metrics: Metrics | None = None
) -> ProviderTransport:
    """A transport with a small client's login: 403 is a refusal, 5xx a failure."""
    transport: ProviderTransport

    async def login() -> CachedToken:
        answer = await transport.send(
            "POST",
            "/login",
            data=json.dumps({"user": "u"}),
            headers={"Authorization": "Basic c2VjcmV0"},
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status == 403:
            raise ProviderRejected(
                PROVIDER, "403", "refused", http_status=403, correlation_id=body.get("requestId")
            )
        if answer.status >= 500 or "token" not in body:
            raise ProviderUnavailable(
                PROVIDER,
                f"HTTP {answer.status}",
                http_status=answer.status,
                correlation_id=body.get("requestId"),
            )
        return CachedToken(body["token"], None)

    transport = ProviderTransport(
        http,
        PROVIDER,
        base_url,
        timeout,
        Clock(),
        login=login,
        login_endpoint="login",
        token_rejected=rejected_token,
        calls=CallLog(metrics=metrics),
    )
    return transport


def outcomes(metrics: Metrics, endpoint: str) -> dict[str, float]:
    found = {}
    for outcome in ("ok", "rejected", "unavailable", "unknown"):
        value = metrics.registry.get_sample_value(
            "gateway_provider_calls_total",
            {"provider": PROVIDER, "endpoint": endpoint, "outcome": outcome},
        )
        if value:
            found[outcome] = value
    return found


async def pay(transport: ProviderTransport) -> Answer:
    async with transport.call("pay"):
        return await transport.authorized("POST", "/pay", data='{"amount": 5}')


# --- login ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failed_login_is_tried_once_more(http, provider) -> None:
    provider.login_answers = [(503, {"requestId": "r-1"})]
    metrics = Metrics()
    transport = transport_for(http, provider.url, metrics=metrics)
    answer = await pay(transport)
    assert answer.status == 200 and answer.body["paid"] is True
    assert len(provider.logins) == 2 and transport.tokens.fetches == 1
    assert outcomes(metrics, "login") == {"ok": 1} and outcomes(metrics, "pay") == {"ok": 1}


@pytest.mark.asyncio
async def test_a_login_failing_twice_is_unavailable_with_the_last_status_and_id(
    http, provider
) -> None:
    provider.login_answers = [(503, {"requestId": "r-1"}), (502, {"requestId": "r-2"})]
    metrics = Metrics()
    transport = transport_for(http, provider.url, metrics=metrics)
    with pytest.raises(ProviderUnavailable) as caught:
        await pay(transport)
    assert caught.value.message == "login: HTTP 502"
    assert caught.value.http_status == 502 and caught.value.correlation_id == "r-2"
    assert len(provider.logins) == 2 and provider.calls == []
    assert outcomes(metrics, "login") == {"unavailable": 1}
    assert outcomes(metrics, "pay") == {"unavailable": 1}


@pytest.mark.asyncio
async def test_a_refused_login_is_not_tried_again(http, provider) -> None:
    provider.login_answers = [(403, {"requestId": "r-9"})]
    with pytest.raises(ProviderRejected) as caught:
        await pay(transport_for(http, provider.url))
    assert caught.value.code == "403"
    assert caught.value.http_status == 403 and caught.value.correlation_id == "r-9"
    assert len(provider.logins) == 1 and provider.calls == []


@pytest.mark.asyncio
async def test_a_login_timing_out_twice_is_unavailable(http, provider) -> None:
    provider.login_delay = 1.0
    with pytest.raises(
        ProviderUnavailable, match="login: /login: no answer \\(timed out\\)"
    ) as caught:
        await pay(transport_for(http, provider.url, timeout=0.2))
    assert caught.value.http_status is None and caught.value.correlation_id is None
    assert len(provider.logins) == 2 and provider.calls == []


@pytest.mark.asyncio
async def test_concurrent_calls_share_one_login(http, provider) -> None:
    transport = transport_for(http, provider.url)
    answers = await asyncio.gather(*(pay(transport) for _ in range(5)))
    assert all(answer.status == 200 for answer in answers)
    assert len(provider.logins) == 1 and len(provider.calls) == 5


# --- the token --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_rejected_token_logs_in_again_and_retries_once(http, provider) -> None:
    metrics = Metrics()
    transport = transport_for(http, provider.url, metrics=metrics)
    await pay(transport)
    provider.forget_tokens()
    answer = await pay(transport)
    assert answer.status == 200
    assert len(provider.logins) == 2 and len(provider.calls) == 3
    assert [call["Authorization"] for call in provider.calls] == [
        "Bearer T1",
        "Bearer T1",
        "Bearer T2",
    ]
    assert transport.tokens.fetches == 2
    assert outcomes(metrics, "login") == {"ok": 2} and outcomes(metrics, "pay") == {"ok": 2}


@pytest.mark.asyncio
async def test_a_second_rejection_is_returned_and_not_retried_again(http, provider) -> None:
    transport = transport_for(http, provider.url)
    provider.refuse_every_token = True
    answer = await pay(transport)
    assert answer.status == 401 and answer.body["error"] == "invalid_token"
    assert len(provider.logins) == 2 and len(provider.calls) == 2
    assert [call["Authorization"] for call in provider.calls] == ["Bearer T1", "Bearer T2"]


@pytest.mark.asyncio
async def test_the_request_is_sent_unchanged_with_the_bearer_token(http, provider) -> None:
    transport = transport_for(http, provider.url)
    await transport.authorized("POST", "/pay", data='{"amount": 5}', headers={"X-Trace": "t"})
    [sent] = provider.calls
    assert sent["Authorization"] == "Bearer T1" and sent["X-Trace"] == "t"
    assert sent["Content-Type"] == "application/json"
    assert provider.logins[0]["Authorization"] == "Basic c2VjcmV0"


# --- lost answers -----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_timing_out_is_unknown_and_never_retried(http, provider) -> None:
    metrics = Metrics()
    transport = transport_for(http, provider.url, timeout=0.3, metrics=metrics)
    provider.call_delay = 1.0
    with pytest.raises(ProviderOutcomeUnknown, match="/pay: no answer \\(timed out\\)"):
        await pay(transport)
    assert len(provider.calls) == 1
    assert outcomes(metrics, "pay") == {"unknown": 1}


@pytest.mark.asyncio
async def test_an_unreachable_provider_is_unavailable(http) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        await pay(transport_for(http, f"http://127.0.0.1:{closed}"))


# --- the clients' errors carry the provider's status and correlation id -----


@pytest_asyncio.fixture
async def answers() -> AsyncIterator[tuple[str, dict[str, tuple[int, Any]]]]:
    """A provider answering each path with a fixed (status, body); tokens never expire."""
    table: dict[str, tuple[int, Any]] = {}

    async def handle(request: web.Request) -> web.Response:
        status, body = table[request.path]
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", table
    await runner.cleanup()


def daraja(http, base_url: str) -> DarajaClient:
    return DarajaClient(
        http,
        DarajaSettings(
            base_url=base_url, consumer_key="the-key", consumer_secret="the-consumer-secret"
        ),
        Clock(),
    )


def qmoney(http, base_url: str) -> QmoneyClient:
    return QmoneyClient(
        http,
        QmoneySettings(
            base_url=base_url,
            channel_id="ch",
            channel_secret="the-channel-secret",
            username="u",
            password="the-password",
        ),
        Clock(),
    )


def assert_no_secret(err: Exception, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in str(err) and secret not in repr(err.args)


OAUTH = (200, {"access_token": "the-token", "expires_in": "3599"})
QMONEY_LOGIN = (
    200,
    {"responseCode": "1", "data": {"access_token": "the-token", "accessTokenExpiry": "-1"}},
)


@pytest.mark.asyncio
async def test_a_daraja_refusal_carries_the_status_and_request_id(http, answers) -> None:
    base_url, table = answers
    table["/oauth/v1/generate"] = OAUTH
    table["/mpesa/c2b/v2/registerurl"] = (
        400,
        {"requestId": "11728-2929992-1", "errorCode": "400.003.02", "errorMessage": "Bad Request"},
    )
    with pytest.raises(ProviderRejected) as caught:
        await daraja(http, base_url).register_urls(
            "600984", "Completed", "http://h/c", "http://h/v"
        )
    assert caught.value.code == "400.003.02"
    assert caught.value.http_status == 400 and caught.value.correlation_id == "11728-2929992-1"
    assert_no_secret(caught.value, "the-token", "the-consumer-secret")


@pytest.mark.asyncio
async def test_a_daraja_spike_arrest_is_unavailable_with_its_request_id(http, answers) -> None:
    base_url, table = answers
    table["/oauth/v1/generate"] = OAUTH
    table["/mpesa/c2b/v2/simulate"] = (
        500,
        {"requestId": "r-500", "errorCode": "500.003.02", "errorMessage": "Spike arrest"},
    )
    with pytest.raises(ProviderUnavailable) as caught:
        await daraja(http, base_url).simulate_payment("600984", "10", "2547", "070707070")
    assert caught.value.message == "500.003.02 Spike arrest"
    assert caught.value.http_status == 500 and caught.value.correlation_id == "r-500"


@pytest.mark.asyncio
async def test_an_unexpected_daraja_answer_carries_its_conversation_id(http, answers) -> None:
    base_url, table = answers
    table["/oauth/v1/generate"] = OAUTH
    table["/mpesa/c2b/v2/simulate"] = (
        200,
        {"ResponseCode": "1", "OriginatorCoversationID": "conv-1"},
    )
    with pytest.raises(ProviderOutcomeUnknown) as caught:
        await daraja(http, base_url).simulate_payment("600984", "10", "2547", "070707070")
    assert caught.value.http_status == 200 and caught.value.correlation_id == "conv-1"


@pytest.mark.asyncio
async def test_a_daraja_oauth_failing_twice_carries_the_last_status(http, answers) -> None:
    base_url, table = answers
    table["/oauth/v1/generate"] = (
        503,
        {"requestId": "r-oauth", "errorCode": "503.001.01", "errorMessage": "Service Unavailable"},
    )
    with pytest.raises(ProviderUnavailable) as caught:
        await daraja(http, base_url).simulate_payment("600984", "10", "2547", "070707070")
    assert caught.value.message == "oauth: 503.001.01 Service Unavailable"
    assert caught.value.http_status == 503 and caught.value.correlation_id == "r-oauth"
    assert_no_secret(caught.value, "the-consumer-secret", "the-key")


@pytest.mark.asyncio
async def test_a_qmoney_refusal_carries_the_status_and_transaction_id(http, answers) -> None:
    base_url, table = answers
    table["/login"] = QMONEY_LOGIN
    table["/verifyCode"] = (
        200,
        {
            "responseCode": "-150005",
            "responseMessage": "OTP validation failed",
            "data": {"transactionId": "QM-1"},
        },
    )
    with pytest.raises(ProviderRejected) as caught:
        await qmoney(http, base_url).verify_code("QM-1", "364407")
    assert caught.value.code == "-150005"
    assert caught.value.http_status == 200 and caught.value.correlation_id == "QM-1"
    assert_no_secret(caught.value, "364407", "the-token", "the-password")


@pytest.mark.asyncio
async def test_a_lost_getmoney_answer_is_unavailable_with_its_status(http, answers) -> None:
    base_url, table = answers
    table["/login"] = QMONEY_LOGIN
    table["/getMoney"] = (502, {"transactionId": "QM-2"})
    with pytest.raises(ProviderUnavailable) as caught:
        await qmoney(http, base_url).get_money("5811724c", "14001502", "5.00", "1234")
    assert caught.value.message.endswith("unusable answer (HTTP 502)")
    assert caught.value.http_status == 502 and caught.value.correlation_id == "QM-2"
    assert_no_secret(caught.value, "1234", "the-token", "the-password")


@pytest.mark.asyncio
async def test_a_qmoney_login_refused_carries_401_and_no_credential(http, answers) -> None:
    base_url, table = answers
    table["/login"] = (401, {"error": "unauthorized", "error_description": "Bad credentials"})
    with pytest.raises(ProviderRejected) as caught:
        await qmoney(http, base_url).get_money("5811724c", "14001502", "5.00", "1234")
    assert caught.value.code == "401" and caught.value.http_status == 401
    assert_no_secret(caught.value, "the-channel-secret", "the-password", "1234")
