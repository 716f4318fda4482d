"""The Daraja simulator on real sockets, with a small receiver standing in for a merchant."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from simulators.daraja import DarajaSimSettings, DarajaSimulator

from support import simulator_command, wait_until

KEY, SECRET = "sandbox-key", "sandbox-secret"
SHORTCODE = "600984"
MSISDN = "254708374149"

StartSim = Callable[..., Awaitable[str]]


def basic(login: str, password: str) -> dict[str, str]:
    """HTTP Basic header (aiohttp.BasicAuth is deprecated in recent aiohttp)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


class CallbackReceiver:
    """A merchant's validation/confirmation endpoints: records bodies, answers as configured."""

    def __init__(self) -> None:
        self.validations: list[dict[str, Any]] = []
        self.confirmations: list[dict[str, Any]] = []
        self.validation_answer: dict[str, Any] = {"ResultCode": "0", "ResultDesc": "Accepted"}
        self.validation_hangs = False
        self.base_url = ""
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/c2b/validation/s3cret", self._validation)
        app.router.add_post("/c2b/confirmation/s3cret", self._confirmation)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        self._release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _validation(self, request: web.Request) -> web.Response:
        self.validations.append(await request.json())
        if self.validation_hangs:
            await self._release.wait()
        return web.json_response(self.validation_answer)

    async def _confirmation(self, request: web.Request) -> web.Response:
        self.confirmations.append(await request.json())
        return web.json_response({"ResultCode": 0, "ResultDesc": "Success"})


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def start_sim(start_daraja: StartSim) -> StartSim:
    return start_daraja


@pytest_asyncio.fixture
async def sim(start_sim: StartSim) -> str:
    return await start_sim()


async def get_token(http: aiohttp.ClientSession, sim: str) -> str:
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


def registration(receiver: CallbackReceiver, response_type: str = "Completed") -> dict[str, Any]:
    return {
        "ShortCode": SHORTCODE,
        "ResponseType": response_type,
        "ConfirmationURL": f"{receiver.base_url}/c2b/confirmation/s3cret",
        "ValidationURL": f"{receiver.base_url}/c2b/validation/s3cret",
    }


def payment(**overrides: Any) -> dict[str, Any]:
    body = {
        "ShortCode": int(SHORTCODE),
        "CommandID": "CustomerPayBillOnline",
        "Amount": "5.50",
        "Msisdn": int(MSISDN),
        "BillRefNumber": "070707070",
    }
    return {**body, **overrides}


async def pay(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    *,
    validation: bool = False,
    response_type: str = "Completed",
    version: str = "v2",
    simulate_version: str = "v1",
    msisdn: int | str = int(MSISDN),
) -> str:
    """Register the receiver, set external validation, simulate a payment: its conversation id."""
    token = await get_token(http, sim)
    status, _ = await post(
        http, f"{sim}/mpesa/c2b/{version}/registerurl", registration(receiver, response_type), token
    )
    assert status == 200
    assert (await post(http, f"{sim}/_sim/validation", {"enabled": validation}))[0] == 200
    url = f"{sim}/mpesa/c2b/{simulate_version}/simulate"
    status, answer = await post(http, url, payment(Msisdn=msisdn), token)
    assert status == 200
    assert answer["ResponseCode"] == "0"
    return answer["OriginatorCoversationID"]


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        return await response.json()


async def settled_transaction(
    http: aiohttp.ClientSession, sim: str, conversation_id: str
) -> dict[str, Any]:
    transaction: dict[str, Any] = {}

    async def settled() -> bool:
        transaction.update(await get_json(http, f"{sim}/_sim/transactions/{conversation_id}"))
        return transaction["status"] != "pending"

    await wait_until(settled, "the transaction to settle")
    return transaction


# --------------------------------------------------------------------------- OAuth and bearer


@pytest.mark.asyncio
async def test_oauth_issues_28_char_token_with_expires_in_as_string(
    http: aiohttp.ClientSession, sim: str
) -> None:
    async with http.get(
        f"{sim}/oauth/v1/generate?grant_type=client_credentials",
        headers=basic(KEY, SECRET),
    ) as response:
        body = await response.json()
    assert response.status == 200
    assert body["expires_in"] == "3599"
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])


@pytest.mark.asyncio
@pytest.mark.parametrize("headers", [basic(KEY, "wrong"), basic("", ""), {}])
async def test_oauth_with_wrong_or_missing_credentials_is_400_008_01(
    http: aiohttp.ClientSession, sim: str, headers: dict[str, str]
) -> None:
    async with http.get(
        f"{sim}/oauth/v1/generate?grant_type=client_credentials", headers=headers
    ) as response:
        body = await response.json()
    assert response.status == 400
    assert body["errorCode"] == "400.008.01"
    assert body["errorMessage"] == "Invalid Authentication passed"
    assert body["requestId"]


@pytest.mark.asyncio
async def test_oauth_without_grant_type_is_400_008_02(
    http: aiohttp.ClientSession, sim: str
) -> None:
    async with http.get(f"{sim}/oauth/v1/generate", headers=basic(KEY, SECRET)) as response:
        body = await response.json()
    assert (response.status, body["errorCode"]) == (400, "400.008.02")


@pytest.mark.asyncio
async def test_provider_call_without_bearer_is_404_invalid_access_token(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    status, body = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver))
    assert status == 404
    assert body["errorCode"] == "404.001.03"
    assert body["errorMessage"] == "Invalid Access Token"


@pytest.mark.asyncio
async def test_expired_token_is_refused_like_a_missing_one(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: CallbackReceiver
) -> None:
    sim = await start_sim(token_ttl_seconds=0)
    token = await get_token(http, sim)
    status, body = await post(
        http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token
    )
    assert (status, body["errorCode"]) == (404, "404.001.03")


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, "valid"])
async def test_an_unimplemented_path_is_404_resource_not_found_not_an_invalid_token(
    http: aiohttp.ClientSession, sim: str, token: str | None
) -> None:
    bearer = await get_token(http, sim) if token else None
    status, body = await post(http, f"{sim}/mpesa/b2c/v1/paymentrequest", {}, bearer)
    assert (status, body["errorCode"]) == (404, "404.001.01")
    assert body["errorMessage"] == "Resource not found"
    assert body["requestId"]


@pytest.mark.asyncio
async def test_a_wrong_method_on_a_known_path_is_405(http: aiohttp.ClientSession, sim: str) -> None:
    async with http.get(f"{sim}/mpesa/c2b/v1/simulate") as response:
        body = await response.json()
    assert (response.status, body["errorCode"]) == (405, "405.001.01")


# --------------------------------------------------------------------------- register URL


@pytest.mark.asyncio
async def test_registerurl_success_uses_the_real_misspelled_key_and_keeps_the_version(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    status, body = await post(
        http, f"{sim}/mpesa/c2b/v1/registerurl", registration(receiver), token
    )
    assert status == 200
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Success"
    assert re.fullmatch(r"[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-\w+", body["OriginatorCoversationID"])
    state = await get_json(http, f"{sim}/_sim/state")
    assert state["registrations"][SHORTCODE]["version"] == "v1"
    assert state["registrations"][SHORTCODE]["ResponseType"] == "Completed"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("field", "path", "word"),
    [
        ("ValidationURL", "/c2b/mpesa/validation", "MPESA"),
        ("ConfirmationURL", "/c2b/Query/confirmation", "QUERY"),
        ("ConfirmationURL", "/M-Pesa/confirmation", "M-PESA"),
    ],
)
async def test_registerurl_refuses_forbidden_words_in_any_case(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    field: str,
    path: str,
    word: str,
) -> None:
    token = await get_token(http, sim)
    body = {**registration(receiver), field: receiver.base_url + path}
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", body, token)
    assert (status, answer["errorCode"]) == (400, "400.003.02")
    assert answer["errorMessage"] == f"Bad Request - Invalid {field} - URL has the word {word}"


@pytest.mark.asyncio
async def test_registerurl_refuses_response_type_other_than_completed_or_cancelled(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    body = registration(receiver, response_type="completed")
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", body, token)
    assert (status, answer["errorCode"]) == (400, "400.003.02")
    assert answer["errorMessage"] == "Bad Request - Invalid ResponseType"


@pytest.mark.asyncio
async def test_registerurl_refuses_localhost_unless_local_mode(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: CallbackReceiver
) -> None:
    sim = await start_sim(local_mode=False)
    token = await get_token(http, sim)
    status, answer = await post(
        http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token
    )
    assert (status, answer["errorCode"]) == (400, "400.003.02")
    assert "localhost" in answer["errorMessage"]


@pytest.mark.asyncio
async def test_registerurl_with_missing_field_is_invalid_payload(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    body = registration(receiver)
    del body["ConfirmationURL"]
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", body, token)
    assert (status, answer["errorCode"]) == (400, "400.002.05")
    assert answer["errorMessage"] == "Invalid Request Payload - missing ConfirmationURL"


@pytest.mark.asyncio
async def test_registerurl_without_validation_url_succeeds_and_validation_is_never_called(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    body = registration(receiver)
    del body["ValidationURL"]
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/registerurl", body, token)
    assert (status, answer["ResponseCode"]) == (200, "0")
    state = await get_json(http, f"{sim}/_sim/state")
    assert state["registrations"][SHORTCODE]["ValidationURL"] is None
    assert (await post(http, f"{sim}/_sim/validation", {"enabled": True}))[0] == 200
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/simulate", payment(), token)
    assert status == 200
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")
    transaction = await settled_transaction(http, sim, answer["OriginatorCoversationID"])
    assert transaction["status"] == "completed"
    deliveries = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
    assert [d["kind"] for d in deliveries] == ["confirmation"]
    assert receiver.validations == []


# --------------------------------------------------------------------------- simulate and callbacks


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"Amount": None}, "400.002.05"),
        ({"CommandID": "CustomerPayBill"}, "400.003.02"),
        ({"Amount": "1.234"}, "400.003.02"),
        ({"Amount": 0}, "400.003.02"),
        ({"ShortCode": "60O984"}, "400.003.02"),
    ],
)
async def test_simulate_refuses_invalid_requests(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    overrides: dict[str, Any],
    code: str,
) -> None:
    token = await get_token(http, sim)
    await post(http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token)
    body = {k: v for k, v in payment(**overrides).items() if v is not None}
    status, answer = await post(http, f"{sim}/mpesa/c2b/v2/simulate", body, token)
    assert (status, answer["errorCode"]) == (400, code)


@pytest.mark.asyncio
async def test_simulate_on_a_shortcode_without_urls_completes_and_sends_nothing(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    await post(http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token)
    await post(http, f"{sim}/_sim/validation", {"enabled": True})
    status, answer = await post(
        http, f"{sim}/mpesa/c2b/v1/simulate", payment(ShortCode=111111), token
    )
    assert (status, answer["ResponseCode"]) == (200, "0")
    assert answer["ResponseDescription"] == "Accept the service request successfully."
    transaction = await settled_transaction(http, sim, answer["OriginatorCoversationID"])
    assert (transaction["status"], transaction["shortcode"]) == ("completed", "111111")
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"]["111111"] == "5.50"
    await asyncio.sleep(0.1)  # an absence: no condition to wait for, a stray one would show
    assert (await get_json(http, f"{sim}/_sim/deliveries"))["items"] == []
    assert receiver.validations == receiver.confirmations == []


@pytest.mark.asyncio
async def test_without_external_validation_only_the_confirmation_is_delivered(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: CallbackReceiver
) -> None:
    sim = await start_sim(org_balance_minor=1000)
    conversation_id = await pay(http, sim, receiver)
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")
    confirmation = receiver.confirmations[0]
    assert receiver.validations == []
    assert re.fullmatch(r"[A-Z][A-Z0-9]{9}", confirmation["TransID"])
    assert re.fullmatch(r"\d{14}", confirmation["TransTime"])
    assert confirmation["TransactionType"] == "Pay Bill"
    assert confirmation["TransAmount"] == "5.50"
    assert confirmation["OrgAccountBalance"] == "15.50"
    assert confirmation["BusinessShortCode"] == SHORTCODE
    assert confirmation["BillRefNumber"] == "070707070"
    assert all(isinstance(value, str) for value in confirmation.values())
    transaction = await settled_transaction(http, sim, conversation_id)
    assert transaction["status"] == "completed"
    assert transaction["trans_id"] == confirmation["TransID"]
    state = await get_json(http, f"{sim}/_sim/state")
    assert state["balances"][SHORTCODE] == "15.50"


@pytest.mark.asyncio
async def test_till_payment_is_buy_goods_without_bill_reference(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    await post(http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token)
    body = payment(CommandID="CustomerBuyGoodsOnline", Amount=10)
    del body["BillRefNumber"]
    assert (await post(http, f"{sim}/mpesa/c2b/v2/simulate", body, token))[0] == 200
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")
    confirmation = receiver.confirmations[0]
    assert confirmation["TransactionType"] == "Buy Goods"
    assert confirmation["BillRefNumber"] == ""
    assert confirmation["TransAmount"] == "10.00"


@pytest.mark.asyncio
async def test_accepted_validation_is_followed_by_confirmation_echoing_third_party_id(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    receiver.validation_answer = {"ResultCode": 0, "ResultDesc": "OK", "ThirdPartyTransID": "T1"}
    conversation_id = await pay(http, sim, receiver, validation=True)
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")
    [validation], [confirmation] = receiver.validations, receiver.confirmations
    assert validation["OrgAccountBalance"] == ""
    assert validation["TransID"] == confirmation["TransID"]
    assert confirmation["ThirdPartyTransID"] == "T1"
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "completed"
    deliveries = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
    assert [d["kind"] for d in deliveries] == ["validation", "confirmation"]
    assert all(d["outcome"] == "answered" and d["http_status"] == 200 for d in deliveries)


@pytest.mark.asyncio
async def test_rejected_validation_sends_no_confirmation(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    receiver.validation_answer = {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    conversation_id = await pay(http, sim, receiver, validation=True)
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "rejected"
    assert len(receiver.validations) == 1
    assert receiver.confirmations == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response_type", "status", "confirmations"),
    [("Completed", "completed", 1), ("Cancelled", "cancelled", 0)],
)
async def test_unanswered_validation_applies_the_registered_response_type(
    http: aiohttp.ClientSession,
    start_sim: StartSim,
    receiver: CallbackReceiver,
    response_type: str,
    status: str,
    confirmations: int,
) -> None:
    sim = await start_sim(validation_timeout=0.3)
    receiver.validation_hangs = True
    conversation_id = await pay(http, sim, receiver, validation=True, response_type=response_type)
    assert (await settled_transaction(http, sim, conversation_id))["status"] == status
    await wait_until(
        lambda: len(receiver.confirmations) == confirmations,
        f"{confirmations} confirmations at the receiver",
    )
    validation = (await get_json(http, f"{sim}/_sim/deliveries?kind=validation"))["items"]
    assert [d["outcome"] for d in validation] == ["timeout"]


@pytest.mark.asyncio
async def test_validation_timeout_fault_skips_the_call_and_applies_the_response_type(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "validation", "kind": "timeout"})
    conversation_id = await pay(http, sim, receiver, validation=True, response_type="Cancelled")
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "cancelled"
    deliveries = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
    assert [(d["kind"], d["outcome"]) for d in deliveries] == [("validation", "timeout")]
    assert receiver.validations == receiver.confirmations == []


@pytest.mark.asyncio
async def test_duplicate_fault_delivers_two_identical_confirmations(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    fault = {"target": "confirmation", "kind": "duplicate"}
    assert (await post(http, f"{sim}/_sim/faults", fault))[0] == 200
    await pay(http, sim, receiver)
    await wait_until(lambda: len(receiver.confirmations) == 2, "2 confirmations at the receiver")
    assert receiver.confirmations[0] == receiver.confirmations[1]
    assert (await get_json(http, f"{sim}/_sim/faults"))["items"] == []


@pytest.mark.asyncio
async def test_delivery_in_flight_is_listed_unfinished_once_the_transaction_settles(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    fault = {"target": "confirmation", "kind": "latency", "seconds": 0.3}
    await post(http, f"{sim}/_sim/faults", fault)
    conversation_id = await pay(http, sim, receiver)
    transaction = await settled_transaction(http, sim, conversation_id)
    url = f"{sim}/_sim/deliveries?trans_id={transaction['trans_id']}"
    [delivery] = (await get_json(http, url))["items"]
    assert delivery["kind"] == "confirmation"
    assert delivery["outcome"] is delivery["finished_at"] is None
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")


@pytest.mark.asyncio
async def test_dropped_confirmation_is_recorded_and_the_payment_still_completes(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "confirmation", "kind": "drop"})
    conversation_id = await pay(http, sim, receiver)
    deliveries: list[dict[str, Any]] = []

    async def recorded() -> bool:
        deliveries[:] = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
        return bool(deliveries)

    await wait_until(recorded, "a delivery to be recorded")
    assert [d["outcome"] for d in deliveries] == ["dropped"]
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "completed"
    assert receiver.confirmations == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1", hashlib.sha256(MSISDN.encode()).hexdigest()),
        ("v2", "2547 ***** 149"),
    ],
)
async def test_msisdn_format_follows_the_registration_version(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    version: str,
    expected: str,
) -> None:
    await pay(http, sim, receiver, version=version)
    await wait_until(lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver")
    assert receiver.confirmations[0]["MSISDN"] == expected


# --------------------------------------------------------------------------- magic values


async def deliveries_of(
    http: aiohttp.ClientSession, sim: str, conversation_id: str
) -> list[dict[str, Any]]:
    """The deliveries of a settled transaction, once every one has finished."""
    url = f"{sim}/_sim/deliveries?conversation_id={conversation_id}"
    items: list[dict[str, Any]] = []

    async def finished() -> bool:
        items[:] = (await get_json(http, url))["items"]
        return bool(items) and all(item["finished_at"] for item in items)

    await settled_transaction(http, sim, conversation_id)
    await wait_until(finished, "every delivery to finish")
    return items


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("response_type", "simulate_version", "msisdn", "status", "confirmations"),
    [
        ("Cancelled", "v1", 254700000101, "cancelled", 0),
        ("Completed", "v2", "254700000101", "completed", 1),
    ],
)
async def test_magic_msisdn_101_times_out_validation_and_the_response_type_decides(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    response_type: str,
    simulate_version: str,
    msisdn: int | str,
    status: str,
    confirmations: int,
) -> None:
    conversation_id = await pay(
        http,
        sim,
        receiver,
        validation=True,
        response_type=response_type,
        simulate_version=simulate_version,
        msisdn=msisdn,
    )
    assert (await settled_transaction(http, sim, conversation_id))["status"] == status
    deliveries = await deliveries_of(http, sim, conversation_id)
    assert [(d["kind"], d["outcome"], d["fault"]) for d in deliveries][:1] == [
        ("validation", "timeout", "magic:timeout")
    ]
    assert [d["kind"] for d in deliveries[1:]] == ["confirmation"] * confirmations
    assert receiver.validations == []  # the validation URL was never called
    await wait_until(
        lambda: len(receiver.confirmations) == confirmations,
        f"{confirmations} confirmations at the receiver",
    )
    assert (await get_json(http, f"{sim}/_sim/faults"))["items"] == []


@pytest.mark.asyncio
async def test_magic_msisdn_101_without_external_validation_changes_nothing(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    conversation_id = await pay(http, sim, receiver, msisdn=254700000101)
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "completed"
    [delivery] = await deliveries_of(http, sim, conversation_id)
    assert (delivery["kind"], delivery["outcome"], delivery["fault"]) == (
        "confirmation",
        "answered",
        None,
    )
    assert len(receiver.confirmations) == 1
    assert receiver.validations == []


@pytest.mark.asyncio
@pytest.mark.parametrize("simulate_version", ["v1", "v2"])
async def test_magic_msisdn_102_delivers_the_confirmation_twice(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver, simulate_version: str
) -> None:
    conversation_id = await pay(
        http, sim, receiver, simulate_version=simulate_version, msisdn="254700000102"
    )
    await wait_until(lambda: len(receiver.confirmations) == 2, "2 confirmations at the receiver")
    assert receiver.confirmations[0] == receiver.confirmations[1]
    deliveries = await deliveries_of(http, sim, conversation_id)
    assert [(d["kind"], d["outcome"], d["fault"]) for d in deliveries] == [
        ("confirmation", "answered", "magic:duplicate")
    ] * 2
    assert deliveries[0]["body"] == deliveries[1]["body"]
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"][SHORTCODE] == "5.50"


@pytest.mark.asyncio
async def test_magic_msisdn_103_drops_the_confirmation_but_the_money_moves(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    conversation_id = await pay(http, sim, receiver, msisdn=254700000103)
    transaction = await settled_transaction(http, sim, conversation_id)
    assert transaction["status"] == "completed"
    assert transaction["body"]["OrgAccountBalance"] == "5.50"
    [delivery] = await deliveries_of(http, sim, conversation_id)
    assert (delivery["kind"], delivery["outcome"], delivery["fault"]) == (
        "confirmation",
        "dropped",
        "magic:drop",
    )
    assert (await get_json(http, f"{sim}/_sim/state"))["balances"][SHORTCODE] == "5.50"
    await asyncio.sleep(0.1)  # an absence: no condition to wait for, a stray one would show
    assert receiver.confirmations == []


@pytest.mark.asyncio
async def test_magic_msisdn_104_delivers_the_confirmation_after_3_seconds(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    conversation_id = await pay(http, sim, receiver, msisdn=254700000104)
    assert (await settled_transaction(http, sim, conversation_id))["status"] == "completed"
    [pending] = (await get_json(http, f"{sim}/_sim/deliveries"))["items"]
    assert (pending["kind"], pending["fault"], pending["outcome"]) == (
        "confirmation",
        "magic:latency",
        None,
    )
    assert receiver.confirmations == []
    await wait_until(
        lambda: len(receiver.confirmations) == 1, "1 confirmation at the receiver", within=5.0
    )
    assert loop.time() - started >= 3.0
    [delivery] = await deliveries_of(http, sim, conversation_id)
    assert (delivery["outcome"], delivery["fault"]) == ("answered", "magic:latency")


@pytest.mark.asyncio
async def test_an_armed_callback_fault_takes_precedence_over_a_magic_msisdn(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    fault = {"target": "confirmation", "kind": "latency", "seconds": 0}
    assert (await post(http, f"{sim}/_sim/faults", fault))[0] == 200
    conversation_id = await pay(http, sim, receiver, msisdn=254700000103)
    [delivery] = await deliveries_of(http, sim, conversation_id)
    assert (delivery["outcome"], delivery["fault"]) == ("answered", "latency")
    assert len(receiver.confirmations) == 1


# --------------------------------------------------------------------------- endpoint faults


@pytest.mark.asyncio
async def test_http_500_fault_fails_one_call_with_daraja_envelope_then_clears(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await post(http, f"{sim}/_sim/faults", {"target": "oauth", "kind": "http_500"})
    url = f"{sim}/oauth/v1/generate?grant_type=client_credentials"
    async with http.get(url, headers=basic(KEY, SECRET)) as response:
        body = await response.json()
    assert response.status == 500
    assert body["errorCode"].startswith("500.")
    assert body["errorMessage"] == "Internal Server Error"
    assert await get_token(http, sim)
    recorded = (await get_json(http, f"{sim}/_sim/requests"))["items"]
    assert [r["status"] for r in recorded] == [500, 200]
    assert recorded[0]["headers"]["Authorization"] == "Basic [redacted]"


@pytest.mark.asyncio
async def test_drop_fault_closes_the_connection_without_an_answer_or_a_logged_error(
    http: aiohttp.ClientSession,
    sim: str,
    receiver: CallbackReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    # A POST, because aiohttp's client silently retries an idempotent GET on a reused connection.
    await post(http, f"{sim}/_sim/faults", {"target": "registerurl", "kind": "drop"})
    token = await get_token(http, sim)
    url = f"{sim}/mpesa/c2b/v2/registerurl"
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, url, registration(receiver), token)
    assert (await post(http, url, registration(receiver), token))[0] == 200
    [dropped, _] = (await get_json(http, f"{sim}/_sim/requests"))["items"][1:]
    assert (dropped["fault"], dropped["status"], dropped["answer"]) == ("drop", None, None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_latency_fault_delays_the_answer(http: aiohttp.ClientSession, sim: str) -> None:
    fault = {"target": "oauth", "kind": "latency", "seconds": 0.3}
    await post(http, f"{sim}/_sim/faults", fault)
    started = asyncio.get_running_loop().time()
    assert await get_token(http, sim)
    assert asyncio.get_running_loop().time() - started >= 0.3


@pytest.mark.asyncio
async def test_timeout_fault_outlasts_the_caller_without_delaying_stop(
    http: aiohttp.ClientSession,
) -> None:
    simulator = DarajaSimulator()
    sim = await simulator.start()
    await post(http, f"{sim}/_sim/faults", {"target": "oauth", "kind": "timeout"})
    with pytest.raises(TimeoutError):
        async with http.get(
            f"{sim}/oauth/v1/generate?grant_type=client_credentials",
            headers=basic(KEY, SECRET),
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass
    started = asyncio.get_running_loop().time()
    await simulator.stop()
    assert asyncio.get_running_loop().time() - started < 2


# --------------------------------------------------------------------------- control API, lifecycle


@pytest.mark.asyncio
async def test_control_api_answers_json_errors(http: aiohttp.ClientSession, sim: str) -> None:
    async with http.get(f"{sim}/_sim/nothing-here") as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with http.post(f"{sim}/_sim/faults", data="{not json") as response:
        assert response.status == 400
        assert "error" in await response.json()
    status, answer = await post(http, f"{sim}/_sim/faults", {"target": "simulate", "kind": "x"})
    assert status == 400
    assert "kind" in answer["error"]
    async with http.get(f"{sim}/_sim/transactions/unknown") as response:
        assert response.status == 404


@pytest.mark.asyncio
async def test_reset_forgets_everything_and_restores_validation_setting(
    http: aiohttp.ClientSession, sim: str, receiver: CallbackReceiver
) -> None:
    token = await get_token(http, sim)
    await pay(http, sim, receiver, validation=True)
    await post(http, f"{sim}/_sim/faults", {"target": "simulate", "kind": "http_500", "times": 0})
    await post(http, f"{sim}/_sim/reset", {})
    assert await get_json(http, f"{sim}/_sim/state") == {
        "external_validation": False,
        "registrations": {},
        "balances": {},
    }
    for resource in ("requests", "deliveries", "transactions", "faults"):
        assert (await get_json(http, f"{sim}/_sim/{resource}"))["items"] == []
    status, body = await post(
        http, f"{sim}/mpesa/c2b/v2/registerurl", registration(receiver), token
    )
    assert (status, body["errorCode"]) == (404, "404.001.03")


@pytest.mark.asyncio
async def test_stop_cancels_a_pending_validation_promptly(
    http: aiohttp.ClientSession, receiver: CallbackReceiver
) -> None:
    simulator = DarajaSimulator(DarajaSimSettings(local_mode=True, validation_timeout=30))
    sim = await simulator.start()
    receiver.validation_hangs = True
    await pay(http, sim, receiver, validation=True)
    await wait_until(lambda: len(receiver.validations) == 1, "the validation at the receiver")
    started = asyncio.get_running_loop().time()
    await simulator.stop()
    assert asyncio.get_running_loop().time() - started < 2


@pytest.mark.asyncio
async def test_command_line_serves_until_sigint_and_exits_cleanly(
    http: aiohttp.ClientSession,
) -> None:
    async with simulator_command("daraja", "--local") as url:
        assert (await get_json(http, f"{url}/_sim/state"))["balances"] == {}
