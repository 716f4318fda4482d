"""A third-party Daraja client (daraja-v3, imported as ``mpesa``) asks the simulator for
the account balance with its documented call: only the base URL, the credentials and a
SecurityCredential made from the shipped certificate point it at the simulator. A small
aiohttp receiver stands in for the merchant's ResultURL."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from mpesa import MpesaAsyncClient

from simulators.daraja import (
    SANDBOX_CERTIFICATE_PATH,
    SANDBOX_INITIATOR,
    SANDBOX_INITIATOR_PASSWORD,
    DarajaSimSettings,
    DarajaSimulator,
)

from support import wait_until

KEY, SECRET = "sandbox-key", "sandbox-secret"
SHORTCODE = "600984"


def security_credential(password: str) -> str:
    certificate = x509.load_pem_x509_certificate(SANDBOX_CERTIFICATE_PATH.read_bytes())
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return base64.b64encode(key.encrypt(password.encode(), padding.PKCS1v15())).decode()


class ResultReceiver:
    """The merchant's ResultURL and QueueTimeOutURL."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self.timeouts: list[dict[str, Any]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/mpesa/results", self._result)
        app.router.add_post("/mpesa/timeouts", self._timeout)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _result(self, request: web.Request) -> web.Response:
        self.results.append(json.loads(await request.text()))
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

    async def _timeout(self, request: web.Request) -> web.Response:
        self.timeouts.append(json.loads(await request.text()))
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[ResultReceiver]:
    receiver = ResultReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[DarajaSimulator]:
    simulator = DarajaSimulator(
        DarajaSimSettings(
            consumer_key=KEY, consumer_secret=SECRET, local_mode=True, result_delay_seconds=0.05
        )
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


def async_client(simulator: DarajaSimulator) -> MpesaAsyncClient:
    return MpesaAsyncClient(
        consumer_key=KEY,
        consumer_secret=SECRET,
        shortcode=SHORTCODE,
        sandbox=True,
        base_url=simulator.base_url,
    )


async def pay(simulator: DarajaSimulator, amounts: tuple[str, ...]) -> None:
    """C2B payments through the simulator (the library has no simulate call)."""
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    async with aiohttp.ClientSession(simulator.base_url) as http:
        async with http.get(
            "/oauth/v1/generate?grant_type=client_credentials",
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            token = (await response.json())["access_token"]
        for amount in amounts:
            body = {
                "ShortCode": SHORTCODE,
                "CommandID": "CustomerPayBillOnline",
                "Amount": amount,
                "Msisdn": "254708374149",
                "BillRefNumber": "070707070",
            }
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post("/mpesa/c2b/v1/simulate", json=body, headers=headers) as r:
                assert r.status == 200, await r.text()


@pytest.mark.asyncio
async def test_the_librarys_account_balance_gets_the_credited_total_at_the_result_url(
    simulator: DarajaSimulator, receiver: ResultReceiver
) -> None:
    await pay(simulator, ("1500", "250.25"))

    async def credited() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{simulator.base_url}/_sim/state") as response,
        ):
            return (await response.json())["balances"].get(SHORTCODE) == "1750.25"

    await wait_until(credited, "both payments credited")
    async with async_client(simulator) as client:
        answer = await client.account_balance(
            callback_url=f"{receiver.base_url}/mpesa/results",
            queue_timeout_url=f"{receiver.base_url}/mpesa/timeouts",
            initiator_name=SANDBOX_INITIATOR,
            security_credential=security_credential(SANDBOX_INITIATOR_PASSWORD),
        )
    assert answer["ResponseCode"] == "0"
    assert answer["ResponseDescription"] == "Accept the service request successfully."

    await wait_until(lambda: receiver.results, "the balance result")
    [body] = receiver.results
    result = body["Result"]
    assert result["ResultCode"] == 0
    assert result["OriginatorConversationID"] == answer["OriginatorConversationID"]
    assert result["ConversationID"] == answer["ConversationID"]
    found = {item["Key"]: item["Value"] for item in result["ResultParameters"]["ResultParameter"]}
    accounts = {
        fields[0]: fields[2]
        for fields in (account.split("|") for account in found["AccountBalance"].split("&"))
    }
    assert accounts == {
        "Working Account": "700000.00",
        "Utility Account": "1750.25",
        "Charges Paid Account": "-1540.00",
    }
    assert receiver.timeouts == []


@pytest.mark.asyncio
async def test_the_librarys_account_balance_with_a_wrong_password_gets_2001(
    simulator: DarajaSimulator, receiver: ResultReceiver
) -> None:
    async with async_client(simulator) as client:
        answer = await client.account_balance(
            callback_url=f"{receiver.base_url}/mpesa/results",
            queue_timeout_url=f"{receiver.base_url}/mpesa/timeouts",
            initiator_name=SANDBOX_INITIATOR,
            security_credential=security_credential("not the password"),
        )
    assert answer["ResponseCode"] == "0"
    await wait_until(lambda: receiver.results, "the balance result")
    result = receiver.results[0]["Result"]
    assert (result["ResultCode"], result["ResultDesc"]) == (
        2001,
        "The initiator information is invalid.",
    )
