"""What a debit channel provides, and what the debit engine gives it.

An adapter translates the engine's requests into one provider's wire calls and its
answers back; it never writes the store and never decides a state. Its errors are
the transport's (server.integrations.transport): `ProviderRejected` (the provider
answered no), `ProviderUnavailable` (nothing happened there) and
`ProviderOutcomeUnknown` (the request left and its answer was lost; `StartAnswerLate`
when the answer to `start` may still come).

A debit is completed either with the payer's code (`confirm`: Qmoney's OTP) or by
the provider's own word on it, its callback or its status call (`StatusAnswer`,
applied by the engine's `complete`: M-Pesa Express). A channel that names its own
merchant account (`psp_kind` None) is started without a PSP (the engine's `push`)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from server.insurance.documents import Insuree
from server.integrations.transport import ProviderOutcomeUnknown, ProviderRejected
from server.kernel.errors import ApiError
from server.ledger.documents import Transaction
from server.ledger.states import State


@dataclass(frozen=True)
class DebitOrder:
    """A debit the engine has checked and stored, for the adapter to start."""

    transaction_uuid: str
    payer: str  # the payer's wallet or phone at the provider
    merchant_account: str  # the account that receives the money (the PSP's, or the channel's)
    amount: str  # decimal string in `currency`
    currency: str
    reference: str  # what the payer sees: the insuree number
    merchant_pin: str | None  # only for adapters that say they need it


class ProviderStatus(StrEnum):
    """A provider's own word on a debit, as its callback or status call reports it. The
    decided ones carry the name of the state they lead to."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # the payer declined
    EXPIRED = "expired"  # the payer did not answer in the provider's time
    PENDING = "pending"  # the payer has not acted yet
    NOT_ASKED = "not_asked"  # the provider offers no status call


DECIDED = frozenset(
    {
        ProviderStatus.SUCCEEDED,
        ProviderStatus.FAILED,
        ProviderStatus.CANCELLED,
        ProviderStatus.EXPIRED,
    }
)


@dataclass(frozen=True)
class StatusAnswer:
    """`receipt`, `amount` (minor units) and `payer`: what the provider reports of a
    succeeded debit, checked against the stored one before it is settled; `code` and
    `detail`: the provider's code and its meaning in plain words."""

    status: ProviderStatus
    provider_reference: str | None = None
    detail: str = ""
    code: str = ""
    receipt: str | None = None
    amount: int | None = None
    payer: str | None = None


class ProviderRefused(ApiError):
    """A provider said no to a debit, for a reason the gateway has no better answer for."""

    status = 502
    code = "provider_rejected"


class StartAnswerLate(ProviderOutcomeUnknown):
    """The answer to `start` did not come in time, but the request still waits for it:
    `late` ends with the provider's reference, or raises the error the answer brought."""

    def __init__(self, provider: str, message: str, late: Awaitable[str]) -> None:
        super().__init__(provider, message)
        self.late = late


def code_attempts(transaction: Transaction) -> int:
    """The wrong codes a debit has had. A debit stored before the counter took its
    channel-neutral name counts on from its old one."""
    return transaction.get("code_attempts", 0) + transaction.get("otp_attempts", 0)


def payer_deadline(transaction: Transaction) -> datetime | None:
    """When the payer's time to act ends (None until the payer is asked), under its old
    name for a debit stored before it was channel-neutral."""
    return transaction.get("expires_at", transaction.get("otp_expires_at"))


def unknown_since(transaction: Transaction) -> datetime | None:
    """When the debit last became `unknown` (None if it never was): its `unknown_since`,
    or for a debit stored before that field, its last history entry into `unknown`."""
    since = transaction.get("unknown_since")
    if since is not None:
        return since
    entered = [
        step["at"]
        for step in transaction.get("history", [])
        if step["to"] == State.UNKNOWN and step["from"] != State.UNKNOWN
    ]
    return entered[-1] if entered else None


class DebitAdapter(Protocol):
    """One debit channel: registered under its channel name and the PSP kind whose
    accounts it debits (server.debits.registry)."""

    channel: str  # the transactions' `channel`
    label: str  # the provider's name in messages and on the dashboard
    # PSPs of this kind debit through this adapter; None: the channel names its own
    # merchant account and currency (below) and is started without a PSP.
    psp_kind: str | None
    merchant_account: str | None  # psp_kind None only: the account that receives the money
    currency: str | None  # psp_kind None only: what the channel settles in
    waiting_state: State  # the state while the payer acts, e.g. `otp_sent`
    # How long the payer has to act; None: the provider decides, and says so.
    payer_lifetime: timedelta | None
    max_code_attempts: int  # wrong codes allowed before the debit fails; 0: no code
    needs_merchant_pin: bool
    # When, after the payer is asked, to ask the provider's status call about a debit
    # still waiting; after the last, a debit without an answer is `unknown`. Empty:
    # never (the provider offers no status call, or the payer's code completes it).
    status_checks: tuple[timedelta, ...]
    # Whether the provider offers a status call: `status` then asks it, and the
    # `janitor` job (server.debits.janitor) resolves the channel's in-doubt debits with
    # it. False: `status` answers NOT_ASKED and an operator resolves them (`resolve`).
    status_call: bool
    # Whether a lost answer to `start` may have reached the payer, who could then pay
    # without the gateway (the debit is then `unknown`, else `failed`).
    start_may_reach_payer: bool
    # The longest insuree number the provider carries whole as the payment's reference
    # (None: any). A longer one is refused: a cut reference could name another insuree.
    max_reference_length: int | None

    def require_ready(self) -> None:
        """ServiceUnavailable when the channel is not configured (no credentials)."""
        ...

    def payer_of(self, insuree: Insuree) -> str:
        """The insuree's account at this provider; ValidationFailed when it has none."""
        ...

    async def start(self, order: DebitOrder) -> str:
        """Ask the provider to start the debit; returns the provider's reference."""
        ...

    def refused(self, refusal: ProviderRejected) -> ApiError:
        """The API's error for a provider that refused to start a debit."""
        ...

    async def confirm(self, provider_reference: str, code: str) -> str:
        """Complete the debit with the payer's code; returns the provider's receipt."""
        ...

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        """Whether a refusal of `confirm` means only that the code was wrong."""
        ...

    async def status(self, provider_reference: str) -> StatusAnswer:
        """The provider's word on a debit, for reconciliation, in-doubt debits and the
        status checks."""
        ...

    def shown(self, transaction: Transaction) -> dict[str, Any]:
        """Channel-specific fields of a transaction in the API's answer."""
        ...
