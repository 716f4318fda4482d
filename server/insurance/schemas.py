"""Wire formats of the insuree, product and policy admin endpoints: what they load,
what they answer (render_*) and the schemas that describe those answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from marshmallow import Schema, fields, validate

from server.insurance.repository import POLICY_STATUSES
from server.kernel.identifiers import CHF_ID, PRODUCT_CODE
from server.kernel.money import format_amount
from server.kernel.schemas import (
    CURRENCY,
    AtLeastOneField,
    IdentifierField,
    PageQuerySchema,
    StrictSchema,
    Whole,
    iso_day,
    iso_stamp,
)
from server.web import answer_schemas as answers

NAME = validate.Length(min=1, max=100)
POLICY_UUID_EXAMPLE = "6f1c2a4e-8b3d-4f7a-9c21-5d0e8a7b3f42"  # in request examples
# A price or a policy's value: a decimal string of more than zero, like '10.50'.
AMOUNT = Whole(
    r"[1-9][0-9]{0,12}(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*",
    error="must be a decimal string greater than 0, like '10.50'",
)


class InsureeCreateSchema(StrictSchema):
    chf_id = IdentifierField(CHF_ID, required=True)
    first_name = fields.String(required=True, validate=NAME)
    last_name = fields.String(required=True, validate=NAME)
    phone = fields.String(load_default="", validate=validate.Length(max=20))
    wallet = fields.String(load_default="", validate=validate.Length(max=40))
    sms_opt_out = fields.Boolean(load_default=False)


class InsureeUpdateSchema(AtLeastOneField):
    first_name = fields.String(validate=NAME)
    last_name = fields.String(validate=NAME)
    phone = fields.String(validate=validate.Length(max=20))
    wallet = fields.String(validate=validate.Length(max=40))
    sms_opt_out = fields.Boolean()


class InsureeQuerySchema(PageQuerySchema):
    chf_id = IdentifierField(CHF_ID)


class ProductCreateSchema(StrictSchema):
    code = IdentifierField(PRODUCT_CODE, required=True)
    name = fields.String(required=True, validate=NAME)
    price = fields.String(required=True, validate=AMOUNT)
    currency = fields.String(required=True, validate=CURRENCY)


class ProductUpdateSchema(AtLeastOneField):
    name = fields.String(validate=NAME)
    price = fields.String(validate=AMOUNT)


class PolicyCreateSchema(StrictSchema):
    chf_id = IdentifierField(CHF_ID, required=True)
    product_code = IdentifierField(PRODUCT_CODE, required=True)
    amount = fields.String(validate=AMOUNT)  # defaults to the product's price
    start_date = fields.Date(required=True)
    expiry_date = fields.Date()
    status = fields.Integer(load_default=1, validate=validate.OneOf(POLICY_STATUSES))


class PolicyUpdateSchema(AtLeastOneField):
    amount = fields.String(validate=AMOUNT)
    start_date = fields.Date()
    expiry_date = fields.Date()
    status = fields.Integer(validate=validate.OneOf(POLICY_STATUSES))


class PolicyQuerySchema(PageQuerySchema):
    chf_id = IdentifierField(CHF_ID)
    status = fields.Integer(validate=validate.OneOf(POLICY_STATUSES))


def policy_status_field(*, nullable: bool = False) -> fields.Integer:
    """A policy's status in an answer (theirs and the answers that show one)."""
    return fields.Integer(
        required=True,
        allow_none=nullable,
        validate=validate.OneOf(POLICY_STATUSES),
        metadata={
            "description": "openIMIS policy status: 1 idle, 2 active, "
            "4 suspended, 8 expired, 16 ready"
        },
    )


def day_start(day: date) -> datetime:
    """Dates are stored as UTC midnight datetimes (BSON has no date type)."""
    return datetime.combine(day, time(), tzinfo=UTC)


class InsureeSchema(Schema):
    """What render_insuree answers."""

    chf_id = answers.text()
    first_name = answers.text()
    last_name = answers.text()
    phone = answers.text()
    wallet = answers.text(metadata={"description": "Qmoney wallet; empty when none"})
    sms_opt_out = fields.Boolean(
        required=True,
        metadata={"description": "true: no SMS receipt is sent for this insuree's payments"},
    )
    created_at = answers.stamp()


class ProductSchema(Schema):
    """What render_product answers."""

    code = answers.text()
    name = answers.text()
    price = answers.amount()
    currency = answers.text()


class PolicySchema(Schema):
    """What render_policy answers."""

    uuid = answers.text()
    chf_id = answers.text()
    product_code = answers.text()
    product_name = answers.text()
    amount = answers.amount()
    currency = answers.text()
    status = policy_status_field()
    start_date = answers.day()
    effective_date = answers.day(nullable=True)
    expiry_date = answers.day(nullable=True)
    created_at = answers.stamp()


def render_insuree(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "chf_id": document["chf_id"],
        "first_name": document["first_name"],
        "last_name": document["last_name"],
        "phone": document["phone"],
        "wallet": document["wallet"],
        "sms_opt_out": bool(document.get("sms_opt_out", False)),
        "created_at": iso_stamp(document["created_at"]),
    }


def render_product(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": document["code"],
        "name": document["name"],
        "price": format_amount(document["price"], document["currency"]),
        "currency": document["currency"],
    }


def render_policy(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": document["_id"],
        "chf_id": document["chf_id"],
        "product_code": document["product_code"],
        "product_name": document["product_name"],
        "amount": format_amount(document["value"], document["currency"]),
        "currency": document["currency"],
        "status": document["status"],
        "start_date": iso_day(document["start_date"]),
        "effective_date": iso_day(document.get("effective_date")),
        "expiry_date": iso_day(document.get("expiry_date")),
        "created_at": iso_stamp(document["created_at"]),
    }
