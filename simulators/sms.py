"""Africa's Talking SMS simulator: bulk sending (``POST /version1/messaging``) and the
delivery reports that follow it.

The provider side follows Africa's Talking's SMS API as its documentation and its official
Python SDK (``africastalking`` 2.0.3: ``SMSService.send`` over ``Service._make_request``)
have it; what this simulator relies on:

- Request: ``POST {base}/version1/messaging`` where base is
  ``https://api.africastalking.com``, or ``https://api.sandbox.africastalking.com`` when the
  username is ``sandbox``. Form-encoded body: ``username``, ``to`` (the recipients joined
  with commas), ``message``, ``bulkSMSMode=1``, ``from`` only when a sender id is given,
  ``enqueue=1`` only when enqueueing. Headers: ``apiKey`` (the credential; no
  Authorization header), ``Accept: application/json`` (Africa's Talking answers XML
  without it: here that is HTTP 406, so a client that forgets it fails loudly).
- Success: HTTP 201 Created (the provider's PHP client accepts a send only on 201; the
  Python SDK accepts any 2xx). The SDK parses the body as JSON only when the
  ``Content-Type`` is exactly ``application/json`` (no charset parameter), so that is what
  is sent. Body::

      {"SMSMessageData": {"Message": "Sent to 1/2 Total Cost: KES 0.8000",
                          "Recipients": [
          {"statusCode": 101, "number": "+254711000000", "status": "Success",
           "cost": "KES 0.8000", "messageId": "ATXid_<32 hex>"},
          {"statusCode": 406, "number": "+254799000406", "status": "UserInBlacklist",
           "cost": "0", "messageId": "None"}]}}

  A refused recipient has cost ``"0"`` and messageId ``"None"``; with nothing accepted the
  summary reads ``Sent to 0/1 Total Cost: 0``.
- A ``from`` that is not one of the account's sender ids refuses the whole request, still
  HTTP 201, with no recipients: ``{"SMSMessageData": {"Message": "InvalidSenderId",
  "Recipients": []}}``. A missing ``from`` is the account default: allowed when ``""`` is
  among the sender ids.
- Wrong username or apiKey: HTTP 401, ``text/plain`` body ``The supplied authentication is
  invalid``. The SDK raises ``AfricasTalkingException(<body text>)`` for any non-2xx.
  A missing ``to`` or ``message``: HTTP 400, ``Request is missing required form field
  'to'``. An internal error (the ``http_500`` fault): HTTP 500, plain text.
- Per-recipient statusCode/status: 100 Processed, 101 Success, 102 Queued (accepted:
  charged, stored, reported); refusals 401 RiskHold, 402 InvalidSenderId, 403
  InvalidPhoneNumber, 404 UnsupportedNumberType, 405 InsufficientBalance, 406
  UserInBlacklist, 407 CouldNotRoute, 409 DoNotDisturbRejection, 500
  InternalServerError, 501 GatewayError, 502 RejectedByGateway. A number that is not
  ``+`` and 7 to 15 digits (the first not 0) is 403 InvalidPhoneNumber.
- Cost: ``price_per_part`` (KES 0.8000) per message part. A GSM-7 text (the GSM 03.38
  basic set; its extension characters take two septets) is one part up to 160 septets,
  else parts of 153; any other text is UCS-2: one part up to 70 UTF-16 units, else parts
  of 67. A part never splits an escape pair or a surrogate pair.
- Delivery reports: Africa's Talking posts them to the URL set in its dashboard (not per
  request), form-encoded: ``id`` (the messageId), ``status`` (Sent, Submitted, Buffered,
  Rejected, Success, Failed), ``phoneNumber``, ``networkCode``, ``retryCount``, and
  ``failureReason`` only for Failed or Rejected (e.g. ``DeliveryFailure``,
  ``UserInBlackList`` — spelt with a capital L there, unlike the send status).
  Here the URL is the ``delivery_report_url`` setting; each report follows
  ``delivery_delay_seconds`` after the send (or after the report before it).
  networkCode: 63902 (Safaricom) for +254, 60702 (Africell) for +220, else 99999 (the
  provider's sandbox network).

Magic numbers (each selects its recipient's outcome; several may share one request):

=============== ===================================================================
number          outcome
=============== ===================================================================
+254799000100   accepted as 100 Processed; delivery report Success
+254799000102   accepted as 102 Queued; delivery report Success
+254799000401   refused: 401 RiskHold
+254799000402   refused: 402 InvalidSenderId (this one recipient)
+254799000403   refused: 403 InvalidPhoneNumber
+254799000404   refused: 404 UnsupportedNumberType
+254799000405   refused: 405 InsufficientBalance
+254799000406   refused: 406 UserInBlacklist
+254799000407   refused: 407 CouldNotRoute
+254799000409   refused: 409 DoNotDisturbRejection
+254799000500   refused: 500 InternalServerError
+254799000501   refused: 501 GatewayError
+254799000502   refused: 502 RejectedByGateway
+254799000600   accepted (101 Success); delivery report Failed, DeliveryFailure
+254799000601   accepted (101 Success); delivery report Rejected, UserInBlackList
+254799000602   accepted (101 Success); delivery report Buffered, then Success
=============== ===================================================================

Any other valid number is accepted as 101 Success and reported Success.

Control API under ``/_sim/``: ``GET /_sim/outbox`` (every accepted message) and
``GET /_sim/outbox/<number>`` (one number's, in any form: ``254711000000``,
``+254 711 000 000``, ``00254711000000``); ``GET /_sim/requests``; faults
(``POST/GET/DELETE /_sim/faults``, targets ``messaging`` and ``delivery_report``);
``GET /_sim/deliveries`` (each report posted and the receiver's answer; ``?message_id=``
filters); ``GET/POST /_sim/settings`` (``delivery_report_url``,
``delivery_delay_seconds``, ``sender_ids``); ``POST /_sim/reset``.
Fault kinds on ``messaging``: ``latency``, ``timeout`` (answer after ``seconds``),
``http_500`` (nothing sent), ``drop`` (nothing sent, no answer), ``drop_after`` (the
messages are sent and stored, the answer is lost), ``malformed``, ``slow_body``. On
``delivery_report``: ``latency`` (that report is late by ``seconds``), ``drop`` (never
posted; the message's status still changes), ``duplicate`` (posted twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from simulators.common import (
    REDACTED,
    ControlError,
    FaultBook,
    Handler,
    JsonObject,
    RequestLog,
    SimEngine,
    SimulatorServer,
    control_body,
    create_sim_app,
    json_or_text,
    now_iso,
)

logger = logging.getLogger(__name__)

SANDBOX_USERNAME = "sandbox"
SANDBOX_API_KEY = "sandbox-sms-key"
SANDBOX_SENDER_ID = "NHIA"

MESSAGING_PATH = "/version1/messaging"
ENDPOINT_TARGETS = ("messaging",)
DELIVERY_REPORT = "delivery_report"
FAULT_KINDS = {
    "messaging": (
        "latency",
        "http_500",
        "timeout",
        "drop",
        "drop_after",
        "malformed",
        "slow_body",
    ),
    DELIVERY_REPORT: ("latency", "drop", "duplicate"),
}
DELIVERY_REPORT_TIMEOUT = 10.0  # seconds the receiver of a report has to answer

AUTHENTICATION_INVALID = "The supplied authentication is invalid"
MALFORMED = "The request content was malformed"
INVALID_SENDER_ID = "InvalidSenderId"
NOT_SENT_ID = "None"  # messageId of a refused recipient
NOT_SENT_COST = "0"

ACCEPTED_STATUSES = {100: "Processed", 101: "Success", 102: "Queued"}
REFUSED_STATUSES = {
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}
SENT = "Sent"  # a message's status until its first delivery report
INVALID_PHONE_NUMBER = 403

_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{6,14}")
_NETWORK_CODES = (("+254", "63902"), ("+220", "60702"))
SANDBOX_NETWORK_CODE = "99999"

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SmsSimSettings:
    """How the simulated account behaves; URL, delay and sender ids can change at runtime."""

    username: str = SANDBOX_USERNAME
    api_key: str = SANDBOX_API_KEY
    # "" allows a request without ``from`` (the account's default sender)
    sender_ids: tuple[str, ...] = (SANDBOX_SENDER_ID, "")
    delivery_report_url: str | None = None
    delivery_delay_seconds: float = 0.2
    currency: str = "KES"
    price_per_part: str = "0.8000"  # per message part, four decimals as the provider shows


DEFAULT = SmsSimSettings()


def parse_report_url(value: object) -> str | None:
    """An http(s) URL with a host, or None (no delivery reports posted)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            url = URL(value)
        except ValueError:
            url = None
        if url is not None and url.scheme in ("http", "https") and url.host:
            return value
    raise ValueError(f"delivery_report_url must be an http(s) URL or null, not {value!r}")


def parse_delay(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"delivery_delay_seconds must be a non-negative number, not {value!r}")
    return float(value)


def parse_sender_ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"sender_ids must be a list of strings, not {value!r}")
    return tuple(value)


def parse_price(value: object) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite() or price < 0:
        raise ValueError(f"price_per_part must be a non-negative decimal, not {value!r}")
    return price


# --------------------------------------------------------------------------- numbers and text


def normalise_number(text: str) -> str:
    """A phone number in international form: separators dropped, ``00`` or nothing -> ``+``."""
    compact = re.sub(r"[\s\-().]", "", text)
    if compact.startswith("00"):
        compact = compact[2:]
    return compact if compact.startswith("+") else f"+{compact}"


def is_international(number: str) -> bool:
    """Whether a recipient as sent is ``+`` and 7 to 15 digits, the first not 0."""
    return _INTERNATIONAL.fullmatch(number) is not None


def network_code(number: str) -> str:
    for prefix, code in _NETWORK_CODES:
        if number.startswith(prefix):
            return code
    return SANDBOX_NETWORK_CODE


# GSM 03.38: the basic character set (without the escape) and the extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class Encoded:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


def encode_parts(text: str) -> Encoded:
    """How many SMS parts a text takes (see the module docstring)."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        encoding, single, part = "GSM-7", GSM7_SINGLE, GSM7_PART
        sizes = [2 if char in GSM7_EXTENSION else 1 for char in text]
    else:
        encoding, single, part = "UCS-2", UCS2_SINGLE, UCS2_PART
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    units = sum(sizes)
    if units <= single:
        return Encoded(encoding, units, 1)
    parts, used = 1, 0
    for size in sizes:  # a two-unit character never straddles two parts
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return Encoded(encoding, units, parts)


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class _Outcome:
    """What becomes of one recipient: the send status and, if accepted, its reports."""

    status_code: int
    # (status, failureReason) of each delivery report, in order
    reports: tuple[tuple[str, str | None], ...] = (("Success", None),)

    @property
    def accepted(self) -> bool:
        return self.status_code in ACCEPTED_STATUSES

    @property
    def status(self) -> str:
        return ACCEPTED_STATUSES.get(self.status_code) or REFUSED_STATUSES[self.status_code]


DELIVERED = _Outcome(101)
MAGIC_PREFIX = "+254799000"
MAGIC_NUMBERS: dict[str, _Outcome] = {
    f"{MAGIC_PREFIX}100": _Outcome(100),
    f"{MAGIC_PREFIX}102": _Outcome(102),
    **{f"{MAGIC_PREFIX}{code}": _Outcome(code, ()) for code in REFUSED_STATUSES},
    f"{MAGIC_PREFIX}600": _Outcome(101, (("Failed", "DeliveryFailure"),)),
    f"{MAGIC_PREFIX}601": _Outcome(101, (("Rejected", "UserInBlackList"),)),
    f"{MAGIC_PREFIX}602": _Outcome(101, (("Buffered", None), ("Success", None))),
}


def _outcome(number: str) -> _Outcome:
    if not is_international(number):
        return _Outcome(INVALID_PHONE_NUMBER, ())
    return MAGIC_NUMBERS.get(number, DELIVERED)


# --------------------------------------------------------------------------- model


class _Refused(Exception):
    """A request the provider answers with a plain-text HTTP error."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.text, content_type="text/plain")


@dataclass(frozen=True)
class _SendRequest:
    recipients: list[str]
    message: str
    sender: str | None
    enqueue: bool
    bulk_sms_mode: str | None


@dataclass
class _Message:
    """One accepted message to one number, as the outbox shows it."""

    message_id: str
    number: str
    text: str
    sender: str | None
    encoded: Encoded
    cost: str
    status_code: int
    enqueue: bool
    sent_at: str
    delivery_status: str = SENT
    failure_reason: str | None = None
    updated_at: str | None = None

    def report(self, status: str, failure_reason: str | None) -> None:
        self.delivery_status, self.failure_reason = status, failure_reason
        self.updated_at = now_iso()

    def as_json(self) -> JsonObject:
        return {
            "messageId": self.message_id,
            "number": self.number,
            "message": self.text,
            "from": self.sender,
            "encoding": self.encoded.encoding,
            "units": self.encoded.units,
            "parts": self.encoded.parts,
            "cost": self.cost,
            "statusCode": self.status_code,
            "status": ACCEPTED_STATUSES[self.status_code],
            "enqueue": self.enqueue,
            "sent_at": self.sent_at,
            "delivery_status": self.delivery_status,
            "failure_reason": self.failure_reason,
            "updated_at": self.updated_at,
        }


class _SmsRequestLog(RequestLog):
    """Requests with the form body as fields and the apiKey header hidden."""

    async def record(self, request: web.Request) -> JsonObject:
        record = await super().record(request)
        headers = record["headers"]
        for name in headers:
            if name.lower() == "apikey":
                headers[name] = REDACTED
        if request.content_type == "application/x-www-form-urlencoded":
            try:
                form = await request.post()
            except ValueError:  # not decodable: the raw text stays
                return record
            record["body"] = {name: value for name, value in form.items() if isinstance(value, str)}
        return record


def _finish(record: JsonObject, outcome: str, **details: Any) -> None:
    record.update(outcome=outcome, finished_at=now_iso(), **details)


# --------------------------------------------------------------------------- engine


class _SmsEngine(SimEngine):
    """State of one simulated account: the outbox and the delivery reports."""

    def __init__(self, settings: SmsSimSettings) -> None:
        super().__init__(FaultBook(FAULT_KINDS, ENDPOINT_TARGETS), _SmsRequestLog())
        self.settings = settings
        # Validated once, restored by reset; the settings object itself never changes.
        self._initial_url = parse_report_url(settings.delivery_report_url)
        self._initial_delay = parse_delay(settings.delivery_delay_seconds)
        self._initial_sender_ids = parse_sender_ids(settings.sender_ids)
        self.price_per_part = parse_price(settings.price_per_part)
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._used_ids: set[str] = set()  # kept across resets: ids never recur
        self._next_delivery_id = 1
        self._clear_state()

    def _clear_state(self) -> None:
        self.delivery_report_url = self._initial_url
        self.delivery_delay_seconds = self._initial_delay
        self.sender_ids = self._initial_sender_ids
        self.messages: list[_Message] = []
        self.deliveries: list[JsonObject] = []
        self.requests.clear()
        self.faults.clear()

    async def reset(self) -> None:
        await self.cancel_reports()
        self._clear_state()

    async def cancel_reports(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("delivery report failed", exc_info=task.exception())

    # ---- sending

    def credentials_valid(self, username: str | None, api_key: str | None) -> bool:
        settings = self.settings
        return _same(username or "", settings.username) and _same(api_key or "", settings.api_key)

    def send(self, request: _SendRequest) -> JsonObject:
        """Send to every recipient; the answer's SMSMessageData."""
        if (request.sender or "") not in self.sender_ids:
            return {"Message": INVALID_SENDER_ID, "Recipients": []}
        encoded = encode_parts(request.message)
        cost = (self.price_per_part * encoded.parts).quantize(Decimal("0.0001"))
        recipients, total = [], Decimal(0)
        for number in request.recipients:
            outcome = _outcome(number)
            if not outcome.accepted:
                recipients.append(_recipient(outcome, number, NOT_SENT_COST, NOT_SENT_ID))
                continue
            message = _Message(
                self._new_message_id(),
                number,
                request.message,
                request.sender,
                encoded,
                self._money(cost),
                outcome.status_code,
                request.enqueue,
                now_iso(),
            )
            self.messages.append(message)
            self._spawn(self._report(message, outcome.reports))
            total += cost
            recipients.append(_recipient(outcome, number, message.cost, message.message_id))
        sent = sum(1 for recipient in recipients if recipient["statusCode"] in ACCEPTED_STATUSES)
        total_cost = self._money(total) if sent else NOT_SENT_COST
        summary = f"Sent to {sent}/{len(recipients)} Total Cost: {total_cost}"
        return {"Message": summary, "Recipients": recipients}

    def _money(self, amount: Decimal) -> str:
        return f"{self.settings.currency} {amount:.4f}"

    def _new_message_id(self) -> str:
        while True:
            message_id = f"ATXid_{secrets.token_hex(16)}"
            if message_id not in self._used_ids:
                self._used_ids.add(message_id)
                return message_id

    def outbox(self, number: str | None = None) -> list[JsonObject]:
        wanted = None if number is None else normalise_number(number)
        return [m.as_json() for m in self.messages if wanted is None or m.number == wanted]

    # ---- delivery reports

    async def _report(self, message: _Message, reports: Sequence[tuple[str, str | None]]) -> None:
        for status, failure_reason in reports:
            await self.pause(self.delivery_delay_seconds)
            if self.closing:
                return
            message.report(status, failure_reason)
            url = self.delivery_report_url
            if url is not None:
                await self._deliver(url, _report_body(message))

    async def _deliver(self, url: str, body: dict[str, str]) -> None:
        """Post one report, honouring an armed delivery_report fault."""
        fault = self.faults.take(DELIVERY_REPORT)
        kind = None if fault is None else fault.kind
        records = [
            self._begin_delivery(url, kind, body) for _ in range(2 if kind == "duplicate" else 1)
        ]
        if fault is not None and kind == "latency":
            await self.pause(fault.seconds or 0.0)
        if kind == "drop":
            _finish(records[0], "dropped")
            return
        for record in records:
            await self._post(record)

    def _begin_delivery(self, url: str, fault: str | None, body: dict[str, str]) -> JsonObject:
        record: JsonObject = {
            "id": self._next_delivery_id,
            "message_id": body["id"],
            "url": url,
            "fault": fault,
            "body": dict(body),
            "outcome": None,
            "http_status": None,
            "answer": None,
            "error": None,
            "started_at": now_iso(),
            "finished_at": None,
        }
        self._next_delivery_id += 1
        self.deliveries.append(record)
        return record

    async def _post(self, record: JsonObject) -> None:
        assert self.session is not None, "the app's client session starts with the app"
        timeout = aiohttp.ClientTimeout(total=DELIVERY_REPORT_TIMEOUT)
        try:
            async with self.session.post(
                record["url"], data=record["body"], timeout=timeout
            ) as response:
                answer = (await response.read()).decode("utf-8", errors="replace")
        except TimeoutError:
            _finish(record, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            _finish(record, "error", error=f"{type(exc).__name__}: {exc}")
        else:
            _finish(record, "answered", http_status=response.status, answer=json_or_text(answer))

    # ---- control views

    def settings_json(self) -> JsonObject:
        return {
            "username": self.settings.username,
            "delivery_report_url": self.delivery_report_url,
            "delivery_delay_seconds": self.delivery_delay_seconds,
            "sender_ids": list(self.sender_ids),
        }


def _recipient(outcome: _Outcome, number: str, cost: str, message_id: str) -> JsonObject:
    return {
        "statusCode": outcome.status_code,
        "number": number,
        "status": outcome.status,
        "cost": cost,
        "messageId": message_id,
    }


def _report_body(message: _Message) -> dict[str, str]:
    body = {
        "id": message.message_id,
        "status": message.delivery_status,
        "phoneNumber": message.number,
        "networkCode": network_code(message.number),
        "retryCount": "0",
    }
    if message.failure_reason is not None:
        body["failureReason"] = message.failure_reason
    return body


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


ENGINE = web.AppKey("sms_engine", _SmsEngine)


# --------------------------------------------------------------------------- provider API


def _json_201(payload: JsonObject) -> web.Response:
    """Exactly ``application/json``: the SDK parses nothing else (not even with a charset)."""
    return web.Response(
        status=201, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _internal_error() -> web.Response:
    return web.Response(
        status=500, text="There was an internal server error.", content_type="text/plain"
    )


def _missing(name: str) -> str:
    return f"Request is missing required form field '{name}'"


def _field(form: Any, name: str) -> str | None:
    """A non-empty form field, or None."""
    value = form.get(name)
    return value if isinstance(value, str) and value else None


async def _send_request(request: web.Request) -> _SendRequest:
    form = await request.post()
    to = _field(form, "to") or ""
    recipients = [number.strip() for number in to.split(",") if number.strip()]
    if not recipients:
        raise _Refused(400, _missing("to"))
    message = _field(form, "message")
    if message is None:
        raise _Refused(400, _missing("message"))
    sender = form.get("from")
    return _SendRequest(
        recipients,
        message,
        sender if isinstance(sender, str) else None,
        _field(form, "enqueue") == "1",
        _field(form, "bulkSMSMode"),
    )


async def _messaging(request: web.Request) -> web.Response:
    send_request = await _send_request(request)
    return _json_201({"SMSMessageData": request.app[ENGINE].send(send_request)})


def _accepts_json(accept: str) -> bool:
    media_types = [item.split(";")[0].strip().lower() for item in accept.split(",")]
    return "application/json" in media_types


async def _provider_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_error = request.match_info.http_exception
    if route_error is not None:
        if route_error.status == 404:
            return _Refused(404, "The requested resource could not be found.").response()
        return _Refused(route_error.status, route_error.reason).response()
    if not _accepts_json(request.headers.get("Accept", "")):
        return _Refused(406, "This simulator answers only Accept: application/json").response()
    try:
        form = await request.post()
    except ValueError:  # undecodable form data
        return _Refused(400, MALFORMED).response()
    username = form.get("username")
    if not request.app[ENGINE].credentials_valid(
        username if isinstance(username, str) else None, request.headers.get("apiKey")
    ):
        return _Refused(401, AUTHENTICATION_INVALID).response()
    try:
        return await handler(request)
    except _Refused as refusal:
        return refusal.response()


# --------------------------------------------------------------------------- control API


async def _all_outbox(request: web.Request) -> web.Response:
    return web.json_response({"items": request.app[ENGINE].outbox()})


async def _number_outbox(request: web.Request) -> web.Response:
    number = normalise_number(request.match_info["number"])
    return web.json_response({"number": number, "items": request.app[ENGINE].outbox(number)})


async def _list_deliveries(request: web.Request) -> web.Response:
    message_id = request.query.get("message_id")
    items = [
        item
        for item in request.app[ENGINE].deliveries
        if message_id is None or item["message_id"] == message_id
    ]
    return web.json_response({"items": items})


async def _get_settings(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].settings_json())


async def _change_settings(request: web.Request) -> web.Response:
    """Change delivery_report_url, delivery_delay_seconds and/or sender_ids; all or nothing.

    A new URL or delay applies to the reports still to come, of messages already sent too.
    """
    payload = await control_body(request)
    parsers = {
        "delivery_report_url": parse_report_url,
        "delivery_delay_seconds": parse_delay,
        "sender_ids": parse_sender_ids,
    }
    if unknown := sorted(set(payload) - set(parsers)):
        raise ControlError(f"unknown settings {unknown}; known: {sorted(parsers)}")
    try:
        changes = {name: parsers[name](value) for name, value in payload.items()}
    except ValueError as exc:
        raise ControlError(str(exc)) from None
    engine = request.app[ENGINE]
    for name, value in changes.items():
        setattr(engine, name, value)
    return web.json_response(engine.settings_json())


async def _reset(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.reset()
    return web.json_response(engine.settings_json())


# --------------------------------------------------------------------------- application


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """One outbound session for delivery reports; pending reports die with the app."""
    engine = app[ENGINE]
    engine.session = aiohttp.ClientSession()
    yield
    await engine.cancel_reports()
    await engine.session.close()


def create_app(settings: SmsSimSettings = DEFAULT) -> web.Application:
    """Provider API plus ``/_sim/`` control API; raises ValueError for invalid settings."""
    engine = _SmsEngine(settings)
    app = create_sim_app(engine, _provider_answer, _internal_error)
    app[ENGINE] = engine
    app.cleanup_ctx.append(_client_session)
    app.router.add_post(MESSAGING_PATH, _messaging, name="messaging")
    app.router.add_get("/_sim/outbox", _all_outbox)
    app.router.add_get("/_sim/outbox/{number}", _number_outbox)
    app.router.add_get("/_sim/deliveries", _list_deliveries)
    app.router.add_get("/_sim/settings", _get_settings)
    app.router.add_post("/_sim/settings", _change_settings)
    app.router.add_post("/_sim/reset", _reset)
    return app


class SmsSimulator(SimulatorServer):
    """The simulator on a real socket; stop() also cancels pending delivery reports."""

    def __init__(self, settings: SmsSimSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or DEFAULT

    def build_app(self) -> web.Application:
        return create_app(self.settings)
