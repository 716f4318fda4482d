"""M-Pesa Express (STK Push and its query) in the Daraja simulator, over real sockets, with
a small receiver standing in for the merchant's callback endpoints."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from simulators import daraja
from simulators.daraja import NAIROBI, SANDBOX_PASSKEY, DarajaSimSettings, DarajaSimulator

from support import wait_until

KEY, SECRET = "sandbox-key", "sandbox-secret"
SHORTCODE = "174379"
PHONE = "254708374149"
FAST = 0.05  # seconds before the payer answers, in tests that do not hold a prompt

StartSim = Callable[..., Awaitable[str]]


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def nairobi_timestamp(shift: timedelta = timedelta()) -> str:
    return (datetime.now(NAIROBI) + shift).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


class Merchant:
    """The merchant's endpoints: the STK callback and the C2B validation/confirmation."""

    def __init__(self) -> None:
        self.stk_texts: list[str] = []  # raw bodies, to see how numbers were written
        self.validations: list[dict[str, Any]] = []
        self.confirmations: list[dict[str, Any]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.stk_texts]

    @property
    def callback_url(self) -> str:
        return f"{self.base_url}/payments/stk/s3cret"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/payments/stk/s3cret", self._stk)
        app.router.add_post("/c2b/validation/s3cret", self._validation)
        app.router.add_post("/c2b/confirmation/s3cret", self._confirmation)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _stk(self, request: web.Request) -> web.Response:
        self.stk_texts.append(await request.text())
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

    async def _validation(self, request: web.Request) -> web.Response:
        self.validations.append(await request.json())
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


@pytest.fixture
def start_sim(start_daraja: StartSim) -> StartSim:
    """Payers answer after FAST seconds unless a test says otherwise."""
    return functools.partial(start_daraja, stk_auto_seconds=FAST)


@pytest_asyncio.fixture
async def sim(start_sim: StartSim) -> str:
    return await start_sim()


@pytest_asyncio.fixture
async def held(start_sim: StartSim) -> str:
    """A simulator whose payers never answer by themselves: the control API decides."""
    return await start_sim(stk_auto_seconds=None)


async def token_for(http: aiohttp.ClientSession, sim: str) -> str:
    async with http.get(
        f"{sim}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        headers=basic(KEY, SECRET),
    ) as response:
        assert response.status == 200
        return (await response.json())["access_token"]


async def post(
    http: aiohttp.ClientSession, url: str, body: Any, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


def stk_body(
    merchant: Merchant,
    *,
    shortcode: str = SHORTCODE,
    passkey: str = SANDBOX_PASSKEY,
    timestamp: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid processrequest body (Password from shortcode, passkey, timestamp), overridden."""
    timestamp = timestamp or nairobi_timestamp()
    body = {
        "BusinessShortCode": shortcode,
        "Password": stk_password(shortcode, passkey, timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1,
        "PartyA": PHONE,
        "PartyB": shortcode,
        "PhoneNumber": PHONE,
        "CallBackURL": merchant.callback_url,
        "AccountReference": "070707070",
        "TransactionDesc": "Premium",
    }
    return {**body, **overrides}


def query_body(checkout_id: str, shortcode: str = SHORTCODE, **overrides: Any) -> dict[str, Any]:
    timestamp = nairobi_timestamp()
    body = {
        "BusinessShortCode": shortcode,
        "Password": stk_password(shortcode, SANDBOX_PASSKEY, timestamp),
        "Timestamp": timestamp,
        "CheckoutRequestID": checkout_id,
    }
    return {**body, **overrides}


async def push(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant, **overrides: Any
) -> dict[str, Any]:
    """Send one prompt that must be accepted: the acknowledgement."""
    token = await token_for(http, sim)
    url = f"{sim}/mpesa/stkpush/v1/processrequest"
    status, answer = await post(http, url, stk_body(merchant, **overrides), token)
    assert (status, answer.get("ResponseCode")) == (200, "0"), answer
    return answer


async def query(
    http: aiohttp.ClientSession, sim: str, checkout_id: str, **overrides: Any
) -> tuple[int, Any]:
    token = await token_for(http, sim)
    url = f"{sim}/mpesa/stkpushquery/v1/query"
    return await post(http, url, query_body(checkout_id, **overrides), token)


async def decide(http: aiohttp.ClientSession, sim: str, checkout_id: str, action: str) -> Any:
    status, prompt = await post(http, f"{sim}/_sim/stk/{checkout_id}", {"action": action})
    assert status == 200, prompt
    return prompt


async def finished_deliveries(
    http: aiohttp.ClientSession, sim: str, checkout_id: str, count: int
) -> list[dict[str, Any]]:
    """The deliveries of one prompt once `count` of them exist and all have finished."""
    url = f"{sim}/_sim/deliveries?checkout_request_id={checkout_id}"
    items: list[dict[str, Any]] = []

    async def finished() -> bool:
        items[:] = (await get_json(http, url))["items"]
        return len(items) == count and all(item["finished_at"] for item in items)

    await wait_until(finished, f"{count} finished deliveries", within=8.0)
    return items


def metadata(callback: dict[str, Any]) -> dict[str, Any]:
    items = callback["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    return {item["Name"]: item.get("Value") for item in items}


# --------------------------------------------------------------------------- processrequest


@pytest.mark.asyncio
async def test_accepted_prompt_is_acknowledged_in_darajas_shape(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    answer = await push(http, sim, merchant)
    assert set(answer) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    }
    assert re.fullmatch(r"\d{5}-\d{7}-1", answer["MerchantRequestID"])
    assert re.fullmatch(r"ws_CO_\d{18}", answer["CheckoutRequestID"])
    assert answer["ResponseDescription"] == "Success. Request accepted for processing"
    assert answer["CustomerMessage"] == "Success. Request accepted for processing"


@pytest.mark.asyncio
async def test_numbers_and_numeric_strings_are_both_accepted(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    answer = await push(
        http,
        sim,
        merchant,
        Amount="1",
        BusinessShortCode=int(SHORTCODE),
        PartyA=int(PHONE),
        PartyB=int(SHORTCODE),
        PhoneNumber=int(PHONE),
        AccountReference=70707070,
    )
    other = await push(http, sim, merchant, Amount=2.0, PhoneNumber="254112345678")
    assert answer["CheckoutRequestID"] != other["CheckoutRequestID"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"BusinessShortCode": "17437X"}, "BusinessShortCode"),
        ({"BusinessShortCode": None}, "BusinessShortCode"),
        ({"Password": ""}, "Password"),
        ({"Timestamp": "2026120210300"}, "Timestamp"),
        ({"Timestamp": "20261302103000"}, "Timestamp"),
        ({"shift": timedelta(minutes=-11)}, "Timestamp"),
        ({"shift": timedelta(minutes=11)}, "Timestamp"),
        ({"shift": timedelta(hours=-3)}, "Timestamp"),  # UTC time, not Nairobi time
        ({"TransactionType": "CustomerPayBill"}, "TransactionType"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": -5}, "Amount"),
        ({"Amount": 1.5}, "Amount"),
        ({"Amount": "1.50"}, "Amount"),
        ({"Amount": "one"}, "Amount"),
        ({"Amount": True}, "Amount"),
        ({"PartyA": "254808374149"}, "PartyA"),
        ({"PartyB": "12"}, "PartyB"),
        ({"PhoneNumber": "0708374149"}, "PhoneNumber"),
        ({"PhoneNumber": "+254708374149"}, "PhoneNumber"),
        ({"PhoneNumber": "25470837414"}, "PhoneNumber"),
        ({"PhoneNumber": None}, "PhoneNumber"),
        ({"CallBackURL": "ftp://example.com/cb"}, "CallBackURL"),
        ({"CallBackURL": "not a url"}, "CallBackURL"),
        ({"AccountReference": "A" * 13}, "AccountReference"),
        ({"TransactionDesc": "D" * 14}, "TransactionDesc"),
    ],
)
async def test_an_invalid_field_is_refused_with_400_002_02(
    http: aiohttp.ClientSession,
    sim: str,
    merchant: Merchant,
    overrides: dict[str, Any],
    field: str,
) -> None:
    shift = overrides.pop("shift", None)
    timestamp = None if shift is None else nairobi_timestamp(shift)
    body = stk_body(merchant, timestamp=timestamp, **overrides)
    body = {name: value for name, value in body.items() if value is not None}
    token = await token_for(http, sim)
    status, answer = await post(http, f"{sim}/mpesa/stkpush/v1/processrequest", body, token)
    assert (status, answer["errorCode"]) == (400, "400.002.02")
    assert answer["errorMessage"] == f"Bad Request - Invalid {field}"
    assert answer["requestId"]
    assert (await get_json(http, f"{sim}/_sim/stk"))["items"] == []


@pytest.mark.asyncio
async def test_limits_are_inclusive(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await push(
        http,
        sim,
        merchant,
        AccountReference="A" * 12,
        TransactionDesc="D" * 13,
        timestamp=nairobi_timestamp(timedelta(minutes=-9)),
    )


@pytest.mark.asyncio
async def test_a_body_that_is_not_json_is_an_invalid_payload(
    http: aiohttp.ClientSession, sim: str
) -> None:
    token = await token_for(http, sim)
    async with http.post(
        f"{sim}/mpesa/stkpush/v1/processrequest",
        data="{not json",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        answer = await response.json()
    assert (response.status, answer["errorCode"]) == (400, "400.002.05")


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["stkpush/v1/processrequest", "stkpushquery/v1/query"])
async def test_both_stk_endpoints_need_a_bearer_token(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant, path: str
) -> None:
    status, answer = await post(http, f"{sim}/mpesa/{path}", stk_body(merchant))
    assert (status, answer["errorCode"]) == (404, "404.001.03")
    assert answer["errorMessage"] == "Invalid Access Token"


# --------------------------------------------------------------------------- password


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("shortcode", "passkey", "stamp"),
    [
        (SHORTCODE, "not-the-passkey", None),
        (SHORTCODE, SANDBOX_PASSKEY, "20200101000000"),
        ("600984", SANDBOX_PASSKEY, None),
    ],
    ids=["wrong-passkey", "other-timestamp", "other-shortcode"],
)
async def test_a_password_that_is_not_shortcode_passkey_timestamp_is_wrong_credentials(
    http: aiohttp.ClientSession,
    sim: str,
    merchant: Merchant,
    shortcode: str,
    passkey: str,
    stamp: str | None,
) -> None:
    timestamp = nairobi_timestamp()
    password = stk_password(shortcode, passkey, stamp or timestamp)
    body = stk_body(merchant, timestamp=timestamp, Password=password)
    token = await token_for(http, sim)
    status, answer = await post(http, f"{sim}/mpesa/stkpush/v1/processrequest", body, token)
    assert (status, answer["errorCode"]) == (500, "500.001.1001")
    assert answer["errorMessage"] == "Wrong credentials"


@pytest.mark.asyncio
async def test_both_sandbox_shortcodes_work_with_the_published_passkey(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    for shortcode in ("174379", "600984"):
        await push(http, sim, merchant, shortcode=shortcode)


@pytest.mark.asyncio
async def test_an_unknown_shortcode_is_merchant_does_not_exist(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    token = await token_for(http, sim)
    body = stk_body(merchant, shortcode="123456")
    status, answer = await post(http, f"{sim}/mpesa/stkpush/v1/processrequest", body, token)
    assert (status, answer["errorCode"]) == (500, "500.001.1001")
    assert answer["errorMessage"] == "Merchant does not exist"


@pytest.mark.asyncio
async def test_configured_passkeys_replace_the_sandbox_ones(
    http: aiohttp.ClientSession, start_sim: StartSim, merchant: Merchant
) -> None:
    sim = await start_sim(stk_passkeys={"654321": "my-own-passkey"})
    await push(http, sim, merchant, shortcode="654321", passkey="my-own-passkey")
    token = await token_for(http, sim)
    status, answer = await post(
        http, f"{sim}/mpesa/stkpush/v1/processrequest", stk_body(merchant), token
    )
    assert (status, answer["errorMessage"]) == (500, "Merchant does not exist")


@pytest.mark.asyncio
async def test_the_password_is_redacted_in_the_request_log(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await push(http, sim, merchant)
    recorded = (await get_json(http, f"{sim}/_sim/requests"))["items"][-1]
    assert recorded["path"] == "/mpesa/stkpush/v1/processrequest"
    assert recorded["body"]["Password"] == "[redacted]"
    assert recorded["body"]["PhoneNumber"] == PHONE


# --------------------------------------------------------------------------- the callback


@pytest.mark.asyncio
async def test_by_default_the_payer_accepts_after_about_a_second_and_the_callback_follows(
    http: aiohttp.ClientSession, start_sim: StartSim, merchant: Merchant
) -> None:
    sim = await start_sim(stk_auto_seconds=DarajaSimSettings().stk_auto_seconds)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await push(http, sim, merchant, Amount="7")
    checkout_id = answer["CheckoutRequestID"]
    prompt = await get_json(http, f"{sim}/_sim/stk/{checkout_id}")
    assert (prompt["status"], prompt["ResultCode"]) == ("pending", None)
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the STK callback", within=5.0)
    assert 1.0 <= loop.time() - started < 4.0
    [text] = merchant.stk_texts
    callback = json.loads(text)
    assert set(callback) == {"Body"}
    assert set(callback["Body"]) == {"stkCallback"}
    stk = callback["Body"]["stkCallback"]
    assert set(stk) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResultCode",
        "ResultDesc",
        "CallbackMetadata",
    }
    assert stk["MerchantRequestID"] == answer["MerchantRequestID"]
    assert stk["CheckoutRequestID"] == checkout_id
    assert stk["ResultCode"] == 0 and type(stk["ResultCode"]) is int
    assert stk["ResultDesc"] == "The service request is processed successfully."
    items = stk["CallbackMetadata"]["Item"]
    assert [item["Name"] for item in items] == [
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    ]
    assert items[2] == {"Name": "Balance"}  # no Value at all
    values = metadata(callback)
    assert values["Amount"] == 7 and isinstance(values["Amount"], float)
    assert '{"Name": "Amount", "Value": 7.00}' in text  # written as Daraja writes it
    assert re.fullmatch(r"[A-Z][A-Z0-9]{9}", values["MpesaReceiptNumber"])
    assert type(values["TransactionDate"]) is int
    paid_at = datetime.strptime(str(values["TransactionDate"]), "%Y%m%d%H%M%S")
    assert abs(paid_at.replace(tzinfo=NAIROBI) - datetime.now(NAIROBI)) < timedelta(minutes=1)
    assert values["PhoneNumber"] == int(PHONE) and type(values["PhoneNumber"]) is int
    [delivery] = await finished_deliveries(http, sim, checkout_id, 1)
    assert delivery["kind"] == "stk_callback"
    assert delivery["url"] == merchant.callback_url
    assert (delivery["outcome"], delivery["http_status"], delivery["fault"]) == (
        "answered",
        200,
        None,
    )
    assert delivery["answer"] == {"ResultCode": 0, "ResultDesc": "Accepted"}
    assert delivery["trans_id"] == values["MpesaReceiptNumber"]
    assert delivery["body"] == callback
    prompt = await get_json(http, f"{sim}/_sim/stk/{checkout_id}")
    assert (prompt["status"], prompt["action"], prompt["decided_by"]) == (
        "decided",
        "accept",
        "payer",
    )
    assert prompt["MpesaReceiptNumber"] == values["MpesaReceiptNumber"]


@pytest.mark.asyncio
async def test_a_buy_goods_prompt_pays_the_till(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    answer = await push(
        http, sim, merchant, TransactionType="CustomerBuyGoodsOnline", PartyB="5123456", Amount=3
    )
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the STK callback")
    assert metadata(merchant.callbacks[0])["Amount"] == 3
    prompt = await get_json(http, f"{sim}/_sim/stk/{answer['CheckoutRequestID']}")
    assert (prompt["PartyB"], prompt["ResultCode"]) == ("5123456", 0)
    balances = (await get_json(http, f"{sim}/_sim/state"))["balances"]
    assert balances == {"5123456": "3.00"}


# --------------------------------------------------------------------------- magic numbers


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("phone", "code", "description"),
    [
        ("254700000201", 1032, "Request cancelled by user"),
        ("254700000202", 1037, "DS timeout user cannot be reached"),
        ("254700000203", 2001, "The initiator information is invalid."),
        ("254700000204", 1, "The balance is insufficient for the transaction."),
    ],
)
async def test_a_magic_phone_picks_the_payers_answer(
    http: aiohttp.ClientSession,
    sim: str,
    merchant: Merchant,
    phone: str,
    code: int,
    description: str,
) -> None:
    answer = await push(http, sim, merchant, PartyA=phone, PhoneNumber=phone)
    checkout_id = answer["CheckoutRequestID"]
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the STK callback")
    assert merchant.callbacks[0] == {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": answer["MerchantRequestID"],
                "CheckoutRequestID": checkout_id,
                "ResultCode": code,
                "ResultDesc": description,
            }
        }
    }
    prompt = await get_json(http, f"{sim}/_sim/stk/{checkout_id}")
    assert (prompt["decided_by"], prompt["MpesaReceiptNumber"]) == ("magic", None)
    status, result = await query(http, sim, checkout_id)
    assert status == 200
    assert (result["ResultCode"], result["ResultDesc"]) == (str(code), description)
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"] == {}


@pytest.mark.asyncio
async def test_magic_phone_205_pays_but_the_callback_never_arrives(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    phone = "254700000205"
    checkout_id = (await push(http, sim, merchant, PartyA=phone, PhoneNumber=phone))[
        "CheckoutRequestID"
    ]
    [delivery] = await finished_deliveries(http, sim, checkout_id, 1)
    assert (delivery["kind"], delivery["outcome"], delivery["fault"]) == (
        "stk_callback",
        "dropped",
        "magic:drop",
    )
    status, result = await query(http, sim, checkout_id)
    assert (status, result["ResultCode"]) == (200, "0")
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"][SHORTCODE] == "1.00"
    await asyncio.sleep(0.1)  # an absence: a stray callback would show by now
    assert merchant.stk_texts == []


@pytest.mark.asyncio
async def test_magic_phone_206_delivers_the_callback_twice(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    phone = "254700000206"
    checkout_id = (await push(http, sim, merchant, PartyA=phone, PhoneNumber=phone))[
        "CheckoutRequestID"
    ]
    deliveries = await finished_deliveries(http, sim, checkout_id, 2)
    assert [(d["outcome"], d["fault"]) for d in deliveries] == [("answered", "magic:duplicate")] * 2
    assert len(merchant.stk_texts) == 2
    assert merchant.stk_texts[0] == merchant.stk_texts[1]
    assert metadata(merchant.callbacks[0])["PhoneNumber"] == int(phone)


@pytest.mark.asyncio
async def test_magic_phone_207_delivers_the_callback_5_seconds_late(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    phone = "254700000207"
    loop = asyncio.get_running_loop()
    started = loop.time()
    checkout_id = (await push(http, sim, merchant, PartyA=phone, PhoneNumber=phone))[
        "CheckoutRequestID"
    ]

    async def decided() -> bool:
        prompt = await get_json(http, f"{sim}/_sim/stk/{checkout_id}")
        return prompt["status"] == "decided"

    await wait_until(decided, "the payer's answer")
    assert (await query(http, sim, checkout_id))[1]["ResultCode"] == "0"
    [pending] = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
    assert (pending["fault"], pending["outcome"]) == ("magic:latency", None)
    assert merchant.stk_texts == []
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the late callback", within=8.0)
    assert loop.time() - started >= 5.0


# --------------------------------------------------------------------------- control API


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("action", "code", "description"),
    [
        ("accept", 0, "The service request is processed successfully."),
        ("cancel", 1032, "Request cancelled by user"),
        ("wrong_pin", 2001, "The initiator information is invalid."),
        ("insufficient", 1, "The balance is insufficient for the transaction."),
        ("unreachable", 1037, "DS timeout user cannot be reached"),
        ("timeout", 1019, "Transaction has expired"),
    ],
)
async def test_the_control_api_decides_a_pending_prompt_and_the_query_follows(
    http: aiohttp.ClientSession,
    held: str,
    merchant: Merchant,
    action: str,
    code: int,
    description: str,
) -> None:
    answer = await push(http, held, merchant)
    checkout_id = answer["CheckoutRequestID"]
    status, pending = await query(http, held, checkout_id)
    assert (status, pending["errorCode"]) == (500, "500.001.1001")
    assert pending["errorMessage"] == "The transaction is being processed"
    assert merchant.stk_texts == []
    prompt = await decide(http, held, checkout_id, action)
    assert (prompt["status"], prompt["decided_by"], prompt["ResultCode"]) == (
        "decided",
        "control",
        code,
    )
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the STK callback")
    stk = merchant.callbacks[0]["Body"]["stkCallback"]
    assert (stk["ResultCode"], stk["ResultDesc"]) == (code, description)
    assert ("CallbackMetadata" in stk) is (code == 0)
    status, result = await query(http, held, checkout_id)
    assert status == 200
    assert result == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": answer["MerchantRequestID"],
        "CheckoutRequestID": checkout_id,
        "ResultCode": str(code),
        "ResultDesc": description,
    }


@pytest.mark.asyncio
async def test_a_magic_phone_waits_for_the_control_api_when_payers_do_not_answer(
    http: aiohttp.ClientSession, held: str, merchant: Merchant
) -> None:
    phone = "254700000201"
    checkout_id = (await push(http, held, merchant, PartyA=phone, PhoneNumber=phone))[
        "CheckoutRequestID"
    ]
    await asyncio.sleep(0.2)
    assert (await query(http, held, checkout_id))[0] == 500
    await decide(http, held, checkout_id, "accept")
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the STK callback")
    assert merchant.callbacks[0]["Body"]["stkCallback"]["ResultCode"] == 0


@pytest.mark.asyncio
async def test_control_api_errors(
    http: aiohttp.ClientSession, held: str, merchant: Merchant
) -> None:
    checkout_id = (await push(http, held, merchant))["CheckoutRequestID"]
    status, answer = await post(http, f"{held}/_sim/stk/ws_CO_unknown", {"action": "accept"})
    assert status == 404 and "error" in answer
    status, answer = await post(http, f"{held}/_sim/stk/{checkout_id}", {"action": "pay"})
    assert status == 400 and "action" in answer["error"]
    await decide(http, held, checkout_id, "cancel")
    status, answer = await post(http, f"{held}/_sim/stk/{checkout_id}", {"action": "accept"})
    assert status == 409 and "already decided" in answer["error"]
    [listed] = (await get_json(http, f"{held}/_sim/stk"))["items"]
    assert (listed["CheckoutRequestID"], listed["action"]) == (checkout_id, "cancel")


@pytest.mark.asyncio
async def test_settings_switch_the_payers_auto_answer(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    assert (await get_json(http, f"{sim}/_sim/settings"))["stk_auto_seconds"] == FAST
    status, settings = await post(http, f"{sim}/_sim/settings", {"stk_auto_seconds": None})
    assert (status, settings["stk_auto_seconds"]) == (200, None)
    assert settings["stk_shortcodes"] == ["174379", "600984"]
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    await asyncio.sleep(0.2)
    assert (await query(http, sim, checkout_id))[0] == 500
    for bad in ({"stk_auto_seconds": -1}, {"stk_auto_seconds": "1"}, {"other": 1}):
        assert (await post(http, f"{sim}/_sim/settings", bad))[0] == 400
    await post(http, f"{sim}/_sim/reset", {})
    assert (await get_json(http, f"{sim}/_sim/settings"))["stk_auto_seconds"] == FAST
    assert (await get_json(http, f"{sim}/_sim/stk"))["items"] == []


# --------------------------------------------------------------------------- the 2-minute rule


@pytest.mark.asyncio
async def test_the_same_phone_and_amount_within_2_minutes_ends_with_17(
    http: aiohttp.ClientSession, held: str, merchant: Merchant
) -> None:
    first = (await push(http, held, merchant))["CheckoutRequestID"]
    repeat = await push(http, held, merchant)  # acknowledged like any prompt
    other_amount = (await push(http, held, merchant, Amount=2))["CheckoutRequestID"]
    other_phone = "254711111111"
    other_payer = (await push(http, held, merchant, PartyA=other_phone, PhoneNumber=other_phone))[
        "CheckoutRequestID"
    ]
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the repeat's callback")
    stk = merchant.callbacks[0]["Body"]["stkCallback"]
    assert stk == {
        "MerchantRequestID": repeat["MerchantRequestID"],
        "CheckoutRequestID": repeat["CheckoutRequestID"],
        "ResultCode": 17,
        "ResultDesc": "Rule limited.",
    }
    status, result = await query(http, held, repeat["CheckoutRequestID"])
    assert (status, result["ResultCode"], result["ResultDesc"]) == (200, "17", "Rule limited.")
    prompt = await get_json(http, f"{held}/_sim/stk/{repeat['CheckoutRequestID']}")
    assert prompt["decided_by"] == "rule"
    for still_pending in (first, other_amount, other_payer):
        assert (await query(http, held, still_pending))[0] == 500


@pytest.mark.asyncio
async def test_after_the_window_the_same_phone_and_amount_are_prompted_again(
    http: aiohttp.ClientSession,
    held: str,
    merchant: Merchant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daraja, "STK_REPEAT_WINDOW_SECONDS", 0.2)
    await push(http, held, merchant)
    await asyncio.sleep(0.3)
    later = (await push(http, held, merchant))["CheckoutRequestID"]
    assert (await query(http, held, later))[0] == 500  # pending: not rule limited


# --------------------------------------------------------------------------- query


@pytest.mark.asyncio
async def test_query_for_an_unknown_or_foreign_checkout_request_is_400(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    for unknown, shortcode in (("ws_CO_000000000000000000", SHORTCODE), (checkout_id, "600984")):
        status, answer = await query(http, sim, unknown, shortcode=shortcode)
        assert (status, answer["errorCode"]) == (400, "400.002.02")
        assert answer["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"Password": "d3Jvbmc="}, 500, "Wrong credentials"),
        ({"Timestamp": "yesterday"}, 400, "Bad Request - Invalid Timestamp"),
        ({"CheckoutRequestID": None}, 400, "Bad Request - Invalid CheckoutRequestID"),
    ],
)
async def test_query_checks_its_fields_and_password(
    http: aiohttp.ClientSession,
    sim: str,
    merchant: Merchant,
    overrides: dict[str, Any],
    status: int,
    message: str,
) -> None:
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    got, answer = await query(http, sim, checkout_id, **overrides)
    assert (got, answer["errorMessage"]) == (status, message)


# --------------------------------------------------------------------------- STK and C2B


async def register_c2b(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant, *, validation_url: bool = True
) -> None:
    body = {
        "ShortCode": SHORTCODE,
        "ResponseType": "Completed",
        "ConfirmationURL": f"{merchant.base_url}/c2b/confirmation/s3cret",
    }
    if validation_url:
        body["ValidationURL"] = f"{merchant.base_url}/c2b/validation/s3cret"
    token = await token_for(http, sim)
    status, _ = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", body, token)
    assert status == 200


@pytest.mark.asyncio
@pytest.mark.parametrize("validation", [False, True])
async def test_a_paybill_prompt_with_registered_urls_is_also_a_c2b_confirmation(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant, validation: bool
) -> None:
    await register_c2b(http, sim, merchant)
    await post(http, f"{sim}/_sim/validation", {"enabled": validation})
    checkout_id = (await push(http, sim, merchant, Amount=5, AccountReference="CHF-060606"))[
        "CheckoutRequestID"
    ]
    deliveries = await finished_deliveries(http, sim, checkout_id, 3 if validation else 2)
    c2b = [d["kind"] for d in deliveries if d["kind"] != "stk_callback"]
    assert c2b == (["validation", "confirmation"] if validation else ["confirmation"])
    assert len(deliveries) - len(c2b) == 1
    assert len(merchant.confirmations) == 1
    assert len(merchant.validations) == int(validation)
    values = metadata(merchant.callbacks[0])
    confirmation = merchant.confirmations[0]
    assert confirmation["TransID"] == values["MpesaReceiptNumber"]
    assert confirmation["BillRefNumber"] == "CHF-060606"
    assert confirmation["TransAmount"] == "5.00"
    assert confirmation["TransactionType"] == "Pay Bill"
    assert confirmation["BusinessShortCode"] == SHORTCODE
    assert confirmation["MSISDN"] == "2547 ***** 149"
    assert confirmation["TransTime"] == str(values["TransactionDate"])
    assert confirmation["OrgAccountBalance"] == "5.00"
    assert all(isinstance(value, str) for value in confirmation.values())
    [transaction] = (await get_json(http, f"{sim}/_sim/transactions"))["items"]
    assert transaction["trans_id"] == values["MpesaReceiptNumber"]
    assert (transaction["status"], transaction["checkout_request_id"]) == (
        "completed",
        checkout_id,
    )
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"][SHORTCODE] == "5.00"


@pytest.mark.asyncio
async def test_without_a_validation_url_the_stk_payment_is_only_confirmed(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await register_c2b(http, sim, merchant, validation_url=False)
    await post(http, f"{sim}/_sim/validation", {"enabled": True})
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    deliveries = await finished_deliveries(http, sim, checkout_id, 2)
    assert sorted(d["kind"] for d in deliveries) == ["confirmation", "stk_callback"]
    assert merchant.validations == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("register", "overrides", "action"),
    [
        (False, {}, "accept"),
        (True, {"TransactionType": "CustomerBuyGoodsOnline", "PartyB": "5123456"}, "accept"),
        (True, {}, "cancel"),
    ],
    ids=["no-urls", "buy-goods", "not-paid"],
)
async def test_no_c2b_callback_unless_a_paid_paybill_prompt_has_registered_urls(
    http: aiohttp.ClientSession,
    held: str,
    merchant: Merchant,
    register: bool,
    overrides: dict[str, Any],
    action: str,
) -> None:
    if register:
        await register_c2b(http, held, merchant)
    checkout_id = (await push(http, held, merchant, **overrides))["CheckoutRequestID"]
    await decide(http, held, checkout_id, action)
    [delivery] = await finished_deliveries(http, held, checkout_id, 1)
    assert delivery["kind"] == "stk_callback"
    await asyncio.sleep(0.1)  # an absence: a stray C2B callback would show by now
    assert merchant.confirmations == merchant.validations == []
    assert (await get_json(http, f"{held}/_sim/transactions"))["items"] == []


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_http_500_on_processrequest_sends_no_prompt(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "processrequest", "kind": "http_500"})
    token = await token_for(http, sim)
    url = f"{sim}/mpesa/stkpush/v1/processrequest"
    status, answer = await post(http, url, stk_body(merchant), token)
    assert (status, answer["errorCode"]) == (500, "500.001.1001")
    assert (await get_json(http, f"{sim}/_sim/stk"))["items"] == []
    assert (await post(http, url, stk_body(merchant), token))[0] == 200


@pytest.mark.asyncio
async def test_drop_after_on_processrequest_sends_the_prompt_but_loses_the_answer(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "processrequest", "kind": "drop_after"})
    token = await token_for(http, sim)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, f"{sim}/mpesa/stkpush/v1/processrequest", stk_body(merchant), token)
    await wait_until(lambda: len(merchant.stk_texts) == 1, "the callback of the lost prompt")


@pytest.mark.asyncio
async def test_a_fault_on_stkpushquery_applies_to_the_query(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    await post(http, f"{sim}/_sim/faults", {"target": "stkpushquery", "kind": "drop"})
    with pytest.raises(aiohttp.ClientConnectionError):
        await query(http, sim, checkout_id)
    recorded = (await get_json(http, f"{sim}/_sim/requests"))["items"]
    assert [r["fault"] for r in recorded if r["path"].endswith("/query")] == ["drop"]


@pytest.mark.asyncio
async def test_an_armed_stk_callback_fault(
    http: aiohttp.ClientSession, sim: str, merchant: Merchant
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "stk_callback", "kind": "duplicate"})
    checkout_id = (await push(http, sim, merchant))["CheckoutRequestID"]
    deliveries = await finished_deliveries(http, sim, checkout_id, 2)
    assert [d["fault"] for d in deliveries] == ["duplicate", "duplicate"]
    assert len(merchant.stk_texts) == 2


# --------------------------------------------------------------------------- command line


def test_command_line_sets_the_stk_settings() -> None:
    from simulators.__main__ import COMMANDS, build_parser

    def settings(*options: str) -> DarajaSimSettings:
        simulator = COMMANDS["daraja"].build(build_parser().parse_args(["daraja", *options]))
        assert isinstance(simulator, DarajaSimulator)
        return simulator.settings

    defaults = settings()
    assert defaults.stk_auto_seconds == 1.0
    assert defaults.stk_passkeys == {"174379": SANDBOX_PASSKEY, "600984": SANDBOX_PASSKEY}
    chosen = settings(
        "--stk-auto-seconds", "never", "--stk-passkey", "654321=key", "--stk-passkey", "111111=k2"
    )
    assert chosen.stk_auto_seconds is None
    assert chosen.stk_passkeys == {"654321": "key", "111111": "k2"}
    assert settings("--stk-auto-seconds", "0").stk_auto_seconds == 0.0
    for bad in (
        ["--stk-auto-seconds", "-1"],
        ["--stk-auto-seconds", "nan"],
        ["--stk-passkey", "x"],
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["daraja", *bad])
