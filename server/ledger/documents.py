"""The stored shapes of the ledger's documents: transactions and premiums.

A document read back may have been written by an older version of the gateway, so
a field added later is `NotRequired`, and so is one only some channels or states
write. Statuses are stored as plain strings: a `State` written comes back a `str`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

# One entry of a transaction's `history`: one state change ("from" is a keyword,
# hence the functional form).
Transition = TypedDict(
    "Transition",
    {
        "from": str | None,  # None for the first entry
        "to": str,
        "at": datetime,
        "reason": str,
        "actor": str,
    },
)


class Failure(TypedDict):
    """Why a transaction failed (or why the payer's last code was refused)."""

    code: str
    message: str


class Settlement(TypedDict):
    """What settling a succeeded transaction did: `settled` (a premium and an active
    policy) or `refused` (with the reason, for an operator)."""

    status: str  # settled | refused
    settled_at: datetime
    reason: NotRequired[str]  # refused only
    premium_uuid: NotRequired[str]  # settled only, as the four below
    receipt: NotRequired[str]
    policy_status: NotRequired[int]
    effective_date: NotRequired[datetime]


class Transaction(TypedDict):
    """A payment of one policy's whole value through one channel
    (server.ledger.transactions.new_transaction makes it)."""

    _id: str
    channel: str
    status: str  # a server.ledger.states.State value
    open: bool  # holds its policy (states.holds_policy)
    amount: int  # minor units of `currency`
    currency: str
    policy_uuid: str
    chf_id: str
    psp_uuid: str | None
    payer: NotRequired[str | None]
    provider_reference: str | None
    failure: Failure | None
    settlement: Settlement | None
    # The channel's own fields (the ledger never reads them); older ones lack it.
    channel_data: NotRequired[dict[str, Any]]
    created_by: str
    created_at: datetime
    updated_at: datetime
    history: list[Transition]
    paid_at: NotRequired[datetime]  # once succeeded
    provider_confirmation: NotRequired[str]  # a debit's receipt at its provider
    # Debits: the payer's deadline (None until the payer is asked) and wrong codes.
    expires_at: NotRequired[datetime | None]
    code_attempts: NotRequired[int]
    # Debits their provider is asked about on a schedule: from when the checks count,
    # how many were made, and when the next is due (None: no more).
    checks_from: NotRequired[datetime]
    status_checks_done: NotRequired[int]
    next_check_at: NotRequired[datetime | None]
    # In doubt: when the debit last became `unknown`; the janitor's attempts (counted
    # from `janitor_from`, the next due at `janitor_next_at`, None: no more); and, once
    # no attempt is left or none can be made, the mark that an operator resolves it.
    unknown_since: NotRequired[datetime]
    janitor_from: NotRequired[datetime]
    janitor_attempts: NotRequired[int]
    janitor_next_at: NotRequired[datetime | None]
    needs_operator: NotRequired[bool]
    operator_reason: NotRequired[str]
    janitor_gave_up_at: NotRequired[datetime]
    # Debits stored before the names above were channel-neutral.
    otp_expires_at: NotRequired[datetime | None]
    otp_attempts: NotRequired[int]
    # Provider payments stored before `channel_data` kept their fingerprint here.
    request_fingerprint: NotRequired[str]


class Premium(TypedDict):
    """The premium a settled transaction paid (one per transaction)."""

    _id: str
    transaction_uuid: str
    policy_uuid: str
    chf_id: str
    amount: int
    currency: str
    pay_date: datetime
    pay_type: str
    receipt: str
    created_at: datetime
    # What the insurance backend still has to do with it (server.ledger.premium_writes):
    # state pending | written | refused, attempts, failures, next_at, ...
    insurance_write: NotRequired[dict[str, Any]]
