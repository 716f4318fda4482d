"""Wire formats of the insuree, product and policy admin endpoints."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from marshmallow import fields, validate

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

NAME = validate.Length(min=1, max=100)
# A price or a policy's value: a decimal string of more than zero, like '10.50'.
AMOUNT = Whole(r"[1-9][0-9]{0,12}(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*",
               error="must be a decimal string greater than 0, like '10.50'")


class InsureeCreateSchema(StrictSchema):
    chf_id = IdentifierField(CHF_ID, required=True)
    first_name = fields.String(required=True, validate=NAME)
    last_name = fields.String(required=True, validate=NAME)
    phone = fields.String(load_default="", validate=validate.Length(max=20))
    wallet = fields.String(load_default="", validate=validate.Length(max=40))


class InsureeUpdateSchema(AtLeastOneField):
    first_name = fields.String(validate=NAME)
    last_name = fields.String(validate=NAME)
    phone = fields.String(validate=validate.Length(max=20))
    wallet = fields.String(validate=validate.Length(max=40))


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
    amount = fields.String(validate=AMOUNT)      # defaults to the product's price
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


def day_start(day: date) -> datetime:
    """Dates are stored as UTC midnight datetimes (BSON has no date type)."""
    return datetime.combine(day, time(), tzinfo=UTC)


def render_insuree(document: dict[str, Any]) -> dict[str, Any]:
    return {"chf_id": document["chf_id"], "first_name": document["first_name"],
            "last_name": document["last_name"], "phone": document["phone"],
            "wallet": document["wallet"], "created_at": iso_stamp(document["created_at"])}


def render_product(document: dict[str, Any]) -> dict[str, Any]:
    return {"code": document["code"], "name": document["name"],
            "price": format_amount(document["price"], document["currency"]),
            "currency": document["currency"]}


def render_policy(document: dict[str, Any]) -> dict[str, Any]:
    return {"uuid": document["_id"], "chf_id": document["chf_id"],
            "product_code": document["product_code"], "product_name": document["product_name"],
            "amount": format_amount(document["value"], document["currency"]),
            "currency": document["currency"], "status": document["status"],
            "start_date": iso_day(document["start_date"]),
            "effective_date": iso_day(document.get("effective_date")),
            "expiry_date": iso_day(document.get("expiry_date")),
            "created_at": iso_stamp(document["created_at"])}
