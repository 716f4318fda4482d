"""The stored shape of a C2B payment: what its confirmation carried, and where its
allocation to a policy stands (server.mpesa.allocation)."""

from __future__ import annotations

from datetime import datetime
from typing import NotRequired, TypedDict

from bson import ObjectId


class ReviewFlag(TypedDict):
    """Why an operator should look at the payment, and which delivery said so. An
    operator who has looked dismisses it: it is kept, with who, when and why."""

    inbox_id: str
    reason: str
    at: datetime
    dismissed_by: NotRequired[str]
    dismissed_reason: NotRequired[str]
    dismissed_at: NotRequired[datetime]


class NeededAmount(TypedDict):
    amount: int  # minor units of `currency`
    currency: str


class UnmatchedDetail(TypedDict, total=False):
    """What the operator's words for `unmatched_reason` need (server.mpesa.reasons),
    stored with the reason so that a list renders them without reading policies."""

    needed: list[NeededAmount]  # amount_mismatch: the values of the idle policies
    candidates: int  # several_candidates: how many idle policies have the amount
    policy_uuid: str  # a reason about the policy the payment was being applied to


class AllocationEvent(TypedDict):
    """One entry of `allocation_history`: the status the payment moved to, and why."""

    status: str
    by: str  # "system" or an operator
    reason: str
    policy_uuid: str | None
    at: datetime


class PaymentAllocation(TypedDict):
    """The policy an `allocating` payment is being applied to, and who chose it."""

    policy_uuid: str
    by: str


class Recovery(TypedDict):
    """A payment stored from M-Pesa's own records rather than its confirmation."""

    source: str  # server.mpesa.recovered: daraja_pull, statement
    inbox_id: str
    missing: list[str]  # the confirmation's fields the record does not give
    completed_by: NotRequired[str]  # the confirmation that came later and filled them in


class ReceivedPayment(TypedDict):
    """The fields a confirmation gives a payment (C2BService._payment_document)."""

    trans_id: str
    transaction_type: str
    trans_time: datetime
    amount: int  # minor units of `currency`
    currency: str
    shortcode: str
    bill_ref: str
    invoice_number: str
    org_balance: int | None  # None when Daraja's text is not an amount
    third_party_trans_id: str
    msisdn: str
    msisdn_form: str
    payer_name: str
    fingerprint: str  # what makes two deliveries the same payment
    inbox_id: str  # the delivery that stored it
    received_at: datetime
    review: list[ReviewFlag]
    # True while a review flag is not dismissed (indexed: the dashboard's "needs
    # review"); payments stored before flags could be dismissed get it at start-up.
    review_open: NotRequired[bool]
    recovered: NotRequired[Recovery]


class PaymentState(TypedDict):
    """The allocation fields a new payment is stored with (Allocation.first_state,
    Allocation.held_state)."""

    status: str
    updated_at: datetime
    unmatched_reason: NotRequired[str]
    unmatched_detail: NotRequired[UnmatchedDetail]
    allocation: NotRequired[PaymentAllocation]
    allocation_history: list[AllocationEvent]
    review: NotRequired[list[ReviewFlag]]
    review_open: NotRequired[bool]
    # A payment that is the C2B copy of an M-Pesa Express payment is stored settled,
    # linked to that debit (server.mpesa.receipts).
    policy_uuid: NotRequired[str]
    transaction_uuid: NotRequired[str]
    receipt: NotRequired[str | None]


class C2BPayment(ReceivedPayment):
    """A stored C2B payment (collection c2b_payments), one per TransID."""

    _id: NotRequired[ObjectId]  # the store's own; payments are found by `trans_id`
    status: str  # server.mpesa.repository.PAYMENT_STATUSES
    updated_at: datetime
    unmatched_reason: NotRequired[str | None]  # None once settled
    unmatched_detail: NotRequired[UnmatchedDetail | None]
    allocation: NotRequired[PaymentAllocation | None]  # None once unmatched again
    allocation_history: list[AllocationEvent]
    # Once settled:
    policy_uuid: NotRequired[str]
    transaction_uuid: NotRequired[str]
    receipt: NotRequired[str | None]
