"""Wire formats of the PSP admin endpoints (what they load and answer). The PIN is
write-only."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from server.kernel.identifiers import USERNAME
from server.kernel.schemas import (
    CURRENCY,
    AtLeastOneField,
    IdentifierField,
    PageQuerySchema,
    StrictSchema,
    Whole,
    iso_stamp,
)
from server.psps.repository import KINDS
from server.web import answer_schemas as answers

PIN = Whole(r"[0-9]{4,12}", error="must be 4-12 digits")


class PspCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=60))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    account = fields.String(required=True, validate=validate.Length(min=1, max=40))
    currency = fields.String(required=True, validate=CURRENCY)
    pin = fields.String(load_default=None, validate=PIN, load_only=True)
    is_external_api = fields.Boolean(load_default=False)
    username = IdentifierField(USERNAME, load_default=None)
    active = fields.Boolean(load_default=True)


class PspUpdateSchema(AtLeastOneField):
    account = fields.String(validate=validate.Length(min=1, max=40))
    pin = fields.String(validate=PIN, load_only=True)
    is_external_api = fields.Boolean()
    username = IdentifierField(USERNAME, allow_none=True)
    active = fields.Boolean()


class PspQuerySchema(PageQuerySchema):
    kind = fields.String(validate=validate.OneOf(KINDS))
    active = fields.Boolean()


class PspSchema(Schema):
    """What render_psp answers."""

    uuid = answers.text()
    name = answers.text()
    kind = answers.one_of(KINDS)
    account = answers.text()
    currency = answers.text()
    is_external_api = fields.Boolean(required=True)
    username = answers.text(nullable=True)
    has_pin = fields.Boolean(required=True, metadata={"description": "the PIN is write-only"})
    active = fields.Boolean(required=True)
    created_at = answers.stamp()


def render_psp(document: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": document["_id"],
        "name": document["name"],
        "kind": document["kind"],
        "account": document["account"],
        "currency": document["currency"],
        "is_external_api": document["is_external_api"],
        "username": document["username"],
        "has_pin": document["pin_encrypted"] is not None,
        "active": document["active"],
        "created_at": iso_stamp(document["created_at"]),
    }
