"""Africa's Talking's official Python SDK (``africastalking``) sends through the SMS
simulator and parses its answers.

The SDK is synchronous (requests), so it runs in a worker thread while the simulator
serves on the test's event loop. It has no documented setting for its host: every
service keeps it in ``_baseUrl``, which the service's ``_init_service`` builds
(``https://api.sandbox.africastalking.com/version1`` for the ``sandbox`` user). Only the
scheme and host of that URL are replaced by the simulator's; the path, the form, the
headers and the answer handling stay the SDK's own.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from africastalking.Service import AfricasTalkingException
from africastalking.SMS import SMSService

from simulators.sms import (
    SANDBOX_API_KEY,
    SANDBOX_SENDER_ID,
    SANDBOX_USERNAME,
    SmsSimSettings,
    SmsSimulator,
)

SANDBOX_BASE_URL = "https://api.sandbox.africastalking.com/version1"
KENYA = "+254711000000"
GAMBIA = "+2203000000"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[str]:
    simulator = SmsSimulator(SmsSimSettings(delivery_delay_seconds=0.01))
    yield await simulator.start()
    await simulator.stop()


def sdk_sms(sim: str, username: str = SANDBOX_USERNAME, api_key: str = SANDBOX_API_KEY) -> Any:
    """The SDK's SMS service for these credentials, its host pointed at the simulator."""
    service = SMSService(username, api_key)
    sdk_url = urlsplit(service._baseUrl)
    service._baseUrl = f"{sim}{sdk_url.path}"
    return service


async def recorded(http: aiohttp.ClientSession, sim: str) -> list[Any]:
    async with http.get(f"{sim}/_sim/requests") as response:
        return (await response.json())["items"]


def test_the_sdk_addresses_the_sandbox_host_for_the_sandbox_user() -> None:
    assert SMSService(SANDBOX_USERNAME, SANDBOX_API_KEY)._baseUrl == SANDBOX_BASE_URL


@pytest.mark.asyncio
async def test_sdk_send_is_parsed_as_json_and_its_request_is_what_the_simulator_expects(
    http: aiohttp.ClientSession, sim: str
) -> None:
    sms = sdk_sms(sim)
    answer = await asyncio.to_thread(
        sms.send, "Premium received", [KENYA], sender_id=SANDBOX_SENDER_ID, enqueue=True
    )
    assert isinstance(answer, dict)  # parsed as JSON: the Content-Type is exactly right
    data = answer["SMSMessageData"]
    assert data["Message"] == "Sent to 1/1 Total Cost: KES 0.8000"
    [recipient] = data["Recipients"]
    assert (recipient["statusCode"], recipient["status"], recipient["number"]) == (
        101,
        "Success",
        KENYA,
    )
    assert re.fullmatch(r"ATXid_[0-9a-f]{32}", recipient["messageId"])
    [record] = await recorded(http, sim)
    assert (record["path"], record["status"]) == ("/version1/messaging", 201)
    assert record["body"] == {
        "username": SANDBOX_USERNAME,
        "to": KENYA,
        "message": "Premium received",
        "bulkSMSMode": "1",
        "from": SANDBOX_SENDER_ID,
        "enqueue": "1",
    }
    headers = {name.lower(): value for name, value in record["headers"].items()}
    assert headers["accept"] == "application/json"
    assert headers["apikey"] == "[redacted]"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    async with http.get(f"{sim}/_sim/outbox/{KENYA}") as response:
        [message] = (await response.json())["items"]
    assert message["messageId"] == recipient["messageId"]


@pytest.mark.asyncio
async def test_sdk_send_to_several_numbers_reads_each_outcome(sim: str) -> None:
    answer = await asyncio.to_thread(
        sdk_sms(sim).send, "Reminder", [KENYA, GAMBIA, "+254799000406"]
    )
    data = answer["SMSMessageData"]
    assert data["Message"] == "Sent to 2/3 Total Cost: KES 1.6000"
    assert [(r["statusCode"], r["status"]) for r in data["Recipients"]] == [
        (101, "Success"),
        (101, "Success"),
        (406, "UserInBlacklist"),
    ]
    assert (data["Recipients"][2]["cost"], data["Recipients"][2]["messageId"]) == ("0", "None")


@pytest.mark.asyncio
async def test_sdk_with_a_wrong_api_key_raises_with_the_providers_text(sim: str) -> None:
    with pytest.raises(AfricasTalkingException, match="^The supplied authentication is invalid$"):
        await asyncio.to_thread(sdk_sms(sim, api_key="wrong").send, "Hi", [KENYA])


@pytest.mark.asyncio
async def test_sdk_with_an_unknown_sender_id_gets_no_recipients(sim: str) -> None:
    answer = await asyncio.to_thread(sdk_sms(sim).send, "Hi", [KENYA], sender_id="NOTOURS")
    assert answer == {"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}}


@pytest.mark.asyncio
async def test_sdk_raises_on_an_internal_error(http: aiohttp.ClientSession, sim: str) -> None:
    async with http.post(
        f"{sim}/_sim/faults", json={"target": "messaging", "kind": "http_500"}
    ) as response:
        assert response.status == 200
    with pytest.raises(AfricasTalkingException):
        await asyncio.to_thread(sdk_sms(sim).send, "Hi", [KENYA])
