"""Qmoney API client: login with a cached token, getMoney and verifyCode.

`responseCode` arrives as a string or an integer: it is compared as a string.
getMoney only sends the payer an OTP, so any failure of it moves no money and is
reported as unavailable; verifyCode moves the money, so a lost answer is
`ProviderOutcomeUnknown` and is never retried.
"""

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
from server.qmoney.settings import QmoneySettings

log = logging.getLogger("gateway.qmoney")

PROVIDER = "qmoney"
SUCCESS = "1"
WRONG_OTP = "-150005"
INSUFFICIENT_BALANCE = "-120008"
SESSION_NOT_FOUND = "-150001"

# getMoney wants the amount as a JSON number. It is spliced in as text so that no
# float ever holds it.
_AMOUNT_PLACEHOLDER = "\u0000amount\u0000"


@dataclass(frozen=True)
class Verified:
    transaction_id: str
    balances: dict[str, str]


class QmoneyClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: QmoneySettings,
        clock: Clock,
        calls: CallLog | None = None,
    ) -> None:
        channel = base64.b64encode(
            f"{settings.channel_id}:{settings.channel_secret}".encode()
        ).decode("ascii")
        self._channel_auth = f"Basic {channel}"
        self._username = settings.username
        self._password = settings.password
        self._clock = clock
        self._transport = ProviderTransport(
            session,
            PROVIDER,
            settings.base_url,
            settings.timeout_seconds,
            clock,
            login=self._login,
            login_endpoint="login",
            token_rejected=_token_rejected,
            calls=calls,
        )
        self.tokens = self._transport.tokens

    async def get_money(
        self, payer_wallet: str, merchant_account: str, amount: str, pin: str
    ) -> str:
        """Start a debit; Qmoney texts the payer an OTP. Returns Qmoney's transaction id.

        `amount` is a decimal string; it is sent as a JSON number."""
        body = {
            "data": {
                "fromUser": {"userIdentifier": payer_wallet},
                "toUser": {"userIdentifier": merchant_account},
                "serviceId": "MOBILE_MONEY",
                "productId": "NHIA_GETMONEY",
                "remarks": "add",
                "payment": [{"amount": _AMOUNT_PLACEHOLDER}],
                "transactionPin": pin,
            }
        }
        text = json.dumps(body).replace(json.dumps(_AMOUNT_PLACEHOLDER), amount)
        async with self._transport.call("getMoney"):
            try:
                data = await self._call("/getMoney", text)
            except ProviderOutcomeUnknown as err:
                raise ProviderUnavailable(
                    PROVIDER,
                    f"getMoney: {err.message}",
                    http_status=err.http_status,
                    correlation_id=err.correlation_id,
                ) from None
        transaction_id = data.get("transactionId") if isinstance(data, dict) else None
        if not transaction_id:
            raise ProviderUnavailable(PROVIDER, "getMoney answer without a transactionId")
        return str(transaction_id)

    async def verify_code(self, transaction_id: str, otp: str) -> Verified:
        """Complete the debit with the payer's OTP: this moves the money."""
        text = json.dumps({"data": {"otp": otp, "transactionId": transaction_id}})
        async with self._transport.call("verifyCode"):
            data = await self._call("/verifyCode", text)
        data = data if isinstance(data, dict) else {}
        balances = {
            str(item.get("walletExternalId")): str(item.get("availableBalance"))
            for item in data.get("balanceData") or []
            if isinstance(item, dict)
        }
        return Verified(str(data.get("transactionId") or transaction_id), balances)

    # --- wire format ----------------------------------------------------

    async def _login(self) -> CachedToken:
        """One login attempt; the transport tries a failure short of a refusal once more
        (login is safe to repeat and acts on nothing)."""
        body = json.dumps(
            {"grantType": "password", "username": self._username, "password": self._password}
        )
        answer = await self._transport.send(
            "POST", "/login", data=body, headers={"Authorization": self._channel_auth}
        )
        if answer.status == 401:
            raise ProviderRejected(PROVIDER, "401", "channel credential refused", http_status=401)
        data = _data(answer, "login")
        if not isinstance(data, dict) or not data.get("access_token"):
            raise ProviderUnavailable(
                PROVIDER, "login answer without an access_token", http_status=answer.status
            )
        expiry = _expiry_seconds(data.get("accessTokenExpiry"))
        log.info("qmoney_token_issued expiry=%s", expiry if expiry is not None else "none")
        expires_at = None if expiry is None else self._clock.now() + timedelta(seconds=expiry)
        return CachedToken(str(data["access_token"]), expires_at)

    async def _call(self, path: str, body: str) -> Any:
        """An authenticated call; a rejected token gets one new login and one retry
        (Qmoney refused the call before acting on it)."""
        answer = await self._transport.authorized("POST", path, data=body)
        return _data(answer, path.lstrip("/"))


def _data(answer: Answer, operation: str) -> Any:
    body = answer.body
    if answer.status >= 500 or not isinstance(body, dict):
        raise ProviderOutcomeUnknown(
            PROVIDER,
            f"{operation}: unusable answer (HTTP {answer.status})",
            http_status=answer.status,
            correlation_id=_transaction_id(body),
        )
    code = str(body.get("responseCode", "")).strip()
    if code != SUCCESS:
        message = str(body.get("responseMessage") or body.get("error_description") or "")
        raise ProviderRejected(
            PROVIDER,
            code or str(answer.status),
            message,
            http_status=answer.status,
            correlation_id=_transaction_id(body),
        )
    return body.get("data")


def _transaction_id(body: Any) -> str | None:
    """Qmoney's transactionId, where the answer carries one (in `data` or beside it)."""
    if not isinstance(body, dict):
        return None
    data = body.get("data")
    for holder in (data if isinstance(data, dict) else {}, body):
        if holder.get("transactionId"):
            return str(holder["transactionId"])
    return None


def _token_rejected(answer: Answer) -> bool:
    if answer.status == 401:
        return True
    body = answer.body if isinstance(answer.body, dict) else {}
    return body.get("error") == "invalid_token"


def _expiry_seconds(value: Any) -> int | None:
    """accessTokenExpiry in seconds; "-1" (or anything unusable) means no stated expiry."""
    try:
        seconds = int(str(value).strip())
    except ValueError:
        return None
    return seconds if seconds > 0 else None
