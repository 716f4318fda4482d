"""One M-Pesa payment as the operators' desk reads it: the payment with, on request,
every delivery that named its TransID (the raw body as received, and read as JSON) and
what it settled (the transaction and its premium); and one inbox entry the same way.

`GET /api/v1/c2b/payments/<trans_id>?include=deliveries,settlement` answers
C2BPaymentDetailSchema; without `include` it answers the payment alone, as before."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from marshmallow import Schema, fields, post_load

from server.inbox.documents import InboxEntry
from server.inbox.repository import InboxRepository, decode_body
from server.kernel.errors import NotFound
from server.kernel.identifiers import TRANS_ID
from server.kernel.schemas import StrictSchema, Whole, iso_stamp
from server.ledger.documents import Premium, Transaction
from server.ledger.premium_schemas import LedgerPremiumSchema, render_premium
from server.ledger.repository import PremiumRepository, TransactionRepository
from server.ledger.schemas import TransactionSchema
from server.mpesa.allocation import Allocation
from server.mpesa.documents import C2BPayment
from server.mpesa.repository import C2BPaymentRepository
from server.mpesa.schemas import (
    C2BPaymentSchema,
    InboxEntrySchema,
    render_inbox_entry,
    render_payment,
)
from server.web import answer_schemas as answers

INCLUDES = ("deliveries", "settlement")
# A payment is delivered a handful of times (validation, confirmation, redeliveries,
# records, results); more than this is shown as the newest this many.
DELIVERIES_SHOWN = 50


class PaymentDetailQuerySchema(StrictSchema):
    include = fields.String(
        validate=Whole(
            r"(deliveries|settlement)(,(deliveries|settlement))*",
            error="must be deliveries, settlement or both, comma-separated",
        ),
        metadata={
            "description": "`deliveries`: the inbox entries that named the TransID; "
            "`settlement`: the transaction and premium it settled; comma-separated"
        },
    )

    @post_load
    def split(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        data["include"] = frozenset(data.get("include", "").split(",")) - {""}
        return data


class DeliverySchema(InboxEntrySchema):
    """What render_delivery answers: the entry, the answer it was given and its body read."""

    answer = fields.Dict(
        required=True, allow_none=True, metadata={"description": "what the sender was answered"}
    )
    processed_at = answers.stamp(nullable=True)
    parsed_body = fields.Raw(
        required=True,
        allow_none=True,
        metadata={
            "description": "the body read as JSON (numbers with a fraction kept as their "
            "exact text); null when it is not a JSON document"
        },
    )


class PaymentSettlementSchema(Schema):
    transaction = answers.nested(TransactionSchema, nullable=True)
    premium = answers.nested(LedgerPremiumSchema, nullable=True)


class C2BPaymentDetailSchema(C2BPaymentSchema):
    """render_payment, and what `include` asked for."""

    deliveries = fields.List(
        fields.Nested(DeliverySchema),
        metadata={"description": "with include=deliveries: newest first"},
    )
    settlement = fields.Nested(
        PaymentSettlementSchema,
        allow_none=True,
        metadata={"description": "with include=settlement: null until a transaction is made"},
    )


@dataclass(frozen=True)
class PaymentDetail:
    payment: C2BPayment
    include: frozenset[str]
    deliveries: list[InboxEntry]
    transaction: Transaction | None
    premium: Premium | None


class PaymentDetails:
    def __init__(
        self,
        payments: C2BPaymentRepository,
        inbox: InboxRepository,
        transactions: TransactionRepository,
        premiums: PremiumRepository,
        allocation: Allocation,
    ) -> None:
        self.payments = payments
        self.allocation = allocation
        self.inbox = inbox
        self.transactions = transactions
        self.premiums = premiums

    async def get(self, trans_id: str, include: frozenset[str] = frozenset()) -> PaymentDetail:
        """The payment and what `include` names; NotFound when no payment has the id."""
        trans_id = TRANS_ID.normalise(trans_id)
        payment = await self.payments.get(trans_id)
        if payment is None:
            raise NotFound(f"no C2B payment with TransID {trans_id}")
        payment = await self.allocation.with_detail(payment)  # amounts for its reason
        deliveries = []
        if "deliveries" in include:
            deliveries = await self.inbox.of_trans_id(trans_id, DELIVERIES_SHOWN)
        transaction = premium = None
        settled_by = payment.get("transaction_uuid")
        if "settlement" in include and settled_by:
            transaction = await self.transactions.find_one({"_id": settled_by})
            premium = await self.premiums.find_one({"transaction_uuid": settled_by})
        return PaymentDetail(payment, include, deliveries, transaction, premium)

    async def delivery(self, entry_id: str) -> InboxEntry:
        """One inbox entry; NotFound when there is none with the id."""
        entry = await self.inbox.get(entry_id)
        if entry is None:
            raise NotFound(f"no inbox entry {entry_id}", code="unknown_inbox_entry")
        return entry


def render_payment_detail(detail: PaymentDetail, render_transaction: Any) -> dict[str, Any]:
    """render_payment with the parts `include` asked for; `render_transaction` is the
    ledger's (it adds the channel's own fields)."""
    body = render_payment(cast(dict[str, Any], detail.payment))
    if "deliveries" in detail.include:
        body["deliveries"] = [render_delivery(entry) for entry in detail.deliveries]
    if "settlement" in detail.include:
        transaction, premium = detail.transaction, detail.premium
        body["settlement"] = (
            None
            if transaction is None
            else {
                "transaction": render_transaction(transaction),
                "premium": None
                if premium is None
                else render_premium(cast(dict[str, Any], premium)),
            }
        )
    return body


def render_delivery(entry: InboxEntry) -> dict[str, Any]:
    return {
        **render_inbox_entry(cast(dict[str, Any], entry)),
        "answer": entry.get("answer"),
        "processed_at": iso_stamp(entry.get("processed_at")),
        "parsed_body": parsed_body(entry),
    }


def parsed_body(entry: InboxEntry) -> Any:
    """The raw body read as JSON, or None when it is not JSON (or not text)."""
    if entry["body_encoding"] != "utf-8":
        return None
    try:
        return json.loads(decode_body(entry), parse_float=str, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
