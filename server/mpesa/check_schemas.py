"""Transaction Status and Account Balance on the API: the result callback's body (for
the API description; the raw body is kept) and a request as the operators see it."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, fields

from server.kernel.money import format_amount
from server.mpesa import initiator
from server.web import answer_schemas as answers


class ResultParameterSchema(Schema):
    Key = fields.String(required=True, metadata={"example": "ReceiptNo"})
    Value = fields.Raw(metadata={"example": "RKL51ZDR4F"})


class ResultParametersSchema(Schema):
    ResultParameter = fields.List(fields.Nested(ResultParameterSchema), required=True)


class ResultBodySchema(Schema):
    ResultType = fields.Integer()
    ResultCode = fields.Raw(required=True, metadata={"description": "0 success"})
    ResultDesc = fields.String()
    OriginatorConversationID = fields.String(required=True)
    ConversationID = fields.String(required=True)
    TransactionID = fields.String()
    ResultParameters = fields.Nested(ResultParametersSchema)
    ReferenceData = fields.Dict()


class ResultCallbackSchema(Schema):
    """Daraja's result of a Transaction Status or Account Balance request."""

    Result = fields.Nested(ResultBodySchema, required=True)


class CheckResultSchema(Schema):
    """What M-Pesa said: a receipt's details, or the accounts' balances."""

    receipt = fields.String()
    status = fields.String(metadata={"example": "Completed"})
    amount = fields.String(allow_none=True, metadata={"example": "1500.00"})
    currency = fields.String()
    debit_party = fields.String()
    credit_party = fields.String()
    reason_type = fields.String()
    finalised_time = fields.String()
    accounts = fields.List(fields.Dict())


class ProviderCheckSchema(Schema):
    id = answers.text()
    kind = answers.one_of((initiator.TRANSACTION_STATUS, initiator.ACCOUNT_BALANCE))
    trans_id = answers.text(nullable=True)
    status = answers.one_of(
        (initiator.REQUESTED, initiator.ANSWERED, initiator.REFUSED, initiator.TIMED_OUT),
        metadata={"description": "requested: waiting for M-Pesa's result"},
    )
    requested_by = answers.text()
    requested_at = answers.stamp()
    answered_at = answers.stamp(nullable=True)
    result_code = answers.text(nullable=True)
    result_description = answers.text(nullable=True)
    finding = answers.text(
        nullable=True,
        metadata={
            "description": "a receipt against the payment stored here: agrees; "
            "amount_differs, not_completed (M-Pesa reports it reversed or failed), "
            "amount_unreadable (each flags the payment for review); not_recorded_here "
            "(M-Pesa completed it, the gateway has no payment of it); absent"
        },
    )
    result = answers.nested(CheckResultSchema, nullable=True)


class ProviderCheckListSchema(Schema):
    items = answers.list_of(ProviderCheckSchema)


def render_check(document: dict[str, Any]) -> dict[str, Any]:
    result = document.get("result")
    if result is not None and "amount" in result:
        amount = result["amount"]
        result = {
            **result,
            "amount": None if amount is None else format_amount(amount, result["currency"]),
        }
    if result is not None and "accounts" in result:
        result = {
            "accounts": [
                {
                    **account,
                    "available": None
                    if account["available"] is None
                    else _signed(account["available"], account["currency"]),
                }
                for account in result["accounts"]
            ]
        }
    answered = document.get("answered_at")
    return {
        "id": document["_id"],
        "kind": document["kind"],
        "trans_id": document.get("trans_id"),
        "status": document["status"],
        "requested_by": document["requested_by"],
        "requested_at": document["requested_at"].astimezone(UTC).isoformat(),
        "answered_at": answered.astimezone(UTC).isoformat() if answered else None,
        "result_code": document.get("result_code"),
        "result_description": document.get("result_description"),
        "finding": document.get("finding"),
        "result": result,
    }


def _signed(minor: int, currency: str) -> str:
    return ("-" if minor < 0 else "") + format_amount(abs(minor), currency)
