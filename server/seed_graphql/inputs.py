"""The seed's inputs as the bodies their REST twins load, loaded with the REST twins'
own schemas: the same rules, the same normalisation, the same idempotency fingerprint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema
from marshmallow import ValidationError as SchemaError

from server.kernel.errors import ValidationFailed
from server.kernel.schemas import shared

# REST field -> the seed's name for it, to name invalid fields as the caller sent them.
PAYMENT_NAMES = {
    "chf_id": "chfId",
    "amount": "amount",
    "psp_transaction_id": "pspTransactionId",
    "policy": "policy",
    "json_ext": "jsonExt",
}
DEBIT_NAMES = {
    "policy_uuid": "policyUuid",
    "psp_uuid": "paymentServiceProviderUuid",
    "amount": "amount",
}


def load(schema: type[Schema], body: dict[str, Any], names: Mapping[str, str]) -> Any:
    """`body` loaded with `schema`; ValidationFailed naming the invalid fields by the
    names in `names` (REST name -> GraphQL name)."""
    try:
        return shared(schema).load(body)
    except SchemaError as err:
        messages = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        fields = {names.get(key, key): value for key, value in messages.items()}
        raise ValidationFailed("the input is invalid", {"fields": fields}) from None


def payment_body(given: Mapping[str, Any]) -> dict[str, Any]:
    """processPayment's input as the body of POST /api/v1/payments."""
    policy = given["policy"]
    return {
        "chf_id": given["chfId"],
        "amount": given["amount"],
        "psp_transaction_id": given["pspTransactionId"],
        "policy": {
            "token": policy["token"],
            "product_code": policy["productCode"],
            "product_name": policy["productName"],
        },
        "json_ext": given.get("jsonExt"),
    }
