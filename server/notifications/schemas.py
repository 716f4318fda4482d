"""Wire formats of the SMS endpoints: what they load, what they answer (render_*) and
the schemas that describe those answers."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, fields, validate

from server.kernel.identifiers import CHF_ID
from server.kernel.money import format_amount
from server.kernel.schemas import IdentifierField, PageQuerySchema, StrictSchema, iso_stamp
from server.notifications.documents import STATUSES, OutboxMessage
from server.notifications.templates import EVENTS
from server.web import answer_schemas as answers

MAX_SUMMARY_DAYS = 90


class SmsMessageQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    event = fields.String(validate=validate.OneOf(EVENTS))
    chf_id = IdentifierField(CHF_ID)
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)


class SmsSummaryQuerySchema(StrictSchema):
    days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=MAX_SUMMARY_DAYS))


class SmsProductSchema(Schema):
    code = answers.text()
    name = answers.text()


class SmsFailureSchema(Schema):
    code = answers.text(
        metadata={
            "description": "the provider's status code (403) or report status (Failed), "
            "or no_reachable_number"
        }
    )
    reason = answers.text()


class SmsHistoryEntrySchema(Schema):
    at = answers.stamp()
    status = answers.text()
    note = answers.text()


class SmsMessageSchema(Schema):
    """What render_message answers."""

    id = answers.text(metadata={"description": "<event>:<payment key>"})
    event = answers.one_of(list(EVENTS))
    channel = answers.text()
    status = answers.one_of(list(STATUSES))
    chf_id = answers.text(nullable=True)
    policy_uuid = answers.text(nullable=True)
    product = answers.nested(SmsProductSchema, nullable=True)
    amount = answers.amount()
    currency = answers.text()
    receipt = answers.text(metadata={"description": "the provider's receipt of the payment"})
    premium_receipt = answers.text(nullable=True)
    account = answers.text(nullable=True)
    recipient = answers.text(nullable=True, metadata={"description": "the number it went to"})
    text = answers.text(nullable=True)
    parts = fields.Integer(required=True, allow_none=True)
    encoding = answers.text(nullable=True)
    attempts = answers.count()
    next_attempt_at = answers.stamp(nullable=True)
    message_id = answers.text(nullable=True, metadata={"description": "the provider's"})
    provider_status = answers.text(nullable=True)
    cost = answers.text(nullable=True)
    failure = answers.nested(SmsFailureSchema, nullable=True)
    created_at = answers.stamp()
    updated_at = answers.stamp()
    history = answers.list_of(SmsHistoryEntrySchema)


SmsMessagePageSchema = answers.page_of(SmsMessageSchema)


def _day_schema() -> type[Schema]:
    counts = {status: answers.count() for status in STATUSES}
    return Schema.from_dict(
        {
            "day": answers.text(metadata={"example": "2026-01-31"}),
            **counts,
            "total": answers.count(),
        },
        name="SmsDaySchema",
    )


DaySchema = _day_schema()


class SmsSummarySchema(Schema):
    """What render_summary answers."""

    since = answers.stamp(data_key="from")
    days = answers.list_of(DaySchema)
    failing = answers.list_of(SmsMessageSchema)
    failing_total = answers.count()


def render_message(message: OutboxMessage) -> dict[str, Any]:
    failure = message["failure"]
    product = message["product"]
    return {
        "id": message["_id"],
        "event": message["event"],
        "channel": message["channel"],
        "status": message["status"],
        "chf_id": message["chf_id"],
        "policy_uuid": message["policy_uuid"],
        "product": None if product is None else {"code": product["code"], "name": product["name"]},
        "amount": format_amount(message["amount"], message["currency"]),
        "currency": message["currency"],
        "receipt": message["receipt"],
        "premium_receipt": message["premium_receipt"],
        "account": message["account"],
        "recipient": message["recipient"],
        "text": message["text"],
        "parts": message["parts"],
        "encoding": message["encoding"],
        "attempts": message["attempts"],
        "next_attempt_at": iso_stamp(message["next_attempt_at"]),
        "message_id": message["message_id"],
        "provider_status": message["provider_status"],
        "cost": message["cost"],
        "failure": None
        if failure is None
        else {"code": failure["code"], "reason": failure["reason"]},
        "created_at": iso_stamp(message["created_at"]),
        "updated_at": iso_stamp(message["updated_at"]),
        "history": [
            {"at": iso_stamp(item["at"]), "status": item["status"], "note": item["note"]}
            for item in message["history"]
        ],
    }


def render_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "from": iso_stamp(summary["from"]),
        "days": summary["days"],
        "failing": [render_message(message) for message in summary["failing"]],
        "failing_total": summary["failing_total"],
    }
