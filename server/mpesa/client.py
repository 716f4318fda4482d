"""Daraja API client: OAuth with a cached token, C2B URL registration, M-Pesa Express
(STK Push: the prompt and its status query), and the reconciliation APIs (Pull
Transactions, Transaction Status, Account Balance)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

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
from server.mpesa.credential import CredentialError, load_certificate, security_credential
from server.mpesa.settings import DarajaSettings

NAIROBI = timezone(timedelta(hours=3), "EAT")

log = logging.getLogger("gateway.daraja")

PROVIDER = "daraja"
INVALID_TOKEN = "404.001.03"
INVALID_CREDENTIALS = "400.008.01"
RATE_LIMITED = "500.003.02"
ALREADY_REGISTERED = "500.003.1001"
# M-Pesa Express. On a push: "Unable to lock subscriber, a transaction is already in
# process for the current subscriber" (and Daraja's other 500 refusals); on a query:
# "The transaction is being processed", i.e. the payer has not answered yet.
SUBSCRIBER_BUSY = "500.001.1001"
INVALID_FIELD = "400.002.02"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
PULL_REGISTER_PATH = "/pulltransactions/v1/register"
PULL_QUERY_PATH = "/pulltransactions/v1/query"
TRANSACTION_STATUS_PATH = "/mpesa/transactionstatus/v1/query"
ACCOUNT_BALANCE_PATH = "/mpesa/accountbalance/v1/query"
PULL_REGISTERED, PULL_ALREADY_REGISTERED = "1000", "1001"
PULL_ROWS, PULL_NO_ROWS = "1000", "1001"
# Public descriptions of Pull Transactions disagree on where the rows are.
PULL_ROW_KEYS = ("Response", "response", "Transactions", "transactions")
PULL_TIME = "%Y-%m-%d %H:%M:%S"
# Daraja spells it OriginatorCoversationID (sic); older answers differ.
CONVERSATION_KEYS = ("OriginatorCoversationID", "OriginatorConversationID", "ConversationID")


@dataclass(frozen=True)
class Registration:
    conversation_id: str
    description: str


@dataclass(frozen=True)
class StkPushed:
    """Daraja's acknowledgement of a prompt: the prompt is on the payer's phone."""

    merchant_request_id: str
    checkout_request_id: str
    description: str


@dataclass(frozen=True)
class StkQueried:
    """The prompt's status: its result code (a string on the wire), or None while the
    payer has not answered."""

    result_code: str | None
    description: str


@dataclass(frozen=True)
class PullRegistration:
    status: str  # 1000 registered now, 1001 registered before
    description: str


@dataclass(frozen=True)
class Accepted:
    """An initiator request taken: its result comes later to ResultURL (or
    QueueTimeOutURL), carrying these ids."""

    originator_conversation_id: str
    conversation_id: str


class InitiatorNotConfigured(Exception):
    """Transaction Status and Account Balance need daraja.initiator, its password and
    M-Pesa's certificate."""


class AnswerLate(ProviderOutcomeUnknown):
    """The answer did not come in time but the request still waits for it: `late` ends
    with what the answer brings (or raises its error)."""

    def __init__(self, message: str, late: Awaitable[StkPushed]) -> None:
        super().__init__(PROVIDER, message)
        self.late = late


def nairobi_timestamp(moment: datetime) -> str:
    """`YYYYMMDDHHmmss` in Nairobi time, as STK Push's Timestamp."""
    return moment.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(ShortCode + Passkey + Timestamp)."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


class DarajaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: DarajaSettings,
        clock: Clock,
        calls: CallLog | None = None,
    ) -> None:
        self._settings = settings
        credentials = f"{settings.consumer_key}:{settings.consumer_secret}".encode()
        self._basic_auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._clock = clock
        self._transport = ProviderTransport(
            session,
            PROVIDER,
            settings.base_url,
            settings.timeout_seconds,
            clock,
            login=self._oauth,
            login_endpoint="oauth",
            token_rejected=lambda answer: _error_code(answer) == INVALID_TOKEN,
            calls=calls,
        )
        self.tokens = self._transport.tokens
        self._credential: str | None = None  # made once, on the first initiator call

    async def register_urls(
        self,
        shortcode: str,
        response_type: str,
        confirmation_url: str,
        validation_url: str,
        version: str = "v2",
    ) -> Registration:
        body = {
            "ShortCode": shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        }
        async with self._transport.call("registerurl"):
            answer = await self._post(f"/mpesa/c2b/{version}/registerurl", body)
            data = answer.body if isinstance(answer.body, dict) else {}
            return Registration(_conversation_id(answer), str(data.get("ResponseDescription", "")))

    async def simulate_payment(
        self, shortcode: str, amount: str, msisdn: str, bill_ref: str | None, version: str = "v2"
    ) -> str:
        """Daraja sandbox only: ask M-Pesa to make a customer payment; returns the
        conversation id. The outcome arrives later at the registered callbacks."""
        body = {
            "ShortCode": shortcode,
            "Amount": amount,
            "Msisdn": msisdn,
            "CommandID": "CustomerPayBillOnline" if bill_ref else "CustomerBuyGoodsOnline",
        }
        if bill_ref:
            body["BillRefNumber"] = bill_ref
        async with self._transport.call("simulate"):
            answer = await self._post(f"/mpesa/c2b/{version}/simulate", body)
            return _conversation_id(answer)

    # --- M-Pesa Express ---------------------------------------------------

    def _stk_credentials(self) -> dict[str, str]:
        shortcode = self._settings.stk_business_shortcode
        timestamp = nairobi_timestamp(self._clock.now())
        return {
            "BusinessShortCode": shortcode,
            "Password": stk_password(shortcode, self._settings.passkey, timestamp),
            "Timestamp": timestamp,
        }

    async def stk_push(
        self,
        phone: str,
        amount: int,
        account_reference: str,
        description: str,
        callback_url: str,
        *,
        late_answer_seconds: float | None = None,
    ) -> StkPushed:
        """Prompt `phone` to pay `amount` whole shillings to the STK shortcode.

        Refusals are ProviderRejected with Daraja's code (`500.001.1001` subscriber
        busy, `500.003.02` spike arrest, `400.002.02` an invalid field, ...). When
        `late_answer_seconds` is given and the answer does not come within the
        client's timeout, AnswerLate says so and still waits for it that long."""
        credentials = self._stk_credentials()
        body = {
            **credentials,
            "TransactionType": self._settings.stk_transaction_type,
            "Amount": amount,
            "PartyA": phone,
            "PartyB": credentials["BusinessShortCode"],
            "PhoneNumber": phone,
            "CallBackURL": callback_url,
            "AccountReference": account_reference[:ACCOUNT_REFERENCE_MAX],
            "TransactionDesc": description[:TRANSACTION_DESC_MAX],
        }
        async with self._transport.call("processrequest"):
            exchange = asyncio.ensure_future(
                self._transport.authorized(
                    "POST",
                    STK_PUSH_PATH,
                    data=json.dumps(body),
                    timeout_seconds=late_answer_seconds,
                )
            )
            if late_answer_seconds is None:
                return _pushed(await exchange)
            try:
                answer = await asyncio.wait_for(
                    asyncio.shield(exchange), self._settings.timeout_seconds
                )
            except TimeoutError:
                raise AnswerLate(
                    f"{STK_PUSH_PATH}: no answer in {self._settings.timeout_seconds:g} s",
                    _late_push(exchange),
                ) from None
            return _pushed(answer)

    async def stk_query(self, checkout_request_id: str) -> StkQueried:
        """The prompt's status; `500.001.1001` "The transaction is being processed" is
        pending (result_code None), not a failure."""
        body = {**self._stk_credentials(), "CheckoutRequestID": checkout_request_id}
        async with self._transport.call("stkpushquery"):
            answer = await self._transport.authorized("POST", STK_QUERY_PATH, data=json.dumps(body))
            data = answer.body if isinstance(answer.body, dict) else {}
            message = str(data.get("errorMessage", ""))
            # The same code also refuses a query ("Wrong credentials", "Merchant does not
            # exist"): only "being processed" means the payer has not answered yet.
            if (
                answer.status >= 400
                and _error_code(answer) == SUBSCRIBER_BUSY
                and "being processed" in message.lower()
            ):
                return StkQueried(None, message)
            _raise_stk_error(answer)
            code = data.get("ResultCode")
            if code is None or str(data.get("ResponseCode", "0")) != "0":
                raise ProviderOutcomeUnknown(
                    PROVIDER,
                    f"query answer without a result {data!r:.200}",
                    http_status=answer.status,
                )
            return StkQueried(str(code), str(data.get("ResultDesc", "")))

    # --- reconciliation -------------------------------------------------

    async def register_pull(
        self, shortcode: str, nominated_number: str, callback_url: str
    ) -> PullRegistration:
        body = {
            "ShortCode": shortcode,
            "RequestType": "Pull",
            "NominatedNumber": nominated_number,
            "CallBackURL": callback_url,
        }
        async with self._transport.call("pullregister"):
            answer = await self._post(PULL_REGISTER_PATH, body)
            data = answer.body if isinstance(answer.body, dict) else {}
            status = str(data.get("ResponseStatus", data.get("ResponseCode", "")))
            description = str(data.get("ResponseDescription", ""))
            if status not in (PULL_REGISTERED, PULL_ALREADY_REGISTERED):
                raise ProviderRejected(PROVIDER, status or "unknown", description or repr(data))
            return PullRegistration(status, description)

    async def pull_transactions(
        self, shortcode: str, start: datetime, end: datetime, offset: int
    ) -> list[dict[str, Any]]:
        """One page of the C2B payments M-Pesa holds for the shortcode between start
        and end (at most 48 hours back), from row `offset`; empty when there is none."""
        body = {
            "ShortCode": shortcode,
            "StartDate": start.astimezone(NAIROBI).strftime(PULL_TIME),
            "EndDate": end.astimezone(NAIROBI).strftime(PULL_TIME),
            "OffSetValue": str(offset),
        }
        async with self._transport.call("pullquery"):
            answer = await self._post(PULL_QUERY_PATH, body)
            data = answer.body if isinstance(answer.body, dict) else {}
            code = str(data.get("ResponseCode", ""))
            if code == PULL_NO_ROWS:
                return []
            if code != PULL_ROWS:
                raise ProviderRejected(
                    PROVIDER, code or "unknown", str(data.get("ResponseMessage", repr(data)))
                )
            return _pull_rows(data)

    async def transaction_status(
        self, receipt: str, result_url: str, timeout_url: str, remarks: str
    ) -> Accepted:
        """Ask M-Pesa about one receipt; the answer comes to result_url."""
        body = {
            **self._initiator(),
            "CommandID": "TransactionStatusQuery",
            "TransactionID": receipt,
            "PartyA": self._settings.shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
            "Remarks": remarks,
            "Occasion": receipt,
        }
        async with self._transport.call("transactionstatus"):
            return _accepted(await self._post(TRANSACTION_STATUS_PATH, body))

    async def account_balance(self, result_url: str, timeout_url: str) -> Accepted:
        body = {
            **self._initiator(),
            "CommandID": "AccountBalance",
            "PartyA": self._settings.shortcode,
            "IdentifierType": "4",
            "Remarks": "balance check",
            "ResultURL": result_url,
            "QueueTimeOutURL": timeout_url,
        }
        async with self._transport.call("accountbalance"):
            return _accepted(await self._post(ACCOUNT_BALANCE_PATH, body))

    def _initiator(self) -> dict[str, str]:
        settings = self._settings
        if not (settings.initiator and settings.initiator_password and settings.certificate_path):
            raise InitiatorNotConfigured(
                "set daraja.initiator, daraja.certificate_path and "
                "GATEWAY_DARAJA_INITIATOR_PASSWORD for Transaction Status and Account Balance"
            )
        if self._credential is None:
            try:
                key = load_certificate(settings.certificate_path)
            except CredentialError as err:
                raise InitiatorNotConfigured(str(err)) from None
            self._credential = security_credential(settings.initiator_password, key)
        return {"Initiator": settings.initiator, "SecurityCredential": self._credential}

    # --- wire format ----------------------------------------------------

    async def _oauth(self) -> CachedToken:
        """One OAuth attempt; the transport tries a failure short of a refusal once more."""
        answer = await self._transport.send(
            "GET",
            "/oauth/v1/generate?grant_type=client_credentials",
            headers={"Authorization": self._basic_auth},
        )
        if answer.status == 400 and not answer.body:
            raise ProviderRejected(
                PROVIDER, INVALID_CREDENTIALS, "invalid consumer key or secret", http_status=400
            )
        _raise_for_error(answer)
        data = answer.body if isinstance(answer.body, dict) else {}
        token, expires_in = data.get("access_token"), data.get("expires_in")
        try:
            seconds = int(str(expires_in))
        except ValueError:
            seconds = 0
        if not isinstance(token, str) or not token or seconds <= 0:
            raise ProviderUnavailable(
                PROVIDER, "OAuth answer without a usable token", http_status=answer.status
            )
        log.info("daraja_token_issued expires_in=%s", seconds)
        return CachedToken(token, self._clock.now() + timedelta(seconds=seconds))

    async def _post(self, path: str, body: dict[str, Any]) -> Answer:
        """POST with the bearer token; an "Invalid Access Token" answer gets one new login."""
        answer = await self._transport.authorized("POST", path, data=json.dumps(body))
        _raise_for_error(answer)
        return answer


def _raise_for_error(answer: Answer) -> None:
    if answer.status < 400:
        if answer.body is None:
            raise ProviderOutcomeUnknown(PROVIDER, "answer is not JSON", http_status=answer.status)
        return
    data = answer.body if isinstance(answer.body, dict) else {}
    code = _error_code(answer) or str(answer.status)
    message = data.get("errorMessage", "")
    request_id = str(data["requestId"]) if data.get("requestId") else None
    if answer.status >= 500 and code != ALREADY_REGISTERED:
        raise ProviderUnavailable(
            PROVIDER,
            f"{code} {message}".strip(),
            http_status=answer.status,
            correlation_id=request_id,
        )
    raise ProviderRejected(
        PROVIDER,
        code,
        message or f"HTTP {answer.status}",
        http_status=answer.status,
        correlation_id=request_id,
    )


def _raise_stk_error(answer: Answer) -> None:
    """STK errors: every answer in Daraja's error envelope is a refusal with its code
    (Daraja acted on nothing); a server error without one is unavailable."""
    if answer.status < 400:
        if answer.body is None:
            raise ProviderOutcomeUnknown(PROVIDER, "answer is not JSON", http_status=answer.status)
        return
    data = answer.body if isinstance(answer.body, dict) else {}
    code = _error_code(answer)
    request_id = str(data["requestId"]) if data.get("requestId") else None
    if code is None and answer.status >= 500:
        raise ProviderUnavailable(
            PROVIDER, f"HTTP {answer.status}", http_status=answer.status, correlation_id=request_id
        )
    raise ProviderRejected(
        PROVIDER,
        code or str(answer.status),
        str(data.get("errorMessage") or f"HTTP {answer.status}"),
        http_status=answer.status,
        correlation_id=request_id,
    )


def _pushed(answer: Answer) -> StkPushed:
    _raise_stk_error(answer)
    data = answer.body if isinstance(answer.body, dict) else {}
    code = str(data.get("ResponseCode", ""))
    description = str(data.get("ResponseDescription") or data.get("CustomerMessage") or "")
    if code and code != "0":
        raise ProviderRejected(PROVIDER, code, description, http_status=answer.status)
    checkout = data.get("CheckoutRequestID")
    if code != "0" or not checkout:
        raise ProviderOutcomeUnknown(
            PROVIDER, f"unexpected answer {data!r:.200}", http_status=answer.status
        )
    return StkPushed(str(data.get("MerchantRequestID", "")), str(checkout), description)


async def _late_push(exchange: Awaitable[Answer]) -> StkPushed:
    return _pushed(await exchange)


def _pull_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows, whether nested (`[[...]]`) or flat, under any of the names in use."""
    found: Any = next((data[key] for key in PULL_ROW_KEYS if key in data), [])
    items = found if isinstance(found, list) else [found]
    rows: list[dict[str, Any]] = []
    for item in items:
        rows.extend(row for row in (item if isinstance(item, list) else [item]) if row)
    if not all(isinstance(row, dict) for row in rows):
        raise ProviderOutcomeUnknown(PROVIDER, f"unreadable pull rows {found!r:.200}")
    return rows


def _accepted(answer: Answer) -> Accepted:
    data = answer.body if isinstance(answer.body, dict) else {}
    if str(data.get("ResponseCode")) != "0":
        raise ProviderRejected(
            PROVIDER,
            str(data.get("ResponseCode", "unknown")),
            str(data.get("ResponseDescription", repr(data)))[:200],
            http_status=answer.status,
        )
    return Accepted(
        str(data.get("OriginatorConversationID") or data.get("OriginatorCoversationID") or ""),
        str(data.get("ConversationID", "")),
    )


def _conversation_id(answer: Answer) -> str:
    data = answer.body if isinstance(answer.body, dict) else {}
    conversation = next((str(data[key]) for key in CONVERSATION_KEYS if data.get(key)), "")
    if str(data.get("ResponseCode")) != "0":
        raise ProviderOutcomeUnknown(
            PROVIDER,
            f"unexpected answer {data!r}",
            http_status=answer.status,
            correlation_id=conversation or None,
        )
    return conversation


def _error_code(answer: Answer) -> str | None:
    if isinstance(answer.body, dict) and answer.body.get("errorCode"):
        return str(answer.body["errorCode"])
    return None
