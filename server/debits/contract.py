"""What a debit channel provides, and what the debit engine gives it.

An adapter translates the engine's requests into one provider's wire calls and its
answers back; it never writes the store and never decides a state. Its errors are
the transport's (server.integrations.transport): `ProviderRejected` (the provider
answered no), `ProviderUnavailable` (nothing happened there) and
`ProviderOutcomeUnknown` (the request left and its answer was lost)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from server.insurance.documents import Insuree
from server.integrations.transport import ProviderRejected
from server.ledger.documents import Transaction
from server.ledger.states import State


@dataclass(frozen=True)
class DebitOrder:
    """A debit the engine has checked and stored, for the adapter to start."""

    transaction_uuid: str
    payer: str  # the payer's wallet or phone at the provider
    merchant_account: str  # the PSP's account that receives the money
    amount: str  # decimal string in `currency`
    currency: str
    reference: str  # what the payer sees: the insuree number
    merchant_pin: str | None  # only for adapters that say they need it


class ProviderStatus(StrEnum):
    """A provider's own word on a debit, as its status call reports it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"  # the payer has not acted yet
    NOT_ASKED = "not_asked"  # the provider offers no status call


@dataclass(frozen=True)
class StatusAnswer:
    status: ProviderStatus
    provider_reference: str | None = None
    detail: str = ""


def code_attempts(transaction: Transaction) -> int:
    """The wrong codes a debit has had. A debit stored before the counter took its
    channel-neutral name counts on from its old one."""
    return transaction.get("code_attempts", 0) + transaction.get("otp_attempts", 0)


def payer_deadline(transaction: Transaction) -> datetime | None:
    """When the payer's time to act ends (None until the payer is asked), under its old
    name for a debit stored before it was channel-neutral."""
    return transaction.get("expires_at", transaction.get("otp_expires_at"))


class DebitAdapter(Protocol):
    """One debit channel: registered under its channel name and the PSP kind whose
    accounts it debits (server.debits.registry)."""

    channel: str  # the transactions' `channel`
    label: str  # the provider's name in messages and on the dashboard
    psp_kind: str  # PSPs of this kind debit through this adapter
    waiting_state: State  # the state while the payer acts, e.g. `otp_sent`
    payer_lifetime: timedelta  # how long the payer has to act
    max_code_attempts: int  # wrong codes allowed before the debit fails; 0: no code
    needs_merchant_pin: bool

    def require_ready(self) -> None:
        """ServiceUnavailable when the channel is not configured (no credentials)."""
        ...

    def payer_of(self, insuree: Insuree) -> str:
        """The insuree's account at this provider; ValidationFailed when it has none."""
        ...

    async def start(self, order: DebitOrder) -> str:
        """Ask the provider to start the debit; returns the provider's reference."""
        ...

    async def confirm(self, provider_reference: str, code: str) -> str:
        """Complete the debit with the payer's code; returns the provider's receipt."""
        ...

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        """Whether a refusal of `confirm` means only that the code was wrong."""
        ...

    async def status(self, provider_reference: str) -> StatusAnswer:
        """The provider's word on a debit, for reconciliation and in-doubt debits."""
        ...

    def shown(self, transaction: Transaction) -> dict[str, Any]:
        """Channel-specific fields of a transaction in the API's answer."""
        ...
