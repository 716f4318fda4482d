"""Wire format of a premium (the money a settled transaction paid a policy):
render_premium and the schema that describes it."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from server.kernel.money import format_amount
from server.kernel.schemas import iso_stamp
from server.web import answer_schemas as answers


class InsuranceWriteSchema(Schema):
    """Where the premium's write into openIMIS (insurance.backend: openimis) stands."""

    state = answers.one_of(("pending", "written", "refused"))
    attempts = answers.count()
    last_error = answers.text(nullable=True)
    refusal = answers.text(nullable=True, metadata={"description": "openIMIS's message"})
    policy_status = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "the policy's status in openIMIS once written (2, 16)"},
    )
    written_at = answers.stamp(nullable=True)


class LedgerPremiumSchema(Schema):
    """What render_premium answers."""

    uuid = answers.text()
    transaction_uuid = answers.text()
    policy_uuid = answers.text()
    chf_id = answers.text()
    amount = answers.amount()
    currency = answers.text()
    pay_date = answers.stamp(metadata={"description": "when the money was paid"})
    pay_type = answers.text(metadata={"description": "openIMIS pay type: M (mobile money)"})
    receipt = answers.text(metadata={"example": "R-2B9E1C0D4A7F"})
    created_at = answers.stamp()
    insurance_write = answers.nested(InsuranceWriteSchema, nullable=True)


def render_premium(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": document["_id"],
        "transaction_uuid": document["transaction_uuid"],
        "policy_uuid": document["policy_uuid"],
        "chf_id": document["chf_id"],
        "amount": format_amount(document["amount"], document["currency"]),
        "currency": document["currency"],
        "pay_date": iso_stamp(document["pay_date"]),
        "pay_type": document["pay_type"],
        "receipt": document["receipt"],
        "created_at": iso_stamp(document["created_at"]),
        "insurance_write": _write(document.get("insurance_write")),
    }


def _write(write: dict[str, Any] | None) -> dict[str, Any] | None:
    if write is None:
        return None
    return {
        "state": write["state"],
        "attempts": write.get("attempts", 0),
        "last_error": write.get("last_error"),
        "refusal": write.get("refusal"),
        "policy_status": write.get("policy_status"),
        "written_at": iso_stamp(write["written_at"]) if write.get("written_at") else None,
    }
