"""Wire formats of the payment-provider API: what it loads, what it answers (render_*)
and the schemas that describe those answers."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from server.insurance.schemas import policy_status_field
from server.kernel.identifiers import CHF_ID, PRODUCT_CODE, PSP_TRANSACTION_ID
from server.kernel.money import format_amount
from server.kernel.schemas import IdentifierField, StrictSchema, iso_day, iso_stamp
from server.ledger.states import STATES
from server.web import answer_schemas as answers

MAX_JSON_EXT_BYTES = 4096


class PolicyReferenceSchema(StrictSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=100))
    product_code = IdentifierField(PRODUCT_CODE, required=True)
    product_name = fields.String(required=True, validate=validate.Length(min=1, max=100))


def _small_json(value: dict[str, Any]) -> None:
    if len(json.dumps(value)) > MAX_JSON_EXT_BYTES:
        raise ValidationError(f"must be at most {MAX_JSON_EXT_BYTES} bytes of JSON")


class PaymentRequestSchema(StrictSchema):
    chf_id = IdentifierField(CHF_ID, required=True)
    amount = fields.String(required=True, validate=validate.Length(min=1, max=32))
    psp_transaction_id = IdentifierField(PSP_TRANSACTION_ID, required=True)
    policy = fields.Nested(PolicyReferenceSchema, required=True)
    json_ext = fields.Dict(
        keys=fields.String(), load_default=None, allow_none=True, validate=_small_json
    )


class PayablePolicySchema(Schema):
    token = answers.text(metadata={"description": "opaque; names the policy in a payment"})
    product_code = answers.text()
    product_name = answers.text()
    amount = answers.amount()
    currency = answers.text()
    status = policy_status_field()


class VerificationSchema(Schema):
    """What render_verification answers."""

    chf_id = answers.text()
    first_name = answers.text()
    last_name = answers.text()
    policies = answers.list_of(PayablePolicySchema)
    message = fields.String(metadata={"description": "only when nothing awaits payment"})


def render_verification(insuree: dict[str, Any], policies: list[dict[str, Any]]) -> dict:
    # A policy stored before policies had a payment token cannot be paid through this
    # API (a payment names the token): it is not offered.
    policies = [policy for policy in policies if policy.get("payment_token")]
    body: dict[str, Any] = {
        "chf_id": insuree["chf_id"],
        "first_name": insuree["first_name"],
        "last_name": insuree["last_name"],
        "policies": [
            {
                "token": policy["payment_token"],
                "product_code": policy["product_code"],
                "product_name": policy["product_name"],
                "amount": format_amount(policy["value"], policy["currency"]),
                "currency": policy["currency"],
                "status": policy["status"],
            }
            for policy in policies
        ],
    }
    if not policies:
        body["message"] = "the insuree has no policy awaiting payment"
    return body


class PremiumSchema(Schema):
    uuid = answers.text()
    amount = answers.amount()
    currency = answers.text()
    pay_date = answers.stamp()
    pay_type = answers.one_of(["M"])


class PaidPolicySchema(Schema):
    status = policy_status_field()
    effective_date = answers.day()


class ProviderPaymentSchema(Schema):
    """What render_payment answers."""

    payment_id = answers.text()
    psp_transaction_id = answers.text()
    status = answers.one_of(STATES)
    chf_id = answers.text()
    amount = answers.amount()
    currency = answers.text()
    receipt = answers.text()
    premium = answers.nested(PremiumSchema)
    policy = answers.nested(PaidPolicySchema)


def render_payment(transaction: dict[str, Any]) -> dict[str, Any]:
    settlement = transaction["settlement"]
    return {
        "payment_id": transaction["_id"],
        "psp_transaction_id": transaction["provider_reference"],
        "status": transaction["status"],
        "chf_id": transaction["chf_id"],
        "amount": format_amount(transaction["amount"], transaction["currency"]),
        "currency": transaction["currency"],
        "receipt": settlement["receipt"],
        "premium": {
            "uuid": settlement["premium_uuid"],
            "amount": format_amount(transaction["amount"], transaction["currency"]),
            "currency": transaction["currency"],
            "pay_date": iso_stamp(transaction["paid_at"].astimezone(UTC)),
            "pay_type": "M",
        },
        "policy": {
            "status": settlement["policy_status"],
            "effective_date": iso_day(settlement["effective_date"]),
        },
    }
