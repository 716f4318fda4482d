"""The one way a transaction document is made, whatever its channel.

Fields every transaction has are top-level; what only one channel stores lives in
`channel_data`, which the ledger never reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict, Unpack

from server.insurance.documents import Policy
from server.ledger.documents import Transaction
from server.ledger.states import State, holds_policy


class DebitFields(TypedDict, total=False):
    """The fields only a debit is created with."""

    expires_at: datetime | None
    code_attempts: int


def new_transaction(
    *,
    transaction_uuid: str,
    channel: str,
    status: State,
    policy: Policy,
    psp_uuid: str | None,
    provider_reference: str | None,
    actor: str,
    at: datetime,
    reason: str,
    payer: str | None = None,
    channel_data: dict[str, Any] | None = None,
    **extra: Unpack[DebitFields],
) -> Transaction:
    """A transaction of `policy`'s whole value, in its first state with one history entry."""
    return {
        "_id": transaction_uuid,
        "channel": channel,
        "status": status,
        "open": holds_policy(status),
        "amount": policy["value"],
        "currency": policy["currency"],
        "policy_uuid": policy["_id"],
        "chf_id": policy["chf_id"],
        "psp_uuid": psp_uuid,
        "payer": payer,
        "provider_reference": provider_reference,
        "failure": None,
        "settlement": None,
        "channel_data": channel_data or {},
        "created_by": actor,
        "created_at": at,
        "updated_at": at,
        "history": [{"from": None, "to": status, "at": at, "reason": reason, "actor": actor}],
        **extra,
    }
