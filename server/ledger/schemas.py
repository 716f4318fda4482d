"""Wire format of transactions: the list's query, render_transaction and the schema
that describes its answer."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, fields, validate

from server.insurance.schemas import policy_status_field
from server.kernel.listing import amount_field, sort_field
from server.kernel.money import format_amount
from server.kernel.schemas import CURRENCY, PageQuerySchema, iso_day, iso_stamp
from server.ledger import states
from server.web import answer_schemas as answers

# The transactions' sorts (server.ledger.repository.INDEXES); amounts sort, and are
# filtered, only within one `currency`.
TRANSACTION_SORTS = ("-created_at", "created_at", "-amount", "amount")


class TransactionQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(states.STATES))
    channel = fields.String(validate=validate.Length(min=1, max=32))  # a registered one
    psp_uuid = fields.String(validate=validate.Length(max=64))
    policy_uuid = fields.String(validate=validate.Length(max=64))
    chf_id = fields.String(validate=validate.Length(max=20))
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    currency = fields.String(validate=CURRENCY)
    min_amount = amount_field("smallest")  # these two and the amount sorts need `currency`
    max_amount = amount_field("largest")
    sort = sort_field(TRANSACTION_SORTS)


class FailureSchema(Schema):
    code = answers.text()
    message = answers.text()


class SettlementSchema(Schema):
    """What render_settlement answers (when there is a settlement)."""

    status = answers.one_of(["settled", "refused"])
    reason = answers.text(nullable=True)
    premium_uuid = answers.text(nullable=True)
    receipt = answers.text(nullable=True)
    policy_status = policy_status_field(nullable=True)
    effective_date = answers.day(nullable=True)
    settled_at = answers.stamp()


class TransitionSchema(Schema):
    from_ = answers.one_of(states.STATES, nullable=True, data_key="from")
    to = answers.one_of(states.STATES)
    at = answers.stamp()
    reason = answers.text()
    actor = answers.text()


class TransactionSchema(Schema):
    """What render_transaction answers, with the fields its channel adds (shown)."""

    uuid = answers.text()
    channel = answers.text()  # a registered channel: the dashboard lists them
    status = answers.one_of(states.STATES)
    amount = answers.amount()
    currency = answers.text()
    policy_uuid = answers.text()
    chf_id = answers.text()
    psp_uuid = answers.text(nullable=True)
    provider_reference = answers.text(nullable=True)
    failure = answers.nested(FailureSchema, nullable=True)
    settlement = answers.nested(SettlementSchema, nullable=True)
    created_by = answers.text(nullable=True)
    created_at = answers.stamp()
    updated_at = answers.stamp()
    history = answers.list_of(TransitionSchema)
    otp_attempts = fields.Integer(metadata={"description": "Qmoney debits only"})
    otp_expires_at = fields.DateTime(
        allow_none=True, metadata={"description": "Qmoney debits only"}
    )
    phone = fields.String(
        allow_none=True, metadata={"description": "M-Pesa Express only: the phone prompted"}
    )
    mpesa_receipt = fields.String(
        allow_none=True,
        metadata={"description": "M-Pesa Express only: MpesaReceiptNumber, once paid"},
    )
    next_status_check_at = fields.DateTime(
        allow_none=True,
        metadata={"description": "M-Pesa Express only: when Daraja is next asked"},
    )


TransactionPageSchema = answers.page_of(TransactionSchema)


def render_settlement(settlement: dict[str, Any] | None) -> dict[str, Any] | None:
    if not settlement:
        return None
    return {
        "status": settlement["status"],
        "reason": settlement.get("reason"),
        "premium_uuid": settlement.get("premium_uuid"),
        "receipt": settlement.get("receipt"),
        "policy_status": settlement.get("policy_status"),
        "effective_date": iso_day(settlement.get("effective_date")),
        "settled_at": iso_stamp(settlement["settled_at"]),
    }


def render_transaction(document: dict[str, Any]) -> dict[str, Any]:
    """A transaction as the API shows it; never a PIN or an OTP (neither is stored)."""
    body = {
        "uuid": document["_id"],
        "channel": document["channel"],
        "status": document["status"],
        "amount": format_amount(document["amount"], document["currency"]),
        "currency": document["currency"],
        "policy_uuid": document["policy_uuid"],
        "chf_id": document["chf_id"],
        "psp_uuid": document["psp_uuid"],
        "provider_reference": document.get("provider_reference"),
        "failure": document.get("failure"),
        "settlement": render_settlement(document.get("settlement")),
        "created_by": document.get("created_by"),
        "created_at": iso_stamp(document["created_at"]),
        "updated_at": iso_stamp(document["updated_at"]),
        "history": [
            {
                "from": item["from"],
                "to": item["to"],
                "at": iso_stamp(item["at"]),
                "reason": item["reason"],
                "actor": item["actor"],
            }
            for item in document.get("history", [])
        ],
    }
    return body
