"""Daraja API client: OAuth with a cached token, and C2B URL registration."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp

from server.integrations.transport import (
    Answer,
    CachedToken,
    CallLog,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
    TokenCache,
    send,
)
from server.kernel.clock import Clock
from server.mpesa.settings import DarajaSettings

log = logging.getLogger("gateway.daraja")

PROVIDER = "daraja"
INVALID_TOKEN = "404.001.03"
INVALID_CREDENTIALS = "400.008.01"
RATE_LIMITED = "500.003.02"


@dataclass(frozen=True)
class Registration:
    conversation_id: str
    description: str


class DarajaClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, consumer_key: str,
                 consumer_secret: str, clock: Clock, timeout_seconds: float,
                 calls: CallLog | None = None) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        credentials = f"{consumer_key}:{consumer_secret}".encode()
        self._basic_auth = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._calls = calls or CallLog()
        self.tokens = TokenCache(self._login, clock,
                                 on_fetch=self._calls.token_fetched(PROVIDER))
        self._clock = clock

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, daraja: DarajaSettings, clock: Clock,
                      calls: CallLog | None = None) -> DarajaClient:
        return cls(session, daraja.base_url, daraja.consumer_key, daraja.consumer_secret, clock,
                   daraja.timeout_seconds, calls)

    async def register_urls(self, shortcode: str, response_type: str, confirmation_url: str,
                            validation_url: str, version: str = "v2") -> Registration:
        body = {"ShortCode": shortcode, "ResponseType": response_type,
                "ConfirmationURL": confirmation_url, "ValidationURL": validation_url}
        async with self._calls.call(PROVIDER, "registerurl"):
            answer = await self._post(f"/mpesa/c2b/{version}/registerurl", body)
            data = answer.body if isinstance(answer.body, dict) else {}
            return Registration(_conversation_id(data), str(data.get("ResponseDescription", "")))

    async def simulate_payment(self, shortcode: str, amount: str, msisdn: str,
                               bill_ref: str | None, version: str = "v2") -> str:
        """Daraja sandbox only: ask M-Pesa to make a customer payment; returns the
        conversation id. The outcome arrives later at the registered callbacks."""
        body = {"ShortCode": shortcode, "Amount": amount, "Msisdn": msisdn,
                "CommandID": "CustomerPayBillOnline" if bill_ref else "CustomerBuyGoodsOnline"}
        if bill_ref:
            body["BillRefNumber"] = bill_ref
        async with self._calls.call(PROVIDER, "simulate"):
            answer = await self._post(f"/mpesa/c2b/{version}/simulate", body)
            return _conversation_id(answer.body)

    # --- transport ------------------------------------------------------

    async def _login(self) -> CachedToken:
        async with self._calls.call(PROVIDER, "oauth"):
            return await self._fetch_token()

    async def _fetch_token(self) -> CachedToken:
        """OAuth is safe to repeat: any failure short of a refusal is tried once more."""
        for attempt in (1, 2):
            try:
                token, seconds = await self._oauth_once()
                break
            except (ProviderUnavailable, ProviderOutcomeUnknown) as err:
                if attempt == 2:
                    raise ProviderUnavailable(PROVIDER, f"oauth: {err.message}") from None
        log.info("daraja_token_issued expires_in=%s", seconds)
        return CachedToken(token, self._clock.now() + timedelta(seconds=seconds))

    async def _oauth_once(self) -> tuple[str, int]:
        url = f"{self._base_url}/oauth/v1/generate?grant_type=client_credentials"
        answer = await self._send("GET", url, headers={"Authorization": self._basic_auth})
        if answer.status == 400 and not answer.body:
            raise ProviderRejected(PROVIDER, INVALID_CREDENTIALS,
                                   "invalid consumer key or secret")
        self._raise_for_error(answer)
        data = answer.body if isinstance(answer.body, dict) else {}
        token, expires_in = data.get("access_token"), data.get("expires_in")
        try:
            seconds = int(str(expires_in))
        except ValueError:
            seconds = 0
        if not isinstance(token, str) or not token or seconds <= 0:
            raise ProviderUnavailable(PROVIDER, "OAuth answer without a usable token")
        return token, seconds

    async def _post(self, path: str, body: dict[str, Any]) -> Answer:
        """POST with the bearer token; an "Invalid Access Token" answer gets one new login."""
        for attempt in (1, 2):
            token = await self.tokens.get()
            answer = await self._send("POST", self._base_url + path, json_body=body,
                                      headers={"Authorization": f"Bearer {token}"})
            if _error_code(answer) == INVALID_TOKEN and attempt == 1:
                log.info("daraja_token_rejected path=%s", path)
                self.tokens.invalidate(token)
                continue
            self._raise_for_error(answer)
            return answer
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, *, json_body: Any = None,
                    headers: dict[str, str] | None = None) -> Answer:
        data = None if json_body is None else json.dumps(json_body)
        headers = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
        return await send(self._session, PROVIDER, method, url, data=data, headers=headers,
                          limit=self._timeout)

    @staticmethod
    def _raise_for_error(answer: Answer) -> None:
        if answer.status < 400:
            if answer.body is None:
                raise ProviderOutcomeUnknown(PROVIDER, "answer is not JSON")
            return
        code = _error_code(answer) or str(answer.status)
        message = answer.body.get("errorMessage", "") if isinstance(answer.body, dict) else ""
        if answer.status >= 500 and code != "500.003.1001":
            raise ProviderUnavailable(PROVIDER, f"{code} {message}".strip())
        raise ProviderRejected(PROVIDER, code, message or f"HTTP {answer.status}")


def _conversation_id(body: Any) -> str:
    """Daraja spells it OriginatorCoversationID (sic); older answers differ."""
    data = body if isinstance(body, dict) else {}
    if str(data.get("ResponseCode")) != "0":
        raise ProviderOutcomeUnknown(PROVIDER, f"unexpected answer {data!r}")
    for key in ("OriginatorCoversationID", "OriginatorConversationID", "ConversationID"):
        if data.get(key):
            return str(data[key])
    return ""


def _error_code(answer: Answer) -> str | None:
    if isinstance(answer.body, dict) and answer.body.get("errorCode"):
        return str(answer.body["errorCode"])
    return None

