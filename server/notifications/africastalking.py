"""Africa's Talking's SMS API: one message to one number per call.

``POST {base_url}/version1/messaging``, form-encoded ``username``, ``to``, ``message``
and ``from`` (the sender id, left out when none is set), with the ``apiKey`` header and
``Accept: application/json``. Its answer (HTTP 201)::

    {"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000",
                        "Recipients": [{"statusCode": 101, "number": "+254711000000",
                                        "status": "Success", "cost": "KES 0.8000",
                                        "messageId": "ATXid_..."}]}}

A recipient's statusCode 100 (Processed), 101 (Sent) or 102 (Queued) is accepted; any
other is a `ProviderRejected` with that code (401 RiskHold, 402 InvalidSenderId, 403
InvalidPhoneNumber, 404 UnsupportedNumberType, 405 InsufficientBalance, 406
UserInBlacklist, 407 CouldNotRoute, 409 DoNotDisturbRejection, 500 InternalServerError,
501 GatewayError, 502 RejectedByGateway). A request refused whole (a sender id the
account does not have: no recipients) is rejected with the provider's message as the
code; an HTTP error status with ``http_<status>`` (5xx: unavailable, nothing was sent).
A 2xx answer that cannot be read may have sent the message: outcome unknown.

The call goes through the shared outbound session with the transport's timeout, typed
errors and call log (server.integrations.transport). The provider's form body does not
fit ProviderTransport (which sends JSON and logs in), so this client uses the same
transport function and call log directly. The API key travels in a header only: the
call log keeps the provider, endpoint, outcome and error message, never a header."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp

from server.integrations.transport import (
    Answer,
    CallLog,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
    send,
)
from server.notifications.senders import Accepted, Outgoing
from server.notifications.settings import NotificationSettings

log = logging.getLogger("gateway.sms")

PROVIDER = "africastalking"
ENDPOINT = "messaging"
PATH = "/version1/messaging"
ACCEPTED_CODES = (100, 101, 102)
FORM = "application/x-www-form-urlencoded"


class AfricasTalkingSender:
    local = False

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        settings: NotificationSettings,
        calls: CallLog | None = None,
    ) -> None:
        """`session`: the gateway's shared outbound session; None (a command-line task)
        opens one for each run of the job."""
        self._session = session
        self._run_session: aiohttp.ClientSession | None = None
        self._url = settings.base_url.rstrip("/") + PATH
        self._username = settings.username
        self._api_key = settings.api_key
        self._sender_id = settings.sender_id
        self._limit = aiohttp.ClientTimeout(total=settings.timeout_seconds)
        self.calls = calls or CallLog()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if self._session is not None:
            yield
            return
        async with aiohttp.ClientSession() as session:
            self._run_session = session
            try:
                yield
            finally:
                self._run_session = None

    async def send(self, message: Outgoing) -> Accepted:
        session = self._session or self._run_session
        if session is None:
            raise ProviderUnavailable(PROVIDER, "no outbound session (outside a run of the job)")
        form = {"username": self._username, "to": message.recipient, "message": message.text}
        if self._sender_id:
            form["from"] = self._sender_id
        headers = {"apiKey": self._api_key, "Accept": "application/json", "Content-Type": FORM}
        async with self.calls.call(PROVIDER, ENDPOINT):
            answer = await send(
                session,
                PROVIDER,
                "POST",
                self._url,
                limit=self._limit,
                data=urlencode(form),
                headers=headers,
            )
            return read_answer(answer, message.recipient)


def read_answer(answer: Answer, recipient: str) -> Accepted:
    """The one recipient's outcome in an answer to a send to `recipient`."""
    if answer.status >= 500:
        raise ProviderUnavailable(
            PROVIDER, f"messaging: HTTP {answer.status}", http_status=answer.status
        )
    if not 200 <= answer.status < 300:
        raise ProviderRejected(
            PROVIDER,
            f"http_{answer.status}",
            _text(answer.body) or "request refused",
            http_status=answer.status,
        )
    data = answer.body.get("SMSMessageData") if isinstance(answer.body, dict) else None
    if not isinstance(data, dict):
        raise ProviderOutcomeUnknown(PROVIDER, "messaging: an answer without SMSMessageData")
    recipients = data.get("Recipients")
    if not isinstance(recipients, list):
        raise ProviderOutcomeUnknown(PROVIDER, "messaging: an answer without Recipients")
    if not recipients:  # the whole request was refused (e.g. InvalidSenderId)
        reason = str(data.get("Message") or "no recipient accepted")
        raise ProviderRejected(PROVIDER, reason, reason, http_status=answer.status)
    item = next(
        (one for one in recipients if isinstance(one, dict) and one.get("number") == recipient),
        recipients[0],
    )
    if not isinstance(item, dict):
        raise ProviderOutcomeUnknown(PROVIDER, "messaging: an unreadable recipient")
    code = _code(item.get("statusCode"))
    status = str(item.get("status") or "")
    if code is None:
        raise ProviderOutcomeUnknown(PROVIDER, "messaging: a recipient without statusCode")
    if code not in ACCEPTED_CODES:
        raise ProviderRejected(PROVIDER, str(code), status or "refused", http_status=answer.status)
    message_id = str(item.get("messageId") or "")
    if not message_id or message_id == "None":
        raise ProviderOutcomeUnknown(PROVIDER, f"messaging: accepted ({code}) without a messageId")
    return Accepted(message_id, code, status, str(item.get("cost") or ""))


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(body: Any) -> str:
    return "" if body is None else str(body)[:200]
