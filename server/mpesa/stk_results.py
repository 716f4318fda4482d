"""M-Pesa Express results: the result callback's body, and what each result code means
for the debit (server.debits.contract.StatusAnswer).

The callback (`Body.stkCallback`): `ResultCode` a number, `CallbackMetadata` only on
success, as `Item` `Name`/`Value` pairs (Amount a number such as 1.00, TransactionDate
and PhoneNumber numbers, Balance without a Value). The status query answers the same
codes as strings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError

from server.debits.contract import ProviderStatus, StatusAnswer
from server.kernel.identifiers import TRANS_ID
from server.kernel.money import AmountError, parse_amount

SUCCESS = "0"
CANCELLED = "1032"
EXPIRED = "1019"

# Each result code in plain words, for the operators and the transaction's failure.
RESULT_REASONS = {
    "0": "paid",
    "1": "the payer's M-Pesa balance is insufficient",
    "2": "the amount is below M-Pesa's minimum for a transaction",
    "3": "the amount is above M-Pesa's maximum for a transaction",
    "4": "the amount is above the payer's daily transfer limit",
    "8": "the payer's account would pass its maximum balance",
    "17": "refused as a repeat: the same payer and amount within 2 minutes; wait and try again",
    "1019": "the prompt expired before the payer answered it",
    "1025": "the prompt could not be sent to the payer's phone",
    "9999": "the prompt could not be sent to the payer's phone",
    "1032": "the payer cancelled the prompt",
    "1037": "the payer's phone could not be reached (no answer from the handset)",
    "2001": "the payer entered a wrong M-Pesa PIN",
}


def reason_for(code: str, description: str = "") -> str:
    """A result code in plain words (Daraja's own description for a code not known here)."""
    known = RESULT_REASONS.get(code)
    if known is not None:
        return known
    return f"M-Pesa result {code}: {description}" if description else f"M-Pesa result {code}"


def status_for(code: str) -> ProviderStatus:
    if code == SUCCESS:
        return ProviderStatus.SUCCEEDED
    if code == CANCELLED:
        return ProviderStatus.CANCELLED
    if code == EXPIRED:
        return ProviderStatus.EXPIRED
    return ProviderStatus.FAILED


def result_answer(
    code: str,
    description: str,
    reference: str | None = None,
    *,
    receipt: str | None = None,
    amount: int | None = None,
    payer: str | None = None,
) -> StatusAnswer:
    """A result code (from the callback or the query) as the debit engine's answer."""
    status = status_for(code)
    if status == ProviderStatus.SUCCEEDED:
        return StatusAnswer(
            status, reference, description, code, receipt=receipt, amount=amount, payer=payer
        )
    return StatusAnswer(status, reference, reason_for(code, description), code)


@dataclass(frozen=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: str
    result_desc: str
    receipt: str | None = None  # MpesaReceiptNumber, success only
    amount: int | None = None  # minor units, success only
    phone: str | None = None  # PhoneNumber, success only
    transaction_date: str | None = None  # YYYYMMDDHHmmss, Nairobi time

    def answer(self) -> StatusAnswer:
        return result_answer(
            self.result_code,
            self.result_desc,
            self.checkout_request_id,
            receipt=self.receipt,
            amount=self.amount,
            payer=self.phone,
        )


def _text(value: Any) -> str | None:
    """A scalar as its exact text (numbers arrive as their text: see parse_stk_callback)."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value).strip()


def parse_stk_callback(raw: bytes, currency: str = "KES") -> StkCallback:
    """Read a result callback; whatever cannot be read is a ValidationError (the body
    is then kept for review)."""
    try:
        body = json.loads(raw, parse_float=str, parse_int=str)
    except ValueError:
        raise ValidationError("body is not valid JSON") from None
    except RecursionError:
        raise ValidationError("body is nested too deeply") from None
    callback = body.get("Body", {}).get("stkCallback") if isinstance(body, dict) else None
    if not isinstance(callback, dict) or not isinstance(body.get("Body"), dict):
        raise ValidationError("no Body.stkCallback object")
    checkout = _text(callback.get("CheckoutRequestID"))
    code = _text(callback.get("ResultCode"))
    if not checkout:
        raise ValidationError("CheckoutRequestID is missing", "CheckoutRequestID")
    if not code or not code.lstrip("-").isdigit():
        raise ValidationError("ResultCode must be a number", "ResultCode")
    code = str(int(code))
    parsed = StkCallback(
        _text(callback.get("MerchantRequestID")) or "",
        checkout,
        code,
        _text(callback.get("ResultDesc")) or "",
    )
    if code != SUCCESS:
        return parsed
    items = _metadata(callback)
    receipt = _text(items.get("MpesaReceiptNumber"))
    amount_text = _text(items.get("Amount"))
    if not receipt or not TRANS_ID.is_valid(TRANS_ID.normalise(receipt)):
        raise ValidationError(
            "a successful result without a valid MpesaReceiptNumber", "CallbackMetadata"
        )
    if not amount_text:
        raise ValidationError("a successful result without Amount", "CallbackMetadata")
    try:
        amount = parse_amount(amount_text, currency)
    except AmountError as err:
        raise ValidationError(f"Amount: {err}", "CallbackMetadata") from None
    return StkCallback(
        parsed.merchant_request_id,
        checkout,
        code,
        parsed.result_desc,
        receipt=TRANS_ID.normalise(receipt),
        amount=amount,
        phone=_text(items.get("PhoneNumber")),
        transaction_date=_text(items.get("TransactionDate")),
    )


def _metadata(callback: dict[str, Any]) -> dict[str, Any]:
    """CallbackMetadata's items by name (an item without a Value, like Balance, is None)."""
    metadata = callback.get("CallbackMetadata")
    items = metadata.get("Item") if isinstance(metadata, dict) else None
    if not isinstance(items, list):
        raise ValidationError(
            "a successful result without CallbackMetadata.Item", "CallbackMetadata"
        )
    return {
        item["Name"]: item.get("Value")
        for item in items
        if isinstance(item, dict) and isinstance(item.get("Name"), str)
    }
