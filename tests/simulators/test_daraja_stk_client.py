"""A third-party Daraja client (daraja-v3, imported as ``mpesa``) drives the simulator's
STK Push and query with its documented calls; only the base URL and the credentials
point at the simulator. A small aiohttp receiver stands in for the merchant.

The library builds the STK Timestamp from the host's local clock, while Daraja (and the
simulator) expect Nairobi time: these tests run the library with the host clock in
Nairobi time, as a Kenyan deployment has it, and one test shows that a clock in UTC
is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from mpesa import MpesaAsyncClient, MpesaClient, MpesaError

from simulators.daraja import SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator

from support import wait_until

KEY, SECRET = "sandbox-key", "sandbox-secret"
SHORTCODE = "174379"


def _set_local_time_zone(value: str | None) -> None:
    if value is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = value
    time.tzset()


@pytest.fixture
def host_time_zone() -> Iterator[Any]:
    """Set the process's local time zone (POSIX TZ) for the test; restored afterwards."""
    before = os.environ.get("TZ")
    yield _set_local_time_zone
    _set_local_time_zone(before)


@pytest.fixture
def nairobi_host(host_time_zone: Any) -> None:
    host_time_zone("EAT-3")


class Merchant:
    """The merchant's STK callback and C2B confirmation endpoints."""

    def __init__(self) -> None:
        self.callbacks: list[dict[str, Any]] = []
        self.confirmations: list[dict[str, Any]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/payments/stk/callback", self._stk)
        app.router.add_post("/payments/c2b/validation", self._validation)
        app.router.add_post("/payments/c2b/confirmation", self._confirmation)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _stk(self, request: web.Request) -> web.Response:
        self.callbacks.append(json.loads(await request.text()))
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

    async def _validation(self, request: web.Request) -> web.Response:
        return web.json_response({"ResultCode": "0", "ResultDesc": "Accepted"})

    async def _confirmation(self, request: web.Request) -> web.Response:
        self.confirmations.append(await request.json())
        return web.json_response({"ResultCode": 0, "ResultDesc": "Success"})


@pytest_asyncio.fixture
async def merchant() -> AsyncIterator[Merchant]:
    merchant = Merchant()
    await merchant.start()
    yield merchant
    await merchant.stop()


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[DarajaSimulator]:
    """Payers do not answer by themselves: the test decides each prompt."""
    simulator = DarajaSimulator(
        DarajaSimSettings(
            consumer_key=KEY, consumer_secret=SECRET, local_mode=True, stk_auto_seconds=None
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
        passkey=SANDBOX_PASSKEY,
        sandbox=True,
        base_url=simulator.base_url,
    )


async def decide(simulator: DarajaSimulator, checkout_id: str, action: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{simulator.base_url}/_sim/stk/{checkout_id}", json={"action": action}) as r,
    ):
        assert r.status == 200, await r.text()


@pytest.mark.asyncio
async def test_the_library_pushes_queries_and_parses_the_callback(
    nairobi_host: None, simulator: DarajaSimulator, merchant: Merchant
) -> None:
    async with async_client(simulator) as client:
        pushed = await client.stk_push(
            phone="0708374149",
            amount=1,
            reference="070707070",
            description="Premium",
            callback_url=f"{merchant.base_url}/payments/stk/callback",
        )
        assert re.fullmatch(r"ws_CO_\d{18}", pushed.checkout_request_id)
        assert re.fullmatch(r"\d{5}-\d{7}-1", pushed.merchant_request_id)
        assert pushed.response_description == "Success. Request accepted for processing"
        assert pushed.customer_message == "Success. Request accepted for processing"

        with pytest.raises(MpesaError) as pending:
            await client.stk_query(pushed.checkout_request_id)
        assert pending.value.code == "500.001.1001"
        assert "The transaction is being processed" in pending.value.message

        await decide(simulator, pushed.checkout_request_id, "accept")
        await wait_until(lambda: merchant.callbacks, "the STK callback at the merchant")
        [callback] = merchant.callbacks
        paid = MpesaAsyncClient.parse_stk_callback(callback)
        assert paid["paid"] is True
        assert paid["result_code"] == "0"
        assert paid["amount"] == 1
        assert re.fullmatch(r"[A-Z][A-Z0-9]{9}", paid["mpesa_receipt"])
        assert re.fullmatch(r"\d{14}", str(paid["transaction_date"]))
        assert paid["phone"] == "254708374149"
        assert paid["checkout_request_id"] == pushed.checkout_request_id
        assert paid["merchant_request_id"] == pushed.merchant_request_id

        queried = await client.stk_query(pushed.checkout_request_id)
        assert queried.is_paid is True
        assert queried.result_code == "0"
        assert queried.result_desc == "The service request is processed successfully."
        assert queried.merchant_request_id == pushed.merchant_request_id
        assert queried.checkout_request_id == pushed.checkout_request_id


@pytest.mark.asyncio
async def test_the_library_sees_a_cancelled_prompt_as_unpaid(
    nairobi_host: None, simulator: DarajaSimulator, merchant: Merchant
) -> None:
    async with async_client(simulator) as client:
        pushed = await client.stk_push(
            phone="254700000201",
            amount=2,
            reference="070707070",
            callback_url=f"{merchant.base_url}/payments/stk/callback",
        )
        await decide(simulator, pushed.checkout_request_id, "cancel")
        await wait_until(lambda: merchant.callbacks, "the STK callback at the merchant")
        cancelled = MpesaAsyncClient.parse_stk_callback(merchant.callbacks[0])
        assert (cancelled["paid"], cancelled["result_code"]) == (False, "1032")
        assert cancelled["result_desc"] == "Request cancelled by user"
        queried = await client.stk_query(pushed.checkout_request_id)
        assert (queried.is_paid, queried.result_code) == (False, "1032")
        assert queried.result_desc == "Request cancelled by user"


@pytest.mark.asyncio
async def test_the_librarys_synchronous_client_works_too(
    nairobi_host: None, simulator: DarajaSimulator, merchant: Merchant
) -> None:
    client = MpesaClient(
        consumer_key=KEY,
        consumer_secret=SECRET,
        shortcode=SHORTCODE,
        passkey=SANDBOX_PASSKEY,
        sandbox=True,
        base_url=simulator.base_url,
    )
    pushed = await asyncio.to_thread(
        client.stk_push,
        phone="+254 708 374149",
        amount=3,
        reference="070707070",
        callback_url=f"{merchant.base_url}/payments/stk/callback",
    )
    await decide(simulator, pushed.checkout_request_id, "insufficient")
    await wait_until(lambda: merchant.callbacks, "the STK callback at the merchant")
    queried = await asyncio.to_thread(client.stk_query, pushed.checkout_request_id)
    assert (queried.is_paid, queried.result_code) == (False, "1")
    assert queried.result_desc == "The balance is insufficient for the transaction."


@pytest.mark.asyncio
async def test_a_paybill_registered_through_the_library_gets_the_c2b_confirmation_too(
    nairobi_host: None, simulator: DarajaSimulator, merchant: Merchant
) -> None:
    async with async_client(simulator) as client:
        registered = await client.c2b_register_urls(
            validation_url=f"{merchant.base_url}/payments/c2b/validation",
            confirmation_url=f"{merchant.base_url}/payments/c2b/confirmation",
        )
        assert registered["ResponseCode"] == "0"
        pushed = await client.stk_push(
            phone="0708374149",
            amount=4,
            reference="CHF060606",
            callback_url=f"{merchant.base_url}/payments/stk/callback",
        )
        await decide(simulator, pushed.checkout_request_id, "accept")
        await wait_until(
            lambda: merchant.callbacks and merchant.confirmations, "the STK and C2B callbacks"
        )
        paid = MpesaAsyncClient.parse_stk_callback(merchant.callbacks[0])
        [confirmation] = merchant.confirmations
        assert confirmation["TransID"] == paid["mpesa_receipt"]
        assert (confirmation["BillRefNumber"], confirmation["TransAmount"]) == ("CHF060606", "4.00")


@pytest.mark.asyncio
async def test_a_host_clock_in_utc_makes_the_librarys_timestamp_invalid(
    host_time_zone: Any, simulator: DarajaSimulator, merchant: Merchant
) -> None:
    host_time_zone("UTC0")
    async with async_client(simulator) as client:
        with pytest.raises(MpesaError) as refused:
            await client.stk_push(
                phone="0708374149",
                amount=1,
                reference="070707070",
                callback_url=f"{merchant.base_url}/payments/stk/callback",
            )
    assert refused.value.code == "400.002.02"
    assert "Invalid Timestamp" in refused.value.message
