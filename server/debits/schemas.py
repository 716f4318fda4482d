"""Wire formats of the debit endpoints."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from server.insurance.schemas import AMOUNT
from server.kernel.schemas import REASON, StrictSchema, Whole


class DebitRequestSchema(StrictSchema):
    policy_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    psp_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount = fields.String(required=True, validate=AMOUNT)


class ProcessRequestSchema(StrictSchema):
    otp = fields.String(
        required=True,
        validate=Whole(r"[0-9]{4,8}", error="must be the 4-8 digit code the payer received"),
    )


class ResolveRequestSchema(StrictSchema):
    outcome = fields.String(required=True, validate=validate.OneOf(["succeeded", "failed"]))
    provider_reference = fields.String(load_default="", validate=validate.Length(max=100))
    reason = fields.String(required=True, validate=REASON)

    @validates_schema
    def reference_for_success(self, data: dict[str, Any], **_: Any) -> None:
        if data["outcome"] == "succeeded" and not data.get("provider_reference"):
            raise ValidationError(
                "the provider's reference is needed to mark it succeeded", "provider_reference"
            )
