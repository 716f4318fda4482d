"""Qmoney as a debit channel: getMoney texts the payer a one-time code, verifyCode
with that code moves the money. Qmoney offers no call to ask about a debit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp

from server.debits.contract import (
    DebitOrder,
    ProviderRefused,
    ProviderStatus,
    StatusAnswer,
    code_attempts,
    payer_deadline,
)
from server.insurance.documents import Insuree
from server.integrations.transport import CallLog, ProviderRejected
from server.kernel.clock import Clock
from server.kernel.errors import ApiError, ServiceUnavailable, ValidationFailed
from server.kernel.schemas import iso_stamp
from server.ledger.documents import Transaction
from server.ledger.states import OTP_SENT
from server.qmoney.client import WRONG_OTP, QmoneyClient
from server.qmoney.settings import QmoneySettings

CHANNEL = "qmoney"
PSP_KIND = "qmoney"


class QmoneyDebits:
    channel = CHANNEL
    label = "Qmoney"
    psp_kind: str | None = PSP_KIND
    merchant_account: str | None = None  # the PSP's
    currency: str | None = None  # the PSP's
    waiting_state = OTP_SENT
    needs_merchant_pin = True
    status_checks: tuple[timedelta, ...] = ()  # Qmoney has no status call
    status_call = False  # so an operator resolves an `unknown` Qmoney debit
    start_may_reach_payer = False  # getMoney only texts a code: verifyCode moves money
    max_reference_length: int | None = None

    def __init__(self, client: QmoneyClient | None, settings: QmoneySettings) -> None:
        """`client` is None when Qmoney's credentials are not configured."""
        self.client = client
        self.payer_lifetime: timedelta | None = timedelta(seconds=settings.otp_lifetime_seconds)
        self.max_code_attempts = settings.max_otp_attempts

    @classmethod
    def configured(
        cls,
        settings: QmoneySettings,
        session: aiohttp.ClientSession | None,
        clock: Clock,
        calls: CallLog | None = None,
    ) -> QmoneyDebits:
        """The adapter, with a client when Qmoney's credentials are set and outbound
        calls are possible (a session)."""
        ready = session is not None and bool(settings.username and settings.password)
        client = QmoneyClient(session, settings, clock, calls) if ready and session else None
        return cls(client, settings)

    def require_ready(self) -> None:
        self._client()

    def _client(self) -> QmoneyClient:
        if self.client is None:
            raise ServiceUnavailable(
                "Qmoney is not configured (qmoney.username, qmoney.password)",
                code="provider_not_configured",
            )
        return self.client

    def payer_of(self, insuree: Insuree) -> str:
        wallet = insuree.get("wallet")
        if not wallet:
            raise ValidationFailed(
                f"insuree {insuree['chf_id']} has no Qmoney wallet", code="no_wallet"
            )
        return str(wallet)

    async def start(self, order: DebitOrder) -> str:
        if order.merchant_pin is None:
            raise ValueError("a Qmoney debit needs the merchant PIN")
        return await self._client().get_money(
            order.payer, order.merchant_account, order.amount, order.merchant_pin
        )

    def refused(self, refusal: ProviderRejected) -> ApiError:
        return ProviderRefused(
            f"{self.label} refused the debit: {refusal.reason}", {"provider_code": refusal.code}
        )

    async def confirm(self, provider_reference: str, code: str) -> str:
        verified = await self._client().verify_code(provider_reference, code)
        return verified.transaction_id

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        return refusal.code == WRONG_OTP

    async def status(self, provider_reference: str) -> StatusAnswer:
        return StatusAnswer(
            ProviderStatus.NOT_ASKED,
            provider_reference,
            "Qmoney has no status query: check its portal",
        )

    def shown(self, transaction: Transaction) -> dict[str, Any]:
        return {
            "otp_attempts": code_attempts(transaction),
            "otp_expires_at": iso_stamp(payer_deadline(transaction)),
        }
