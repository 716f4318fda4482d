"""Wire format of transactions."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import fields, validate

from server.kernel.money import format_amount
from server.kernel.schemas import PageQuerySchema, iso_day, iso_stamp
from server.ledger import states

CHANNELS = ("qmoney", "mpesa_c2b", "psp_api")


class TransactionQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(states.STATES))
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    psp_uuid = fields.String(validate=validate.Length(max=64))
    policy_uuid = fields.String(validate=validate.Length(max=64))
    chf_id = fields.String(validate=validate.Length(max=20))
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)


def render_settlement(settlement: dict[str, Any] | None) -> dict[str, Any] | None:
    if not settlement:
        return None
    return {"status": settlement["status"], "reason": settlement.get("reason"),
            "premium_uuid": settlement.get("premium_uuid"),
            "receipt": settlement.get("receipt"),
            "policy_status": settlement.get("policy_status"),
            "effective_date": iso_day(settlement.get("effective_date")),
            "settled_at": iso_stamp(settlement["settled_at"])}


def render_transaction(document: dict[str, Any]) -> dict[str, Any]:
    """A transaction as the API shows it; never a PIN or an OTP (neither is stored)."""
    body = {
        "uuid": document["_id"], "channel": document["channel"], "status": document["status"],
        "amount": format_amount(document["amount"], document["currency"]),
        "currency": document["currency"], "policy_uuid": document["policy_uuid"],
        "chf_id": document["chf_id"], "psp_uuid": document["psp_uuid"],
        "provider_reference": document.get("provider_reference"),
        "failure": document.get("failure"),
        "settlement": render_settlement(document.get("settlement")),
        "created_by": document.get("created_by"),
        "created_at": iso_stamp(document["created_at"]),
        "updated_at": iso_stamp(document["updated_at"]),
        "history": [{"from": item["from"], "to": item["to"], "at": iso_stamp(item["at"]),
                     "reason": item["reason"], "actor": item["actor"]}
                    for item in document.get("history", [])],
    }
    if document["channel"] == "qmoney":
        body["otp_attempts"] = document["otp_attempts"]
        body["otp_expires_at"] = iso_stamp(document.get("otp_expires_at"))
    return body
