"""The Daraja client against the simulator (real sockets) and against answers only the
real Daraja gives (a number for expires_in, an empty 400), served by a tiny local app."""

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from server.integrations.transport import (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.mpesa.client import DarajaClient
from server.mpesa.settings import DarajaSettings
from simulators.daraja import DarajaSimulator

from support import sim_control

URLS = (
    "http://127.0.0.1:9/api/v1/c2b/confirmation/abcdefgh",
    "http://127.0.0.1:9/api/v1/c2b/validation/abcdefgh",
)


def client_for(
    http,
    base_url: str,
    key: str = "sandbox-key",
    secret: str = "sandbox-secret",
    timeout: float = 5.0,
) -> DarajaClient:
    settings = DarajaSettings(
        base_url=base_url, consumer_key=key, consumer_secret=secret, timeout_seconds=timeout
    )
    return DarajaClient(http, settings, Clock())


async def sim_requests(http, sim: DarajaSimulator, path: str) -> list[dict]:
    items = (await sim_control(http, sim.base_url, "GET", "requests"))["items"]
    return [item for item in items if item["path"] == path]


async def add_fault(http, sim: DarajaSimulator, **fault) -> None:
    await sim_control(http, sim.base_url, "POST", "faults", fault)


async def register(
    client: DarajaClient,
    version: str = "v2",
    response_type: str = "Completed",
    urls: tuple[str, str] = URLS,
):
    return await client.register_urls("600984", response_type, urls[0], urls[1], version)


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_registration_succeeds_with_one_oauth_call_for_many_requests(
    http, daraja_sim, version
) -> None:
    client = client_for(http, daraja_sim.base_url)
    results = await asyncio.gather(*(register(client, version) for _ in range(5)))
    assert all(result.conversation_id for result in results)
    assert len(await sim_requests(http, daraja_sim, "/oauth/v1/generate")) == 1
    assert client.tokens.fetches == 1


@pytest.mark.asyncio
async def test_invalid_access_token_answer_logs_in_again_and_retries_once(http, daraja_sim) -> None:
    client = client_for(http, daraja_sim.base_url)
    await register(client)
    await sim_control(http, daraja_sim.base_url, "POST", "reset")  # forgets tokens
    assert (await register(client)).conversation_id
    assert len(await sim_requests(http, daraja_sim, "/oauth/v1/generate")) == 1
    assert client.tokens.fetches == 2


@pytest.mark.asyncio
async def test_wrong_consumer_secret_is_rejected_with_daraja_code(http, daraja_sim) -> None:
    client = client_for(http, daraja_sim.base_url, secret="wrong")
    with pytest.raises(ProviderRejected) as caught:
        await register(client)
    assert caught.value.code == "400.008.01"


@pytest.mark.asyncio
async def test_forbidden_word_in_a_url_is_rejected_with_the_providers_message(
    http, daraja_sim
) -> None:
    client = client_for(http, daraja_sim.base_url)
    bad = ("http://127.0.0.1:9/MPesa/confirmation", URLS[1])
    with pytest.raises(ProviderRejected) as caught:
        await register(client, urls=bad)
    assert caught.value.code == "400.003.02"
    assert "MPESA" in caught.value.reason.upper()


@pytest.mark.asyncio
async def test_invalid_response_type_is_rejected(http, daraja_sim) -> None:
    with pytest.raises(ProviderRejected):
        await register(client_for(http, daraja_sim.base_url), response_type="completed")


@pytest.mark.asyncio
async def test_provider_500_is_unavailable(http, daraja_sim) -> None:
    await add_fault(http, daraja_sim, target="registerurl", kind="http_500")
    with pytest.raises(ProviderUnavailable):
        await register(client_for(http, daraja_sim.base_url))


@pytest.mark.asyncio
async def test_dropped_answer_leaves_the_outcome_unknown(http, daraja_sim) -> None:
    await add_fault(http, daraja_sim, target="registerurl", kind="drop")
    with pytest.raises(ProviderOutcomeUnknown):
        await register(client_for(http, daraja_sim.base_url))


@pytest.mark.asyncio
async def test_slow_answer_times_out_as_unknown(http, daraja_sim) -> None:
    await add_fault(http, daraja_sim, target="registerurl", kind="latency", seconds=2)
    with pytest.raises(ProviderOutcomeUnknown, match="timed out"):
        await register(client_for(http, daraja_sim.base_url, timeout=0.3))


@pytest.mark.asyncio
async def test_unreachable_provider_is_unavailable(http) -> None:
    with pytest.raises(ProviderUnavailable, match="cannot connect"):
        await register(client_for(http, "http://127.0.0.1:9"))


@pytest.mark.asyncio
async def test_simulate_returns_the_conversation_id(http, daraja_sim) -> None:
    client = client_for(http, daraja_sim.base_url)
    await register(client)
    conversation = await client.simulate_payment("600984", "10", "254708374149", "070707070")
    async with http.get(f"{daraja_sim.base_url}/_sim/transactions/{conversation}") as answer:
        assert (await answer.json())["amount"] == "10.00"


# --- answers the simulator does not give, but the real Daraja has ------------


@pytest_asyncio.fixture
async def odd_daraja() -> AsyncIterator[tuple[str, dict]]:
    behaviour = {
        "oauth": {"access_token": "T1", "expires_in": 3599},
        "oauth_status": 200,
        "register": {
            "ConversationID": "old-id",
            "ResponseCode": "0",
            "ResponseDescription": "success",
        },
    }

    async def oauth(request: web.Request) -> web.Response:
        if behaviour["oauth_status"] != 200:
            return web.Response(status=behaviour["oauth_status"], body=b"")
        return web.json_response(behaviour["oauth"])

    async def registerurl(request: web.Request) -> web.Response:
        return web.json_response(behaviour["register"])

    app = web.Application()
    app.router.add_get("/oauth/v1/generate", oauth)
    app.router.add_post("/mpesa/c2b/v2/registerurl", registerurl)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", behaviour
    await runner.cleanup()


@pytest.mark.asyncio
async def test_numeric_expires_in_and_older_answer_fields_are_accepted(http, odd_daraja) -> None:
    base_url, _ = odd_daraja
    registration = await register(client_for(http, base_url))
    assert registration.conversation_id == "old-id"
    assert registration.description == "success"


@pytest.mark.asyncio
async def test_empty_400_from_oauth_means_wrong_credentials(http, odd_daraja) -> None:
    base_url, behaviour = odd_daraja
    behaviour["oauth_status"] = 400
    with pytest.raises(ProviderRejected) as caught:
        await register(client_for(http, base_url))
    assert caught.value.code == "400.008.01"


@pytest.mark.asyncio
async def test_oauth_answer_without_a_token_is_unavailable(http, odd_daraja) -> None:
    base_url, behaviour = odd_daraja
    behaviour["oauth"] = {"expires_in": "3599"}
    with pytest.raises(ProviderUnavailable, match="usable token"):
        await register(client_for(http, base_url))


@pytest.mark.asyncio
async def test_unexpected_registration_answer_is_not_taken_for_success(http, odd_daraja) -> None:
    base_url, behaviour = odd_daraja
    behaviour["register"] = {"ResponseCode": "1", "ResponseDescription": "?"}
    with pytest.raises(ProviderOutcomeUnknown):
        await register(client_for(http, base_url))


@pytest.mark.asyncio
async def test_a_query_refused_with_the_busy_code_for_another_reason_is_not_pending(
    http, daraja_sim
) -> None:
    """Daraja answers `500.001.1001` both for "being processed" (pending) and for
    refusals such as wrong credentials: only the first is a pending prompt."""
    settings = DarajaSettings(
        base_url=daraja_sim.base_url,
        consumer_key="sandbox-key",
        consumer_secret="sandbox-secret",
        passkey="not-the-passkey",
        stk_shortcode="174379",
    )
    client = DarajaClient(http, settings, Clock())
    with pytest.raises(ProviderRejected) as refused:
        await client.stk_query("ws_CO_000000000000000001")
    assert refused.value.code == "500.001.1001"
