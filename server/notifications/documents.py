"""The stored shape of an SMS in the outbox, and its states.

One document per event and payment (`_id` = ``<event>:<payment key>``), written inside
the payment's or premium's own document, copied here and then worked by the
send-notifications job:

    pending -> sending -> sent -> delivered | failed          (the provider's reports)
                       -> pending (retried later) | failed    (refused, or out of attempts)
                       -> unknown (the answer was lost) -> sent... (a report adopts it)
                                                       -> sending (no report: sent again)
    pending -> opted_out | unreachable | superseded            (decided at send time)

`superseded`: a "payment received" notice whose payment was applied to a policy before
the notice went out; the payer gets the premium's receipt instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NotRequired, TypedDict

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
FAILED = "failed"
UNKNOWN = "unknown"
OPTED_OUT = "opted_out"
UNREACHABLE = "unreachable"
SUPERSEDED = "superseded"
STATUSES = (
    PENDING,
    SENDING,
    SENT,
    DELIVERED,
    FAILED,
    UNKNOWN,
    OPTED_OUT,
    UNREACHABLE,
    SUPERSEDED,
)
# Work for the job: due messages in these states are claimed (`sending` only when the
# process that claimed it stopped before recording the answer).
CLAIMABLE = (PENDING, UNKNOWN, SENDING)
# A delivery report may still change these.
REPORTABLE = (SENDING, SENT, UNKNOWN)


# A message is born inside the document of the payment or premium that causes it, in
# that document's own insert, so it can never be lost apart from it and costs the payment
# no write of its own. The send-notifications job copies it into the outbox (once: the
# message's `_id`), then removes the message and marks the state copied.
NOTICE = "sms_notice"
NOTICE_STATE = "sms_notice_state"
NOTICE_PENDING = "pending"
NOTICE_COPIED = "copied"  # in the outbox: the document never carries it again


class Failure(TypedDict):
    code: str  # the provider's status code or report status, or ours (no_reachable_number)
    reason: str


class Product(TypedDict):
    code: str
    name: str


class HistoryEntry(TypedDict):
    at: datetime
    status: str
    note: str


class OutboxMessage(TypedDict):
    _id: str  # "<event>:<payment key>"
    event: str  # premium_paid | payment_received
    channel: str
    payment_key: str  # the transaction's id; a C2B payment's TransID
    chf_id: str | None  # the insuree (None: a payment not applied names none)
    policy_uuid: str | None
    product: Product | None
    amount: int  # minor units of `currency`
    currency: str
    receipt: str  # the provider's receipt (M-Pesa TransID, Qmoney or provider reference)
    premium_receipt: str | None  # the scheme's receipt of the premium
    account: str | None  # the account number a payment not applied was paid to
    effective_date: datetime | None
    phone_hint: str | None  # the payer's number as the payment gave it (clear, masked, hashed)
    status: str
    attempts: int
    next_attempt_at: datetime | None  # None: nothing more to do
    claim: str | None  # the token of the run that holds it `sending`
    message_id: str | None  # the provider's
    provider_status: str | None  # the provider's word: its send status, then its reports
    cost: str | None  # as the provider gave it ("KES 0.8000")
    failure: Failure | None
    recipient: str | None  # the number it was sent to (resolved at send time)
    text: str | None
    parts: int | None
    encoding: str | None
    attempted_at: datetime | None  # the last send
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]
    delivered_at: NotRequired[datetime]


def pending_notice(message: OutboxMessage) -> dict[str, Any]:
    """The fields that carry `message` in the document of its payment or premium."""
    return {NOTICE: message, NOTICE_STATE: NOTICE_PENDING}
