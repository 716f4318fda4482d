"""M-Pesa Express (STK Push) as a debit channel: the gateway prompts the payer's phone
for the premium (account and amount filled in), the payer enters the PIN, and Daraja
tells the outcome by the result callback (server.mpesa.stk_service) or the status
query. No PSP: the money goes to the gateway's own shortcode (daraja.stk_shortcode)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from server.debits.contract import (
    DebitOrder,
    ProviderRefused,
    ProviderStatus,
    StartAnswerLate,
    StatusAnswer,
)
from server.insurance.documents import Insuree
from server.integrations.transport import CallLog, ProviderRejected
from server.kernel.clock import Clock
from server.kernel.errors import (
    ApiError,
    Conflict,
    ServiceUnavailable,
    ValidationFailed,
)
from server.kernel.metrics import Metrics
from server.kernel.schemas import iso_stamp
from server.kernel.store import IndexSpec
from server.ledger.documents import Transaction
from server.ledger.repository import TRANSACTIONS
from server.ledger.states import PROMPT_SENT
from server.mpesa.callback_urls import CallbackUrlError, stk_callback_url
from server.mpesa.client import (
    ACCOUNT_REFERENCE_MAX,
    INVALID_FIELD,
    PROVIDER,
    RATE_LIMITED,
    SUBSCRIBER_BUSY,
    AnswerLate,
    DarajaClient,
    StkPushed,
)
from server.mpesa.phones import NotAKenyanPhone, kenyan_phone
from server.mpesa.settings import DarajaSettings
from server.mpesa.stk_results import result_answer

CHANNEL = "mpesa_stk"
LABEL = "M-Pesa Express"
# What the payer's prompt says the payment is for (Daraja takes at most 13 characters).
DESCRIPTION = "Premium"
# A push whose answer is late is still awaited this long: its CheckoutRequestID lets
# the status checks find out what became of the prompt.
LATE_ANSWER_SECONDS = 60.0

INDEXES: list[IndexSpec] = [
    # One M-Pesa payment completes at most one debit: its receipt is unique among the
    # channel's debits (the STK result and the C2B confirmation of one payment name it).
    (
        TRANSACTIONS,
        [("provider_confirmation", 1)],
        {
            "unique": True,
            "partialFilterExpression": {
                "channel": CHANNEL,
                "provider_confirmation": {"$type": "string"},
            },
            "name": "one_stk_debit_per_receipt",
        },
    ),
    # A result callback finds its debit by CheckoutRequestID; a C2B confirmation by
    # insuree, state and amount.
    (TRANSACTIONS, [("provider_reference", 1)], {"name": "by_provider_reference"}),
    (TRANSACTIONS, [("chf_id", 1), ("channel", 1), ("status", 1)], {}),
]


class StkDebits:
    channel = CHANNEL
    label = LABEL
    psp_kind: str | None = None  # no PSP: the gateway's own shortcode receives the money
    waiting_state = PROMPT_SENT
    payer_lifetime: timedelta | None = None  # M-Pesa ends an unanswered prompt (1019)
    max_code_attempts = 0  # the payer enters the PIN on the phone: no code here
    needs_merchant_pin = False
    start_may_reach_payer = True  # a lost answer may leave the prompt on the phone
    # The prompt's AccountReference, which the payment's C2B copy carries back.
    max_reference_length: int | None = ACCOUNT_REFERENCE_MAX
    status_call = True  # Daraja's STK query (stk_query): the janitor resolves `unknown` with it

    def __init__(
        self,
        client: DarajaClient | None,
        settings: DarajaSettings,
        currency: str,
        callback_url: str | None,
        missing: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        """`client` is None when M-Pesa Express is not configured (`missing` says why)."""
        self.client = client
        self.metrics = metrics or Metrics()
        self.merchant_account: str | None = settings.stk_business_shortcode
        self.currency: str | None = currency
        self.status_checks: tuple[timedelta, ...] = settings.stk_status_checks()
        self.callback_url = callback_url
        self.missing = missing

    @classmethod
    def configured(
        cls,
        settings: DarajaSettings,
        currency: str,
        public_url: str,
        callback_secret: str,
        session: aiohttp.ClientSession | None,
        clock: Clock,
        calls: CallLog | None = None,
        metrics: Metrics | None = None,
    ) -> StkDebits:
        """The adapter, with a client when Daraja's credentials, the passkey and the
        callback secret are set and outbound calls are possible (a session)."""
        names = {
            "daraja.consumer_key": settings.consumer_key,
            "daraja.consumer_secret": settings.consumer_secret,
            "daraja.passkey": settings.passkey,
            "c2b.callback_secret": callback_secret,
        }
        missing = ", ".join(name for name, value in names.items() if not value)
        callback_url = None
        if not missing:
            try:
                callback_url = stk_callback_url(public_url, callback_secret)
            except CallbackUrlError as err:
                missing = str(err)
        client = None
        if session is not None and not missing:
            client = DarajaClient(session, settings, clock, calls)
        return cls(
            client, settings, currency, callback_url, missing or "no outbound session", metrics
        )

    def require_ready(self) -> None:
        self._client()

    def _client(self) -> DarajaClient:
        if self.client is None or self.callback_url is None:
            raise ServiceUnavailable(
                f"M-Pesa Express is not configured ({self.missing})",
                code="provider_not_configured",
            )
        return self.client

    def payer_of(self, insuree: Insuree) -> str:
        phone = insuree.get("phone") or ""
        if not phone:
            raise ValidationFailed(
                f"insuree {insuree['chf_id']} has no phone: give the payer's phone",
                code="no_phone",
            )
        try:
            return kenyan_phone(phone)
        except NotAKenyanPhone as err:
            raise ValidationFailed(
                f"insuree {insuree['chf_id']}'s phone: {err}; give the payer's phone",
                code="invalid_phone",
            ) from None

    async def start(self, order: DebitOrder) -> str:
        client = self._client()
        if self.callback_url is None:  # _client() refuses first
            raise RuntimeError("no callback URL")
        try:
            pushed = await client.stk_push(
                order.payer,
                whole_shillings(order.amount),
                order.reference,
                DESCRIPTION,
                self.callback_url,
                late_answer_seconds=LATE_ANSWER_SECONDS,
            )
        except AnswerLate as err:
            raise StartAnswerLate(PROVIDER, err.message, _checkout_id(err.late)) from None
        return pushed.checkout_request_id

    def refused(self, refusal: ProviderRejected) -> ApiError:
        details = {"provider_code": refusal.code, "provider_message": refusal.reason}
        if refusal.code == SUBSCRIBER_BUSY:
            return Conflict(
                f"M-Pesa refused the prompt ({refusal.code} {refusal.reason}): usually a "
                "transaction already in process for this phone; wait a minute and try again",
                details,
                code="subscriber_busy",
            )
        if refusal.code == RATE_LIMITED:
            return ServiceUnavailable(
                f"M-Pesa is limiting requests ({refusal.code} spike arrest); try again shortly",
                details,
                code="provider_rate_limited",
                headers={"Retry-After": "5"},
            )
        if refusal.code == INVALID_FIELD or refusal.code.startswith("400."):
            return ValidationFailed(
                f"M-Pesa refused the prompt: {refusal.reason} ({refusal.code})",
                details,
                code="provider_invalid_request",
            )
        return ProviderRefused(f"M-Pesa refused the prompt: {refusal.reason}", details)

    async def confirm(self, provider_reference: str, code: str) -> str:
        raise RuntimeError("an M-Pesa Express debit is completed by Daraja, not with a code")

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        return False

    async def status(self, provider_reference: str) -> StatusAnswer:
        queried = await self._client().stk_query(provider_reference)
        self.metrics.stk_results.labels("query", queried.result_code or "pending").inc()
        if queried.result_code is None:
            return StatusAnswer(
                ProviderStatus.PENDING,
                provider_reference,
                queried.description or "the payer has not answered yet",
            )
        return result_answer(queried.result_code, queried.description, provider_reference)

    def shown(self, transaction: Transaction) -> dict[str, Any]:
        return {
            "phone": transaction.get("payer"),
            "mpesa_receipt": transaction.get("provider_confirmation"),
            "next_status_check_at": iso_stamp(transaction.get("next_check_at")),
        }


def whole_shillings(amount: str) -> int:
    """A decimal amount of KES as the whole shillings Daraja takes; cents are refused
    before any debit is stored (server.mpesa.stk_service)."""
    value = Decimal(amount)
    if value != value.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of shillings")
    return int(value)


async def _checkout_id(late: Awaitable[StkPushed]) -> str:
    return (await late).checkout_request_id
