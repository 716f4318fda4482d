"""Daraja API client: OAuth with a cached token, and C2B URL registration."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
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
from server.mpesa.settings import DarajaSettings

log = logging.getLogger("gateway.daraja")

PROVIDER = "daraja"
INVALID_TOKEN = "404.001.03"
INVALID_CREDENTIALS = "400.008.01"
RATE_LIMITED = "500.003.02"
ALREADY_REGISTERED = "500.003.1001"
# Daraja spells it OriginatorCoversationID (sic); older answers differ.
CONVERSATION_KEYS = ("OriginatorCoversationID", "OriginatorConversationID", "ConversationID")


@dataclass(frozen=True)
class Registration:
    conversation_id: str
    description: str


class DarajaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: DarajaSettings,
        clock: Clock,
        calls: CallLog | None = None,
    ) -> None:
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
