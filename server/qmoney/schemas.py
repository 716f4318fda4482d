"""Wire formats of the OTP debit endpoints."""

from __future__ import annotations

from marshmallow import fields, validate

from server.insurance.schemas import DECIMAL
from server.schemas import StrictSchema


class DebitRequestSchema(StrictSchema):
    policy_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    psp_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    amount = fields.String(required=True, validate=DECIMAL)


class ProcessRequestSchema(StrictSchema):
    otp = fields.String(required=True, validate=validate.Regexp(
        r"^[0-9]{4,8}$", error="must be the 4-8 digit code the payer received"))
