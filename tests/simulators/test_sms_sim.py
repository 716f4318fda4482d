"""The Africa's Talking SMS simulator on real sockets; a small aiohttp app receives the
delivery reports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from simulators.sms import (
    SANDBOX_API_KEY,
    SANDBOX_SENDER_ID,
    SANDBOX_USERNAME,
    SmsSimSettings,
    SmsSimulator,
    encode_parts,
)

from support import simulator_command, wait_until

KENYA = "+254711000000"
GAMBIA = "+2203000000"
MAGIC = "+254799000"
HEADERS = {"apiKey": SANDBOX_API_KEY, "Accept": "application/json"}
ID_PATTERN = r"ATXid_[0-9a-f]{32}"

StartSim = Callable[..., Awaitable[str]]


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any  # the JSON value, or the text when not JSON


@dataclass
class Receiver:
    """Where delivery reports go: every form received, answered with `status`."""

    url: str = ""
    reports: list[dict[str, str]] = field(default_factory=list)
    status: int = 200


@pytest_asyncio.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators (fast delivery reports; settings overridable); stopped afterwards."""
    started: list[SmsSimulator] = []

    async def start(**overrides: Any) -> str:
        simulator = SmsSimulator(SmsSimSettings(**{"delivery_delay_seconds": 0.01, **overrides}))
        started.append(simulator)
        return await simulator.start()

    yield start
    for simulator in started:
        await simulator.stop()


@pytest_asyncio.fixture
async def sim(start_sim: StartSim) -> str:
    return await start_sim()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received = Receiver()

    async def report(request: web.Request) -> web.Response:
        received.reports.append(
            {name: str(value) for name, value in (await request.post()).items()}
        )
        return web.Response(status=received.status, text="OK")

    app = web.Application()
    app.router.add_post("/sms/delivery", report)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    received.url = f"http://127.0.0.1:{runner.addresses[0][1]}/sms/delivery"
    yield received
    await runner.cleanup()


async def send(
    http: aiohttp.ClientSession,
    sim: str,
    to: str | list[str] | None,
    message: str = "Your premium of GMD 5.00 is received.",
    *,
    headers: dict[str, str] | None = None,
    **fields: str | None,
) -> Answer:
    """POST a send as the SDK does; a field given as None is left out."""
    form = {
        "username": SANDBOX_USERNAME,
        "to": ",".join(to) if isinstance(to, list) else to,
        "message": message,
        "bulkSMSMode": "1",
        **fields,
    }
    data = {name: value for name, value in form.items() if value is not None}
    async with http.post(
        f"{sim}/version1/messaging", data=data, headers=HEADERS if headers is None else headers
    ) as response:
        text = await response.text()
        body: Any = await response.json() if response.content_type == "application/json" else text
        return Answer(response.status, response.headers["Content-Type"], body)


async def sent(http: aiohttp.ClientSession, sim: str, to: str | list[str], **kwargs: Any) -> Any:
    """A send answered 201; its SMSMessageData."""
    answer = await send(http, sim, to, **kwargs)
    assert (answer.status, answer.content_type) == (201, "application/json"), answer
    return answer.body["SMSMessageData"]


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


async def post_json(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def outbox(http: aiohttp.ClientSession, sim: str, number: str | None = None) -> list[Any]:
    path = "/_sim/outbox" if number is None else f"/_sim/outbox/{number}"
    return (await get_json(http, f"{sim}{path}"))["items"]


async def deliveries(http: aiohttp.ClientSession, sim: str, message_id: str) -> list[Any]:
    return (await get_json(http, f"{sim}/_sim/deliveries?message_id={message_id}"))["items"]


async def arm(http: aiohttp.ClientSession, sim: str, **fault: Any) -> None:
    status, answer = await post_json(http, f"{sim}/_sim/faults", fault)
    assert status == 200, answer


# --------------------------------------------------------------------------- sending


@pytest.mark.asyncio
async def test_a_send_is_answered_201_json_and_lands_in_the_numbers_outbox(
    http: aiohttp.ClientSession, sim: str
) -> None:
    answer = await send(http, sim, KENYA, "Hello", **{"from": SANDBOX_SENDER_ID})
    assert (answer.status, answer.content_type) == (201, "application/json")
    data = answer.body["SMSMessageData"]
    assert data["Message"] == "Sent to 1/1 Total Cost: KES 0.8000"
    [recipient] = data["Recipients"]
    message_id = recipient.pop("messageId")
    assert re.fullmatch(ID_PATTERN, message_id)
    assert recipient == {
        "statusCode": 101,
        "number": KENYA,
        "status": "Success",
        "cost": "KES 0.8000",
    }
    [message] = await outbox(http, sim, KENYA)
    assert message["messageId"] == message_id
    assert (message["message"], message["from"], message["parts"]) == ("Hello", "NHIA", 1)
    assert (message["encoding"], message["cost"], message["enqueue"]) == (
        "GSM-7",
        "KES 0.8000",
        False,
    )
    assert message["sent_at"]
    assert await outbox(http, sim) == [message]


@pytest.mark.asyncio
async def test_several_recipients_in_one_request_each_get_their_own_outcome(
    http: aiohttp.ClientSession, sim: str
) -> None:
    to = [KENYA, GAMBIA, f"{MAGIC}406", "0711000000"]
    data = await sent(http, sim, to)
    assert data["Message"] == "Sent to 2/4 Total Cost: KES 1.6000"
    recipients = data["Recipients"]
    assert [(r["number"], r["statusCode"], r["status"]) for r in recipients] == [
        (KENYA, 101, "Success"),
        (GAMBIA, 101, "Success"),
        (f"{MAGIC}406", 406, "UserInBlacklist"),
        ("0711000000", 403, "InvalidPhoneNumber"),
    ]
    assert recipients[0]["messageId"] != recipients[1]["messageId"]
    assert [(r["cost"], r["messageId"]) for r in recipients[2:]] == [("0", "None")] * 2
    assert [m["number"] for m in await outbox(http, sim)] == [KENYA, GAMBIA]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (401, "RiskHold"),
        (402, "InvalidSenderId"),
        (403, "InvalidPhoneNumber"),
        (404, "UnsupportedNumberType"),
        (405, "InsufficientBalance"),
        (406, "UserInBlacklist"),
        (407, "CouldNotRoute"),
        (409, "DoNotDisturbRejection"),
        (500, "InternalServerError"),
        (501, "GatewayError"),
        (502, "RejectedByGateway"),
    ],
)
async def test_each_magic_refusal_number_is_refused_with_its_code_and_not_sent(
    http: aiohttp.ClientSession, sim: str, code: int, status: str
) -> None:
    number = f"{MAGIC}{code}"
    data = await sent(http, sim, number)
    assert data == {
        "Message": "Sent to 0/1 Total Cost: 0",
        "Recipients": [
            {
                "statusCode": code,
                "number": number,
                "status": status,
                "cost": "0",
                "messageId": "None",
            }
        ],
    }
    assert await outbox(http, sim) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("code", "status"), [(100, "Processed"), (102, "Queued")])
async def test_magic_processed_and_queued_numbers_are_accepted_and_charged(
    http: aiohttp.ClientSession, sim: str, code: int, status: str
) -> None:
    data = await sent(http, sim, f"{MAGIC}{code}")
    [recipient] = data["Recipients"]
    assert (recipient["statusCode"], recipient["status"], recipient["cost"]) == (
        code,
        status,
        "KES 0.8000",
    )
    assert data["Message"] == "Sent to 1/1 Total Cost: KES 0.8000"
    [message] = await outbox(http, sim, f"{MAGIC}{code}")
    assert (message["statusCode"], message["status"]) == (code, status)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "number", ["0711000000", "254711000000", "+254 711 000000", "+0711000000", "+12345", "+abc"]
)
async def test_a_number_not_in_international_digits_is_invalid_phone_number(
    http: aiohttp.ClientSession, sim: str, number: str
) -> None:
    [recipient] = (await sent(http, sim, number))["Recipients"]
    assert (recipient["statusCode"], recipient["status"]) == (403, "InvalidPhoneNumber")
    assert await outbox(http, sim) == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "headers",
    [
        {"apiKey": "wrong-key", "Accept": "application/json"},
        {"Accept": "application/json"},
    ],
)
async def test_a_wrong_or_missing_api_key_is_http_401_plain_text(
    http: aiohttp.ClientSession, sim: str, headers: dict[str, str]
) -> None:
    answer = await send(http, sim, KENYA, headers=headers)
    assert (answer.status, answer.body) == (401, "The supplied authentication is invalid")
    assert answer.content_type.startswith("text/plain")
    assert await outbox(http, sim) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("username", ["someone-else", None])
async def test_a_wrong_or_missing_username_is_http_401(
    http: aiohttp.ClientSession, sim: str, username: str | None
) -> None:
    answer = await send(http, sim, KENYA, username=username)
    assert (answer.status, answer.body) == (401, "The supplied authentication is invalid")


@pytest.mark.asyncio
async def test_an_unknown_sender_id_refuses_the_whole_request_with_no_recipients(
    http: aiohttp.ClientSession, sim: str
) -> None:
    data = await sent(http, sim, [KENYA, GAMBIA], **{"from": "NOTOURS"})
    assert data == {"Message": "InvalidSenderId", "Recipients": []}
    assert await outbox(http, sim) == []


@pytest.mark.asyncio
async def test_without_from_the_default_sender_is_used_only_while_it_is_allowed(
    http: aiohttp.ClientSession, sim: str
) -> None:
    assert (await sent(http, sim, KENYA))["Recipients"][0]["status"] == "Success"
    [message] = await outbox(http, sim)
    assert message["from"] is None
    status, settings = await post_json(http, f"{sim}/_sim/settings", {"sender_ids": ["NHIA"]})
    assert (status, settings["sender_ids"]) == (200, ["NHIA"])
    assert await sent(http, sim, KENYA) == {"Message": "InvalidSenderId", "Recipients": []}
    data = await sent(http, sim, KENYA, **{"from": "NHIA"})
    assert data["Recipients"][0]["status"] == "Success"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("missing", "changes"), [("to", {"to": None}), ("message", {"message": ""})]
)
async def test_a_send_without_recipients_or_text_is_http_400(
    http: aiohttp.ClientSession, sim: str, missing: str, changes: dict[str, Any]
) -> None:
    form: dict[str, Any] = {"to": KENYA, "message": "Hello", **changes}
    answer = await send(http, sim, **form)
    assert (answer.status, answer.body) == (
        400,
        f"Request is missing required form field '{missing}'",
    )


@pytest.mark.asyncio
async def test_a_send_without_accept_json_is_refused_rather_than_answered_in_xml(
    http: aiohttp.ClientSession, sim: str
) -> None:
    answer = await send(http, sim, KENYA, headers={"apiKey": SANDBOX_API_KEY, "Accept": "*/*"})
    assert answer.status == 406
    assert await outbox(http, sim) == []


# --------------------------------------------------------------------------- parts and cost


@pytest.mark.parametrize(
    ("text", "encoding", "units", "parts"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 162, 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # the escape pair is not split
        ("ł" * 70, "UCS-2", 70, 1),
        ("ł" * 71, "UCS-2", 71, 2),
        ("ł" * 134, "UCS-2", 134, 2),
        ("ł" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),
        ("😀" * 67, "UCS-2", 134, 3),  # a surrogate pair is not split
        ("Habari yako, ñ Ä ß @ £", "GSM-7", 22, 1),
    ],
)
def test_message_parts_follow_the_encoding(
    text: str, encoding: str, units: int, parts: int
) -> None:
    encoded = encode_parts(text)
    assert (encoded.encoding, encoded.units, encoded.parts) == (encoding, units, parts)


@pytest.mark.asyncio
async def test_a_long_message_costs_per_part_for_every_recipient(
    http: aiohttp.ClientSession, sim: str
) -> None:
    text = "x" * 307  # three GSM-7 parts
    data = await sent(http, sim, [KENYA, GAMBIA], message=text)
    assert data["Message"] == "Sent to 2/2 Total Cost: KES 4.8000"
    assert [r["cost"] for r in data["Recipients"]] == ["KES 2.4000", "KES 2.4000"]
    [message] = await outbox(http, sim, GAMBIA)
    assert (message["parts"], message["units"], message["message"]) == (3, 307, text)


@pytest.mark.asyncio
async def test_a_unicode_message_is_charged_in_ucs2_parts(
    http: aiohttp.ClientSession, sim: str
) -> None:
    data = await sent(http, sim, KENYA, message="Malipo yamepokelewa ✓ " * 4)  # 88 units
    assert data["Recipients"][0]["cost"] == "KES 1.6000"
    [message] = await outbox(http, sim)
    assert (message["encoding"], message["parts"]) == ("UCS-2", 2)


# --------------------------------------------------------------------------- faults


@pytest.mark.asyncio
async def test_http_500_fault_answers_an_error_and_sends_nothing(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await arm(http, sim, target="messaging", kind="http_500")
    answer = await send(http, sim, KENYA)
    assert answer.status == 500
    assert await outbox(http, sim) == []
    assert (await sent(http, sim, KENYA))["Recipients"][0]["status"] == "Success"  # used once


@pytest.mark.asyncio
async def test_drop_fault_closes_the_connection_and_sends_nothing(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await arm(http, sim, target="messaging", kind="drop")
    with pytest.raises(aiohttp.ClientError):
        await send(http, sim, KENYA)
    assert await outbox(http, sim) == []


@pytest.mark.asyncio
async def test_drop_after_fault_sends_and_stores_the_message_but_loses_the_answer(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await arm(http, sim, target="messaging", kind="drop_after")
    with pytest.raises(aiohttp.ClientError):
        await send(http, sim, KENYA)
    [message] = await outbox(http, sim, KENYA)
    [record] = (await get_json(http, f"{sim}/_sim/requests"))["items"]
    assert (record["fault"], record["status"]) == ("drop_after", 201)
    lost = record["answer"]["SMSMessageData"]["Recipients"][0]
    assert lost["messageId"] == message["messageId"]


@pytest.mark.asyncio
async def test_latency_fault_delays_the_answer(http: aiohttp.ClientSession, sim: str) -> None:
    await arm(http, sim, target="messaging", kind="latency", seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sent(http, sim, KENYA)
    assert loop.time() - started >= 0.3


@pytest.mark.asyncio
async def test_requests_are_recorded_as_form_fields_with_the_api_key_hidden(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await sent(http, sim, KENYA, message="Hi", enqueue="1", **{"from": "NHIA"})
    [record] = (await get_json(http, f"{sim}/_sim/requests"))["items"]
    assert (record["method"], record["path"]) == ("POST", "/version1/messaging")
    assert record["body"] == {
        "username": "sandbox",
        "to": KENYA,
        "message": "Hi",
        "bulkSMSMode": "1",
        "enqueue": "1",
        "from": "NHIA",
    }
    assert record["headers"]["apiKey"] == "[redacted]"
    assert SANDBOX_API_KEY not in str(record)
    assert (await outbox(http, sim))[0]["enqueue"] is True


# --------------------------------------------------------------------------- delivery reports


async def reports_for(receiver: Receiver, message_id: str, count: int = 1) -> list[dict[str, str]]:
    def arrived() -> list[dict[str, str]]:
        mine = [report for report in receiver.reports if report["id"] == message_id]
        return mine if len(mine) >= count else []

    return await wait_until(arrived, f"{count} delivery report(s) for {message_id}")


@pytest.mark.asyncio
async def test_a_delivery_report_is_posted_to_the_configured_url(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: Receiver
) -> None:
    sim = await start_sim(delivery_report_url=receiver.url)
    [recipient] = (await sent(http, sim, KENYA))["Recipients"]
    [report] = await reports_for(receiver, recipient["messageId"])
    assert report == {
        "id": recipient["messageId"],
        "status": "Success",
        "phoneNumber": KENYA,
        "networkCode": "63902",
        "retryCount": "0",
    }
    delivered = await wait_until(
        lambda: deliveries(http, sim, recipient["messageId"]), "the delivery record"
    )
    [record] = delivered
    assert (record["url"], record["outcome"], record["http_status"]) == (
        receiver.url,
        "answered",
        200,
    )
    assert (record["answer"], record["body"]) == ("OK", report)
    [message] = await outbox(http, sim, KENYA)
    assert (message["delivery_status"], message["failure_reason"]) == ("Success", None)


@pytest.mark.asyncio
async def test_the_failed_magic_number_is_reported_failed_with_a_reason(
    http: aiohttp.ClientSession, sim: str, receiver: Receiver
) -> None:
    await post_json(http, f"{sim}/_sim/settings", {"delivery_report_url": receiver.url})
    number = f"{MAGIC}600"
    [recipient] = (await sent(http, sim, number))["Recipients"]
    assert recipient["status"] == "Success"  # accepted: the failure comes later
    [report] = await reports_for(receiver, recipient["messageId"])
    assert (report["status"], report["failureReason"], report["phoneNumber"]) == (
        "Failed",
        "DeliveryFailure",
        number,
    )
    [message] = await outbox(http, sim, number)
    assert (message["delivery_status"], message["failure_reason"]) == ("Failed", "DeliveryFailure")


@pytest.mark.asyncio
async def test_the_rejected_and_buffered_magic_numbers_report_in_order(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: Receiver
) -> None:
    sim = await start_sim(delivery_report_url=receiver.url)
    rejected, buffered = (await sent(http, sim, [f"{MAGIC}601", f"{MAGIC}602"]))["Recipients"]
    [report] = await reports_for(receiver, rejected["messageId"])
    assert (report["status"], report["failureReason"]) == ("Rejected", "UserInBlackList")
    reports = await reports_for(receiver, buffered["messageId"], count=2)
    assert [r["status"] for r in reports] == ["Buffered", "Success"]
    assert all("failureReason" not in r for r in reports)


@pytest.mark.asyncio
async def test_a_gambian_number_reports_its_network(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: Receiver
) -> None:
    sim = await start_sim(delivery_report_url=receiver.url)
    [recipient] = (await sent(http, sim, GAMBIA))["Recipients"]
    [report] = await reports_for(receiver, recipient["messageId"])
    assert report["networkCode"] == "60702"


@pytest.mark.asyncio
async def test_without_a_url_no_report_is_posted_but_the_status_still_changes(
    http: aiohttp.ClientSession, sim: str
) -> None:
    [recipient] = (await sent(http, sim, f"{MAGIC}600"))["Recipients"]
    message = await wait_until(
        lambda: _final(http, sim, f"{MAGIC}600"), "the message's final delivery status"
    )
    assert message["delivery_status"] == "Failed"
    assert await deliveries(http, sim, recipient["messageId"]) == []


async def _final(http: aiohttp.ClientSession, sim: str, number: str) -> Any:
    [message] = await outbox(http, sim, number)
    return message if message["delivery_status"] != "Sent" else None


@pytest.mark.asyncio
async def test_a_dropped_report_is_never_posted_and_a_duplicated_one_twice(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: Receiver
) -> None:
    sim = await start_sim(delivery_report_url=receiver.url)
    await arm(http, sim, target="delivery_report", kind="drop")
    [dropped] = (await sent(http, sim, KENYA))["Recipients"]
    [record] = await wait_until(
        lambda: deliveries(http, sim, dropped["messageId"]), "the dropped delivery record"
    )
    assert (record["fault"], record["outcome"]) == ("drop", "dropped")
    await arm(http, sim, target="delivery_report", kind="duplicate")
    [doubled] = (await sent(http, sim, KENYA))["Recipients"]
    first, second = await reports_for(receiver, doubled["messageId"], count=2)
    assert first == second
    assert all(report["id"] != dropped["messageId"] for report in receiver.reports)


@pytest.mark.asyncio
async def test_the_receivers_error_answer_is_recorded(
    http: aiohttp.ClientSession, start_sim: StartSim, receiver: Receiver
) -> None:
    receiver.status = 503
    sim = await start_sim(delivery_report_url=receiver.url)
    [recipient] = (await sent(http, sim, KENYA))["Recipients"]

    async def finished() -> Any:
        items = await deliveries(http, sim, recipient["messageId"])
        return items if items and items[0]["outcome"] else None

    [record] = await wait_until(finished, "the delivery record")
    assert (record["outcome"], record["http_status"]) == ("answered", 503)


# --------------------------------------------------------------------------- control API


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "form", ["254711000000", "+254 711 000 000", "00254711000000", "%2B254711000000"]
)
async def test_the_outbox_of_a_number_can_be_read_with_the_number_in_any_form(
    http: aiohttp.ClientSession, sim: str, form: str
) -> None:
    await sent(http, sim, [KENYA, GAMBIA])
    answer = await get_json(http, f"{sim}/_sim/outbox/{form}")
    assert answer["number"] == KENYA
    assert [message["number"] for message in answer["items"]] == [KENYA]


@pytest.mark.asyncio
async def test_settings_are_read_changed_and_validated_all_or_nothing(
    http: aiohttp.ClientSession, sim: str
) -> None:
    before = await get_json(http, f"{sim}/_sim/settings")
    assert before == {
        "username": "sandbox",
        "delivery_report_url": None,
        "delivery_delay_seconds": 0.01,
        "sender_ids": ["NHIA", ""],
    }
    for bad in (
        {"delivery_report_url": "ftp://example.test/x"},
        {"delivery_report_url": "not a url"},
        {"delivery_delay_seconds": -1},
        {"delivery_delay_seconds": True},
        {"sender_ids": "NHIA"},
        {"sender_ids": ["NHIA"], "delivery_delay_seconds": "soon"},
        {"api_key": "x"},
    ):
        status, answer = await post_json(http, f"{sim}/_sim/settings", bad)
        assert status == 400, bad
        assert answer["error"]
    assert await get_json(http, f"{sim}/_sim/settings") == before
    changes = {
        "delivery_report_url": "http://127.0.0.1:9/reports",
        "delivery_delay_seconds": 2,
        "sender_ids": ["NHIA", "INSURE"],
    }
    status, answer = await post_json(http, f"{sim}/_sim/settings", changes)
    assert (status, answer) == (200, {"username": "sandbox", **changes})


@pytest.mark.asyncio
async def test_reset_forgets_messages_traffic_and_faults_and_restores_settings(
    http: aiohttp.ClientSession, sim: str
) -> None:
    await sent(http, sim, KENYA)
    await post_json(http, f"{sim}/_sim/settings", {"sender_ids": []})
    await arm(http, sim, target="messaging", kind="http_500")
    status, answer = await post_json(http, f"{sim}/_sim/reset", {})
    assert (status, answer["sender_ids"]) == (200, ["NHIA", ""])
    assert await outbox(http, sim) == []
    assert (await get_json(http, f"{sim}/_sim/requests"))["items"] == []
    assert (await get_json(http, f"{sim}/_sim/faults"))["items"] == []
    assert (await sent(http, sim, KENYA))["Recipients"][0]["status"] == "Success"


@pytest.mark.asyncio
async def test_unknown_paths_are_plain_text_404(http: aiohttp.ClientSession, sim: str) -> None:
    async with http.post(f"{sim}/version1/nothing", headers=HEADERS) as response:
        assert response.status == 404
    async with http.get(f"{sim}/_sim/nothing-here") as response:
        assert response.status == 404
        assert "error" in await response.json()


@pytest.mark.asyncio
async def test_command_line_applies_its_options_and_exits_cleanly_on_sigint(
    http: aiohttp.ClientSession,
) -> None:
    async with simulator_command("sms", "--sender-id", "NHIA", "--delivery-delay", "1.5") as url:
        settings = await get_json(http, f"{url}/_sim/settings")
        assert (settings["sender_ids"], settings["delivery_delay_seconds"]) == (["NHIA"], 1.5)
