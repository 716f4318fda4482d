"""Safaricom M-Pesa Daraja C2B simulator (OAuth, register URL, simulate, callbacks).

The provider side follows PROTOCOLS.md section 1 so that an unmodified Daraja
client works against it. Everything under ``/_sim/`` is a control API for tests:
inspect recorded traffic, toggle external validation and inject faults.

Magic values: a client that never calls ``/_sim/`` picks an outcome with the
payer's ``Msisdn`` on simulate (v1 or v2; number or string), so amounts and
account numbers stay free. Each applies to the callbacks of that one payment
exactly like the callback fault of the same kind (an armed fault for that
callback takes precedence); the delivery records show it as
``"fault": "magic:<kind>"`` (an armed fault shows as ``"fault": "<kind>"``):

=============== ========================================================================
Msisdn          outcome
=============== ========================================================================
254700000101    the validation answer "times out" (``timeout`` fault on validation): no
                validation call is made and the registered ResponseType decides
                (Completed: completes, confirmation sent; Cancelled: cancelled, nothing
                sent). Only with external validation enabled; otherwise no validation
                is sent and the payment completes normally.
254700000102    the confirmation is delivered twice, identical bodies (``duplicate``)
254700000103    the confirmation is never delivered (``drop``); the transaction still
                completes: the money has moved
254700000104    the confirmation is delivered after a delay of 3 seconds (``latency``)
=============== ========================================================================
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import secrets
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from simulators.common import (
    BearerTokens,
    ControlError,
    FaultBook,
    Handler,
    JsonObject,
    Magic,
    RequestLog,
    SimEngine,
    SimulatorServer,
    basic_auth_matches,
    control_body,
    create_sim_app,
    format_minor,
    json_object,
    json_or_text,
    now_iso,
    parse_amount_minor,
)

logger = logging.getLogger(__name__)

NAIROBI = timezone(timedelta(hours=3), "EAT")
CONFIRMATION_TIMEOUT = 10.0

RESPONSE_TYPES = ("Completed", "Cancelled")
TRANSACTION_TYPES = {"CustomerPayBillOnline": "Pay Bill", "CustomerBuyGoodsOnline": "Buy Goods"}
# Longest words first so the error names "EXEC" rather than "EXE" for ".../exec/...".
FORBIDDEN_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exec", "exe", "cmd", "sql", "query")
REGISTER_FIELDS = ("ShortCode", "ResponseType", "ConfirmationURL", "ValidationURL")
SIMULATE_FIELDS = ("ShortCode", "CommandID", "Amount", "Msisdn")

ENDPOINT_TARGETS = ("oauth", "registerurl", "simulate")
FAULT_KINDS = {
    **{
        target: ("latency", "http_500", "timeout", "drop", "drop_after", "malformed", "slow_body")
        for target in ENDPOINT_TARGETS
    },
    "validation": ("latency", "drop", "duplicate", "timeout"),
    "confirmation": ("latency", "drop", "duplicate"),
}
MAGIC_DELAY_SECONDS = 3.0
# Payer Msisdn -> the callback fault every payment from it gets (see the module docstring).
MAGIC_MSISDNS = {
    "254700000101": Magic("validation", "timeout"),
    "254700000102": Magic("confirmation", "duplicate"),
    "254700000103": Magic("confirmation", "drop"),
    "254700000104": Magic("confirmation", "latency", MAGIC_DELAY_SECONDS),
}

_ALPHANUMERIC = string.ascii_letters + string.digits
_TRANS_ID_CHARS = string.ascii_uppercase + string.digits


@dataclass
class DarajaSimSettings:
    """How the simulated Daraja behaves; the control API can change some of it at runtime."""

    consumer_key: str = "sandbox-key"
    consumer_secret: str = "sandbox-secret"
    # True: registerurl also accepts localhost/loopback URLs (http:// is always accepted,
    # as in the sandbox).
    local_mode: bool = False
    validation_timeout: float = 8.0  # seconds the simulator waits for a validation answer
    external_validation: bool = False  # initial state; switchable via control API
    token_ttl_seconds: int = 3599  # expires_in of issued tokens ("3599" as a string on the wire)
    org_balance_minor: int = 0  # starting OrgAccountBalance in cents per shortcode


# --------------------------------------------------------------------------- helpers


def _random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _request_id() -> str:
    """Daraja-looking requestId, e.g. ``11728-2929992-1``."""
    return f"{10000 + secrets.randbelow(90000)}-{1000000 + secrets.randbelow(9000000)}-1"


def _conversation_id() -> str:
    """OriginatorCoversationID shaped like ``6e86-45dd-91ac-fd5d4178ab523408729``."""
    hexdigits = secrets.token_hex(12)
    serial = 1000000 + secrets.randbelow(9000000)
    return f"{hexdigits[:4]}-{hexdigits[4:8]}-{hexdigits[8:12]}-{hexdigits[12:]}{serial}"


def _digits(value: object) -> str | None:
    """A number sent as JSON integer or string of digits, as a string; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text if text.isascii() and text.isdigit() else None


def present_msisdn(msisdn: str, version: str) -> str:
    """MSISDN as the callbacks show it: v1 a SHA-256 hex digest, v2 masked."""
    if version == "v1":
        return hashlib.sha256(msisdn.encode()).hexdigest()
    return f"{msisdn[:4]} ***** {msisdn[-3:]}"


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def url_problem(url: str, local_mode: bool) -> str | None:
    """Why Daraja would refuse this callback URL, or None when it is acceptable."""
    lowered = url.lower()
    for word in FORBIDDEN_URL_WORDS:
        if word in lowered:
            return f"URL has the word {word.upper()}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "URL must be an absolute http(s) URL"
    if not local_mode and _is_local_host(parts.hostname):
        return "localhost URLs are not allowed"
    return None


def _daraja_error(status: int, code: str, message: str) -> web.Response:
    body = {"requestId": _request_id(), "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=status)


def _invalid_payload(missing: list[str] | None = None) -> web.Response:
    message = "Invalid Request Payload"
    if missing:
        message += " - missing " + ", ".join(missing)
    return _daraja_error(400, "400.002.05", message)


def _bad_request(detail: str) -> web.Response:
    return _daraja_error(400, "400.003.02", f"Bad Request - {detail}")


def _missing_fields(payload: JsonObject, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if payload.get(name) is None]


# --------------------------------------------------------------------------- model


@dataclass
class _Registration:
    shortcode: str
    version: str
    response_type: str
    confirmation_url: str
    validation_url: str
    registered_at: str = field(default_factory=now_iso)

    def as_json(self) -> JsonObject:
        return {
            "ShortCode": self.shortcode,
            "version": self.version,
            "ResponseType": self.response_type,
            "ConfirmationURL": self.confirmation_url,
            "ValidationURL": self.validation_url,
            "registered_at": self.registered_at,
        }


@dataclass
class _Transaction:
    conversation_id: str
    trans_id: str
    shortcode: str
    command_id: str
    amount_minor: int
    msisdn: str
    bill_ref: str
    body: JsonObject = field(default_factory=dict)  # the callback body as last sent/prepared
    status: str = "pending"
    created_at: str = field(default_factory=now_iso)

    def as_json(self) -> JsonObject:
        return {
            "conversation_id": self.conversation_id,
            "trans_id": self.trans_id,
            "shortcode": self.shortcode,
            "command_id": self.command_id,
            "amount": format_minor(self.amount_minor),
            "msisdn": self.msisdn,
            "bill_ref": self.bill_ref,
            "status": self.status,
            "created_at": self.created_at,
            "body": self.body,
        }


def _finish(record: JsonObject, outcome: str, **details: Any) -> None:
    record.update(outcome=outcome, finished_at=now_iso(), **details)


# --------------------------------------------------------------------------- engine


class _DarajaEngine(SimEngine):
    """State of one simulated Daraja plus the asynchronous callback deliveries."""

    def __init__(self, settings: DarajaSimSettings) -> None:
        super().__init__(FaultBook(FAULT_KINDS, ENDPOINT_TARGETS), RequestLog())
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None
        self.tokens = BearerTokens()
        self._tasks: set[asyncio.Task[None]] = set()
        self._used_trans_ids: set[str] = set()
        self._next_delivery_id = 1
        self._clear_state()

    def _clear_state(self) -> None:
        self.external_validation = self.settings.external_validation
        self.tokens.clear()
        self.registrations: dict[str, _Registration] = {}
        self.balances: dict[str, int] = {}
        self.transactions: dict[str, _Transaction] = {}
        self.deliveries: list[JsonObject] = []
        self.requests.clear()
        self.faults.clear()

    async def reset(self) -> None:
        await self.cancel_deliveries()
        self._clear_state()

    async def cancel_deliveries(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- OAuth

    def issue_token(self) -> str:
        token = _random_string(_ALPHANUMERIC, 28)
        return self.tokens.issue(token, self.settings.token_ttl_seconds)

    def credentials_valid(self, authorization: str | None) -> bool:
        settings = self.settings
        return basic_auth_matches(authorization, settings.consumer_key, settings.consumer_secret)

    # ---- recording

    def _begin_delivery(
        self, txn: _Transaction, kind: str, url: str, fault: str | None
    ) -> JsonObject:
        """A delivery record, listed at once; outcome and finished_at stay None until done.

        fault: the applied fault's kind, ``magic:<kind>`` for a magic value, or None.
        """
        record: JsonObject = {
            "id": self._next_delivery_id,
            "trans_id": txn.trans_id,
            "conversation_id": txn.conversation_id,
            "kind": kind,
            "url": url,
            "fault": fault,
            "body": dict(txn.body),
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

    # ---- C2B

    def register(self, registration: _Registration) -> None:
        self.registrations[registration.shortcode] = registration
        self.balances.setdefault(registration.shortcode, self.settings.org_balance_minor)

    def new_trans_id(self) -> str:
        while True:
            trans_id = secrets.choice(string.ascii_uppercase) + _random_string(_TRANS_ID_CHARS, 9)
            if trans_id not in self._used_trans_ids:
                self._used_trans_ids.add(trans_id)
                return trans_id

    def start_transaction(self, txn: _Transaction, registration: _Registration) -> None:
        """Record the transaction and deliver its callbacks in the background."""
        self.transactions[txn.conversation_id] = txn
        task = asyncio.create_task(self._settle(txn, registration))
        self._tasks.add(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("callback delivery failed", exc_info=task.exception())

    async def _settle(self, txn: _Transaction, registration: _Registration) -> None:
        if self.external_validation and not await self._validate(txn, registration):
            return
        balance = self.balances.get(txn.shortcode, self.settings.org_balance_minor)
        balance += txn.amount_minor
        self.balances[txn.shortcode] = balance
        txn.body = {**txn.body, "OrgAccountBalance": format_minor(balance)}
        txn.status = "completed"  # the money has moved, whatever the confirmation answer
        await self._deliver(
            txn, "confirmation", registration.confirmation_url, CONFIRMATION_TIMEOUT
        )

    async def _validate(self, txn: _Transaction, registration: _Registration) -> bool:
        """Ask the validation URL; True when the payment may go ahead."""
        record = await self._deliver(
            txn, "validation", registration.validation_url, self.settings.validation_timeout
        )
        answer = record["answer"]
        usable = (
            record["outcome"] == "answered"
            and 200 <= record["http_status"] < 300
            and isinstance(answer, dict)
            and "ResultCode" in answer
        )
        if not usable:  # timeout, error, non-2xx or not JSON: the ResponseType decides
            if registration.response_type == "Completed":
                return True
            txn.status = "cancelled"
            return False
        if str(answer["ResultCode"]).strip() != "0":
            txn.status = "rejected"
            return False
        if answer.get("ThirdPartyTransID"):
            txn.body = {**txn.body, "ThirdPartyTransID": str(answer["ThirdPartyTransID"])}
        return True

    async def _deliver(
        self, txn: _Transaction, kind: str, url: str, answer_within: float
    ) -> JsonObject:
        """Deliver one callback, honouring an armed fault or else a magic Msisdn.

        Returns its (first) record. The records exist before the first await, so
        once a transaction has left "pending" the deliveries list already shows
        every callback it will get.
        """
        fault_kind, seconds, label = self._delivery_fault(txn, kind)
        duplicate = fault_kind == "duplicate" and kind == "confirmation"
        records = [
            self._begin_delivery(txn, kind, url, label) for _ in range(2 if duplicate else 1)
        ]
        if fault_kind == "latency":
            await self.pause(seconds or 0.0)
        if fault_kind in ("drop", "timeout"):
            _finish(records[0], "dropped" if fault_kind == "drop" else "timeout")
            return records[0]
        for record in records:
            await self._post(record, answer_within)
        return records[0]

    def _delivery_fault(
        self, txn: _Transaction, kind: str
    ) -> tuple[str | None, float | None, str | None]:
        """(fault kind, seconds, recorded label) for one callback: armed fault, else magic."""
        fault = self.faults.take(kind)
        if fault is not None:
            return fault.kind, fault.seconds, fault.kind
        magic = MAGIC_MSISDNS.get(txn.msisdn)
        if magic is not None and magic.target == kind:
            return magic.kind, magic.seconds, magic.label
        return None, None, None

    async def _post(self, record: JsonObject, answer_within: float) -> None:
        assert self.session is not None, "the app's client session starts with the app"
        try:
            async with self.session.post(
                record["url"],
                json=record["body"],
                timeout=aiohttp.ClientTimeout(total=answer_within),
            ) as response:
                text = (await response.read()).decode("utf-8", errors="replace")
        except TimeoutError:
            _finish(record, "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            _finish(record, "error", error=f"{type(exc).__name__}: {exc}")
        else:
            _finish(record, "answered", http_status=response.status, answer=json_or_text(text))

    # ---- control views

    def state_json(self) -> JsonObject:
        return {
            "external_validation": self.external_validation,
            "registrations": {code: reg.as_json() for code, reg in self.registrations.items()},
            "balances": {code: format_minor(minor) for code, minor in self.balances.items()},
        }


ENGINE = web.AppKey("daraja_engine", _DarajaEngine)


# --------------------------------------------------------------------------- provider API


async def _oauth(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    if not engine.credentials_valid(request.headers.get("Authorization")):
        return _daraja_error(400, "400.008.01", "Invalid Authentication passed")
    if request.query.get("grant_type") != "client_credentials":
        return _daraja_error(400, "400.008.02", "Invalid grant type passed")
    token = engine.issue_token()
    return web.json_response(
        {"access_token": token, "expires_in": str(engine.settings.token_ttl_seconds)}
    )


def _registration_from(
    payload: JsonObject, version: str, settings: DarajaSimSettings
) -> _Registration | web.Response:
    shortcode = _digits(payload["ShortCode"])
    if shortcode is None:
        return _bad_request("Invalid ShortCode")
    if payload["ResponseType"] not in RESPONSE_TYPES:
        return _bad_request("Invalid ResponseType")
    for name in ("ValidationURL", "ConfirmationURL"):
        url = payload[name]
        problem = url_problem(url, settings.local_mode) if isinstance(url, str) else "not a URL"
        if problem is not None:
            return _bad_request(f"Invalid {name} - {problem}")
    return _Registration(
        shortcode,
        version,
        payload["ResponseType"],
        payload["ConfirmationURL"],
        payload["ValidationURL"],
    )


async def _register_url(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return _invalid_payload()
    if missing := _missing_fields(payload, REGISTER_FIELDS):
        return _invalid_payload(missing)
    registration = _registration_from(payload, request.match_info["version"], engine.settings)
    if isinstance(registration, web.Response):
        return registration
    engine.register(registration)
    return web.json_response(
        {
            "OriginatorCoversationID": _conversation_id(),
            "ResponseCode": "0",
            "ResponseDescription": "Success",
        }
    )


def _transaction_from(
    payload: JsonObject, engine: _DarajaEngine
) -> tuple[_Transaction, _Registration] | web.Response:
    shortcode = _digits(payload["ShortCode"])
    if shortcode is None:
        return _bad_request("Invalid ShortCode")
    command_id = payload["CommandID"]
    if not isinstance(command_id, str) or command_id not in TRANSACTION_TYPES:
        return _bad_request("Invalid CommandID")
    amount_minor = parse_amount_minor(payload["Amount"])
    if amount_minor is None:
        return _bad_request("Invalid Amount")
    msisdn = _digits(payload["Msisdn"])
    if msisdn is None or not 9 <= len(msisdn) <= 15:
        return _bad_request("Invalid Msisdn")
    bill_ref = ""
    if command_id == "CustomerPayBillOnline":
        raw_ref = payload.get("BillRefNumber")
        if raw_ref is None:
            return _invalid_payload(["BillRefNumber"])
        bill_ref = str(raw_ref)
        if isinstance(raw_ref, bool) or not isinstance(raw_ref, str | int) or len(bill_ref) > 20:
            return _bad_request("Invalid BillRefNumber")
    registration = engine.registrations.get(shortcode)
    if registration is None:
        return _bad_request(f"ShortCode {shortcode} has no registered URLs")
    txn = _Transaction(
        _conversation_id(),
        engine.new_trans_id(),
        shortcode,
        command_id,
        amount_minor,
        msisdn,
        bill_ref,
    )
    txn.body = _callback_body(txn, registration.version)
    return txn, registration


def _callback_body(txn: _Transaction, version: str) -> JsonObject:
    """The validation body; confirmation adds the balance (and a ThirdPartyTransID echo)."""
    return {
        "TransactionType": TRANSACTION_TYPES[txn.command_id],
        "TransID": txn.trans_id,
        "TransTime": datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S"),
        "TransAmount": format_minor(txn.amount_minor),
        "BusinessShortCode": txn.shortcode,
        "BillRefNumber": txn.bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": "",
        "ThirdPartyTransID": "",
        "MSISDN": present_msisdn(txn.msisdn, version),
        "FirstName": "JOHN",
        "MiddleName": "",
        "LastName": "DOE",
    }


async def _simulate(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    payload = json_object(await request.text())
    if payload is None:
        return _invalid_payload()
    if missing := _missing_fields(payload, SIMULATE_FIELDS):
        return _invalid_payload(missing)
    parsed = _transaction_from(payload, engine)
    if isinstance(parsed, web.Response):
        return parsed
    txn, registration = parsed
    engine.start_transaction(txn, registration)
    return web.json_response(
        {
            "OriginatorCoversationID": txn.conversation_id,
            "ResponseCode": "0",
            "ResponseDescription": "Accept the service request successfully.",
        }
    )


def _internal_error() -> web.Response:
    # Not 500.003.1001: that code means "Urls are already registered" on registerurl.
    return _daraja_error(500, "500.001.1001", "Internal Server Error")


async def _provider_answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    route_error = request.match_info.http_exception
    if route_error is not None:
        return _daraja_error(route_error.status, f"{route_error.status}.001.01", route_error.reason)
    engine = request.app[ENGINE]
    if request.match_info.route.name != "oauth" and not engine.tokens.valid(
        request.headers.get("Authorization")
    ):
        return _daraja_error(404, "404.001.03", "Invalid Access Token")
    return await handler(request)


# --------------------------------------------------------------------------- control API


async def _get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].state_json())


async def _set_validation(request: web.Request) -> web.Response:
    enabled = (await control_body(request)).get("enabled")
    if not isinstance(enabled, bool):
        raise ControlError("enabled must be true or false")
    request.app[ENGINE].external_validation = enabled
    return web.json_response({"external_validation": enabled})


async def _list_deliveries(request: web.Request) -> web.Response:
    filters = {
        name: request.query[name]
        for name in ("trans_id", "conversation_id", "kind")
        if request.query.get(name)
    }
    items = [
        item
        for item in request.app[ENGINE].deliveries
        if all(item[name] == value for name, value in filters.items())
    ]
    return web.json_response({"items": items})


async def _list_transactions(request: web.Request) -> web.Response:
    transactions = request.app[ENGINE].transactions.values()
    return web.json_response({"items": [txn.as_json() for txn in transactions]})


async def _get_transaction(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    txn = request.app[ENGINE].transactions.get(conversation_id)
    if txn is None:
        return web.json_response({"error": f"unknown transaction {conversation_id}"}, status=404)
    return web.json_response(txn.as_json())


async def _reset(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    await engine.reset()
    return web.json_response(engine.state_json())


# --------------------------------------------------------------------------- application


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    """One outbound session for callbacks; pending deliveries die with the app."""
    engine = app[ENGINE]
    engine.session = aiohttp.ClientSession()
    yield
    await engine.cancel_deliveries()
    await engine.session.close()


def create_app(settings: DarajaSimSettings) -> web.Application:
    """Provider API plus ``/_sim/`` control API; runnable by any aiohttp runner or test client."""
    engine = _DarajaEngine(settings)
    app = create_sim_app(engine, _provider_answer, _internal_error)
    app[ENGINE] = engine
    app.cleanup_ctx.append(_client_session)
    app.router.add_get("/oauth/v1/generate", _oauth, name="oauth")
    app.router.add_post(
        r"/mpesa/c2b/{version:v[12]}/registerurl", _register_url, name="registerurl"
    )
    app.router.add_post(r"/mpesa/c2b/{version:v[12]}/simulate", _simulate, name="simulate")
    app.router.add_get("/_sim/state", _get_state)
    app.router.add_post("/_sim/validation", _set_validation)
    app.router.add_get("/_sim/deliveries", _list_deliveries)
    app.router.add_get("/_sim/transactions", _list_transactions)
    app.router.add_get("/_sim/transactions/{conversation_id}", _get_transaction)
    app.router.add_post("/_sim/reset", _reset)
    return app


class DarajaSimulator(SimulatorServer):
    """The simulator on a real socket; stop() also cancels pending callback deliveries."""

    def __init__(self, settings: DarajaSimSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or DarajaSimSettings()

    def build_app(self) -> web.Application:
        return create_app(self.settings)
