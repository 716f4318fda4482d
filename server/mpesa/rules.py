"""Validation rules for C2B payments and Daraja's answers to them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, validate

from server.kernel.money import AmountError, parse_amount
from server.mpesa.schemas import C2BCallback
from server.web import answer_schemas as answers

ACCEPTED: dict[str, Any] = {"ResultCode": "0", "ResultDesc": "Accepted"}
CONFIRMATION_RECEIVED: dict[str, Any] = {"ResultCode": 0, "ResultDesc": "Success"}

# Daraja's rejection codes; each picks the SMS the customer receives.
INVALID_MSISDN = "C2B00011"
INVALID_ACCOUNT = "C2B00012"
INVALID_AMOUNT = "C2B00013"
INVALID_KYC = "C2B00014"
INVALID_SHORTCODE = "C2B00015"
OTHER_ERROR = "C2B00016"


def rejected(code: str) -> dict[str, Any]:
    return {"ResultCode": code, "ResultDesc": "Rejected"}


# What the callbacks answer (these, and the handlers' error_body), in Daraja's format.

VALIDATION_RESULT_CODES = [
    "0",
    INVALID_MSISDN,
    INVALID_ACCOUNT,
    INVALID_AMOUNT,
    INVALID_KYC,
    INVALID_SHORTCODE,
    OTHER_ERROR,
]


class DarajaValidationAnswerSchema(Schema):
    ResultCode = answers.one_of(VALIDATION_RESULT_CODES)
    ResultDesc = answers.text(metadata={"example": "Accepted"})


class DarajaConfirmationAnswerSchema(Schema):
    ResultCode = fields.Integer(
        required=True,
        validate=validate.OneOf([0, 1]),
        metadata={"description": "0 received; 1 only on errors"},
    )
    ResultDesc = answers.text(metadata={"example": "Success"})


@dataclass(frozen=True)
class ValidationRules:
    account_pattern: re.Pattern[str]  # matched whole (fullmatch) against BillRefNumber
    min_amount: int  # minor units
    max_amount: int
    currency: str
    shortcodes: frozenset[str]

    def serves(self, shortcode: str) -> bool:
        return shortcode in self.shortcodes

    def check(self, callback: C2BCallback) -> str | None:
        """The C2B0001x code to reject with, or None to accept."""
        if not self.serves(callback.shortcode):
            return INVALID_SHORTCODE
        try:
            amount = parse_amount(callback.trans_amount, self.currency)
        except AmountError:
            return INVALID_AMOUNT
        if not self.min_amount <= amount <= self.max_amount:
            return INVALID_AMOUNT
        is_till = callback.transaction_type.lower() == "buy goods"
        if not is_till and not self.account_pattern.fullmatch(callback.bill_ref):
            return INVALID_ACCOUNT
        return None
