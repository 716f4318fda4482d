"""Wire formats of the C2B callbacks, of the payments and of the inbox: what the
endpoints load, what they answer (render_*) and the schemas that describe those answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from server.inbox.repository import (
    CONFLICT,
    DISMISSED,
    DUPLICATE,
    FAILED,
    LEGACY_SOURCE_KIND,
    NEEDS_REVIEW,
    PROCESSED,
    RECEIVED,
)
from server.insurance.schemas import AMOUNT
from server.kernel.identifiers import SHORTCODE, TRANS_ID
from server.kernel.listing import amount_field, sort_field
from server.kernel.money import format_amount
from server.kernel.schemas import REASON, IdentifierField, PageQuerySchema, StrictSchema, shared
from server.mpesa.reasons import review_text, unmatched_text
from server.mpesa.repository import PAYMENT_STATUSES
from server.web import answer_schemas as answers

NAIROBI = timezone(timedelta(hours=3), "EAT")


@dataclass(frozen=True)
class C2BCallback:
    trans_id: str
    transaction_type: str
    trans_time: datetime  # UTC
    trans_amount: str  # as sent; parsed against the configured currency by the service
    shortcode: str
    bill_ref: str
    invoice_number: str
    org_balance: str
    third_party_trans_id: str
    msisdn: str
    first_name: str
    middle_name: str
    last_name: str


# The optional fields' keys and attributes; each a string of at most OPTIONAL_CHARS.
OPTIONAL_CHARS = 200
_OPTIONAL = (
    ("TransactionType", "transaction_type"),
    ("BillRefNumber", "bill_ref"),
    ("InvoiceNumber", "invoice_number"),
    ("OrgAccountBalance", "org_balance"),
    ("ThirdPartyTransID", "third_party_trans_id"),
    ("MSISDN", "msisdn"),
    ("FirstName", "first_name"),
    ("MiddleName", "middle_name"),
    ("LastName", "last_name"),
)


def _optional(name: str) -> fields.String:
    return fields.String(
        data_key=name, load_default="", validate=validate.Length(max=OPTIONAL_CHARS)
    )


class C2BCallbackSchema(Schema):
    """Validation and confirmation share this body. Unknown keys are ignored:
    Daraja adds fields over time and the raw body is kept in the inbox anyway.
    Values are strings; parse_callback turns JSON numbers into their exact text.
    TransID and BusinessShortCode are identifiers (server.identifiers); the account
    number loses its surrounding whitespace, like the insuree number it names."""

    class Meta:
        unknown = EXCLUDE

    trans_id = IdentifierField(TRANS_ID, data_key="TransID", required=True)
    transaction_type = _optional("TransactionType")
    trans_time = fields.String(data_key="TransTime", required=True)
    trans_amount = fields.String(
        data_key="TransAmount", required=True, validate=validate.Length(min=1, max=32)
    )
    shortcode = IdentifierField(SHORTCODE, data_key="BusinessShortCode", required=True)
    bill_ref = _optional("BillRefNumber")
    invoice_number = _optional("InvoiceNumber")
    org_balance = _optional("OrgAccountBalance")
    third_party_trans_id = _optional("ThirdPartyTransID")
    msisdn = _optional("MSISDN")
    first_name = _optional("FirstName")
    middle_name = _optional("MiddleName")
    last_name = _optional("LastName")

    @post_load
    def build(self, data: dict[str, Any], **_: Any) -> C2BCallback:
        data["trans_time"] = parse_trans_time(data["trans_time"])
        data["bill_ref"] = data["bill_ref"].strip()
        return C2BCallback(**data)


def parse_trans_time(text: str) -> datetime:
    """`YYYYMMDDHHmmss` in Nairobi time (UTC+3), returned in UTC."""
    try:  # the first hours of year 1 have no UTC time (OverflowError)
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NAIROBI).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError("TransTime must be YYYYMMDDHHmmss", "TransTime") from None


def _plain_trans_time(text: str) -> datetime | None:
    """TransTime as parse_trans_time reads it, for the form Daraja sends: 14 ASCII
    digits making a valid date and time two digits a part (strptime then splits them
    the same way). Anything else (None) is left to parse_trans_time."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        return None
    month, day, hour, minute, second = (int(text[i : i + 2]) for i in range(4, 14, 2))
    try:
        local = datetime(int(text[:4]), month, day, hour, minute, second, tzinfo=NAIROBI)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):  # out of range, or before UTC's year 1
        return None


def read_plain_callback(body: dict[str, Any]) -> C2BCallback | None:
    """The callback C2BCallbackSchema would load, for a body that is plainly valid:
    every field it reads a string within its limits, TransID and BusinessShortCode
    valid once normalised, TransTime in Daraja's form. Otherwise None, and the schema
    decides (and words the errors).

    Every M-Pesa callback goes through here, and the schema's per-field machinery costs
    more than the rest of a validation's own work; tests/test_c2b_callback_reader.py
    holds the two to the same answers."""
    trans_id, shortcode = body.get("TransID"), body.get("BusinessShortCode")
    trans_time, amount = body.get("TransTime"), body.get("TransAmount")
    if not (
        type(trans_id) is str
        and type(shortcode) is str
        and type(trans_time) is str
        and type(amount) is str
        and 1 <= len(amount) <= 32
    ):
        return None
    trans_id, shortcode = TRANS_ID.normalise(trans_id), SHORTCODE.normalise(shortcode)
    if not (TRANS_ID.is_valid(trans_id) and SHORTCODE.is_valid(shortcode)):
        return None
    when = _plain_trans_time(trans_time)
    if when is None:
        return None
    optional: dict[str, str] = {}
    for key, attribute in _OPTIONAL:
        value = body.get(key, "")
        if type(value) is not str or len(value) > OPTIONAL_CHARS:
            return None
        optional[attribute] = value
    optional["bill_ref"] = optional["bill_ref"].strip()
    return C2BCallback(
        trans_id=trans_id, trans_time=when, trans_amount=amount, shortcode=shortcode, **optional
    )


def parse_callback(raw: bytes) -> C2BCallback:
    """Decode a callback body; numbers keep their exact text, never a float.

    Whatever cannot be read (not UTF-8, not JSON, nested past the parser's depth) is a
    ValidationError, so the body is kept for review like any other unreadable one."""
    try:
        body = json.loads(raw, parse_float=str, parse_int=str)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError among them
        raise ValidationError("body is not valid JSON") from None
    except RecursionError:
        raise ValidationError("body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    return read_plain_callback(body) or shared(C2BCallbackSchema).load(body)


# The payments' sorts, each read from an index (server.mpesa.repository.INDEXES).
PAYMENT_SORTS = ("-trans_time", "trans_time", "-received_at", "received_at", "-amount", "amount")


class PaymentQuerySchema(PageQuerySchema):
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    shortcode = fields.String(validate=validate.Length(max=12))
    bill_ref = fields.String(validate=validate.Length(max=40))
    status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    needs_review = fields.Boolean()
    min_amount = amount_field("smallest")  # in the paybill's currency (c2b.currency)
    max_amount = amount_field("largest")
    sort = sort_field(PAYMENT_SORTS)


class AllocateRequestSchema(StrictSchema):
    policy_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    note = fields.String(required=True, validate=REASON)  # the why


INBOX_STATUSES = (RECEIVED, PROCESSED, DUPLICATE, CONFLICT, NEEDS_REVIEW, FAILED, DISMISSED)
# Paybill validations and confirmations; M-Pesa Express result callbacks; Transaction
# Status and Account Balance results and queue timeouts; records recovered from M-Pesa's
# own (a pulled row, a statement row); SMS delivery reports.
INBOX_KINDS = [
    "validation",
    "confirmation",
    "stk_result",
    "result",
    "queue_timeout",
    "transaction",
    "delivery_report",
]


# The inbox's sorts, by the time an entry arrived (server.inbox.repository.INDEXES).
INBOX_SORTS = ("-received_at", "received_at")


class InboxQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(INBOX_STATUSES))
    kind = fields.String(validate=validate.OneOf(INBOX_KINDS))
    source = fields.String(validate=validate.Length(min=1, max=32))
    trans_id = IdentifierField(TRANS_ID)
    date_from = fields.AwareDateTime(data_key="from", default_timezone=UTC)
    date_to = fields.AwareDateTime(data_key="to", default_timezone=UTC)
    sort = sort_field(INBOX_SORTS)


class InboxReplaySchema(Schema):
    by = answers.text()
    reason = answers.text()
    at = answers.stamp()


class InboxDismissalSchema(Schema):
    by = answers.text()
    reason = answers.text()
    at = answers.stamp()
    from_status = answers.one_of(
        INBOX_STATUSES, metadata={"description": "the status the entry had when dismissed"}
    )


class InboxFailureSchema(Schema):
    type = answers.text(metadata={"description": "the kind of error that stopped the processing"})
    message = answers.text()


class InboxEntrySchema(Schema):
    """What render_inbox_entry answers."""

    id = answers.text()
    source = answers.text(
        metadata={
            "description": "who sent it: `daraja_c2b` (paybill), `daraja_stk` (M-Pesa "
            "Express), `daraja_result` (Transaction Status, Account Balance); `daraja_pull` "
            "and `statement`: a payment recovered from M-Pesa's records; `africastalking`: an "
            "SMS delivery report"
        }
    )
    kind = answers.one_of(INBOX_KINDS)
    failure = answers.nested(InboxFailureSchema, nullable=True)
    status = answers.one_of(INBOX_STATUSES)
    trans_id = answers.text(nullable=True)
    source_ip = answers.text()
    received_at = answers.stamp()
    attempts = answers.count()
    errors = fields.Raw(
        required=True,
        allow_none=True,
        metadata={"description": "why the body could not be read, or why it is for review"},
    )
    body = answers.text(metadata={"description": "the raw body, as text or base64"})
    body_encoding = answers.one_of(["utf-8", "base64"])
    replays = answers.list_of(InboxReplaySchema)
    dismissal = fields.Nested(
        InboxDismissalSchema,
        required=True,
        allow_none=True,
        metadata={"description": "who dismissed it (status `dismissed`), when and why"},
    )


InboxEntryPageSchema = answers.page_of(InboxEntrySchema)


def render_inbox_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An inbox entry without its raw body's secrets (Daraja bodies hold none)."""
    failure = entry.get("failure")
    return {
        "id": entry["_id"],
        "source": entry.get("source", LEGACY_SOURCE_KIND[0]),
        "kind": entry["kind"],
        "status": entry["status"],
        "failure": failure,
        "trans_id": entry.get("trans_id"),
        "source_ip": entry["source_ip"],
        "received_at": entry["received_at"].astimezone(UTC).isoformat(),
        "attempts": entry["attempts"],
        "errors": entry.get("errors"),
        "body": entry["body"],
        "body_encoding": entry["body_encoding"],
        "replays": [
            {
                "by": item["by"],
                "reason": item["reason"],
                "at": item["at"].astimezone(UTC).isoformat(),
            }
            for item in entry.get("replays", [])
        ],
        "dismissal": _dismissal(entry.get("dismissal")),
    }


def _dismissal(dismissal: dict[str, Any] | None) -> dict[str, Any] | None:
    if dismissal is None:
        return None
    return {**dismissal, "at": dismissal["at"].astimezone(UTC).isoformat()}


class AllocationStepSchema(Schema):
    status = answers.text()
    by = answers.text()
    reason = answers.text()
    policy_uuid = answers.text(nullable=True)
    at = answers.stamp()


class ReviewEntrySchema(Schema):
    inbox_id = answers.text()
    reason = answers.text()
    reason_text = answers.text(metadata={"description": "the reason in words"})
    at = answers.stamp()
    dismissed_by = answers.text(
        nullable=True, metadata={"description": "null while the flag is open"}
    )
    dismissed_reason = answers.text(nullable=True)
    dismissed_at = answers.stamp(nullable=True)


class RecoverySchema(Schema):
    source = answers.one_of(
        ["daraja_pull", "statement"],
        metadata={"description": "the provider record that brought the payment in"},
    )
    inbox_id = answers.text()
    missing = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "the confirmation's fields the record did not give"},
    )
    completed_by = answers.text(
        nullable=True, metadata={"description": "the confirmation that came later"}
    )


class C2BPaymentSchema(Schema):
    """What render_payment answers."""

    trans_id = answers.text(metadata={"example": "RKL51ZDR4F"})
    transaction_type = answers.text(metadata={"example": "Pay Bill"})
    bill_ref = answers.text(metadata={"example": "070707070"})
    amount = answers.amount()
    currency = answers.text()
    shortcode = answers.text()
    msisdn = answers.text(metadata={"example": "2547 ***** 149"})
    msisdn_form = answers.one_of(["clear", "masked", "hashed", "absent", "other"])
    payer_name = answers.text()
    trans_time = answers.stamp()
    received_at = answers.stamp()
    status = answers.one_of(PAYMENT_STATUSES)
    unmatched_reason = answers.text(nullable=True)
    reason_text = answers.text(
        nullable=True,
        metadata={
            "description": "unmatched_reason in words, with the amounts when it is about one",
            "example": "paid 350.00 KES; the policy needs 1500.00 KES",
        },
    )
    policy_uuid = answers.text(nullable=True)
    transaction_uuid = answers.text(nullable=True)
    receipt = answers.text(nullable=True)
    allocation_history = answers.list_of(AllocationStepSchema)
    review = answers.list_of(ReviewEntrySchema)
    needs_review = fields.Boolean(
        required=True, metadata={"description": "a review flag is not dismissed"}
    )
    # Set when M-Pesa's records (a pull, a statement), not its confirmation, stored it.
    recovered = answers.nested(RecoverySchema, nullable=True)


C2BPaymentPageSchema = answers.page_of(C2BPaymentSchema)


def render_payment(document: dict[str, Any]) -> dict[str, Any]:
    """A stored C2B payment as the API shows it."""
    return {
        "trans_id": document["trans_id"],
        "transaction_type": document["transaction_type"],
        "bill_ref": document["bill_ref"],
        "amount": format_amount(document["amount"], document["currency"]),
        "currency": document["currency"],
        "shortcode": document["shortcode"],
        "msisdn": document["msisdn"],
        "msisdn_form": document["msisdn_form"],
        "payer_name": document["payer_name"],
        "trans_time": document["trans_time"].astimezone(UTC).isoformat(),
        "received_at": document["received_at"].astimezone(UTC).isoformat(),
        "status": document["status"],
        "unmatched_reason": document.get("unmatched_reason"),
        "reason_text": unmatched_text(document),
        "policy_uuid": document.get("policy_uuid"),
        "transaction_uuid": document.get("transaction_uuid"),
        "receipt": document.get("receipt"),
        "allocation_history": [
            {
                "status": item["status"],
                "by": item["by"],
                "reason": item["reason"],
                "policy_uuid": item["policy_uuid"],
                "at": item["at"].astimezone(UTC).isoformat(),
            }
            for item in document.get("allocation_history", [])
        ],
        "review": [_review_flag(document, item) for item in document.get("review", [])],
        # Stored before flags could be dismissed (no review_open): any flag is open.
        "needs_review": document.get("review_open", bool(document.get("review"))),
        "recovered": _recovery(document.get("recovered")),
    }


def _review_flag(document: dict[str, Any], flag: dict[str, Any]) -> dict[str, Any]:
    dismissed_at = flag.get("dismissed_at")
    return {
        "inbox_id": flag["inbox_id"],
        "reason": flag["reason"],
        "reason_text": review_text(document, flag["reason"]),
        "at": flag["at"].astimezone(UTC).isoformat(),
        "dismissed_by": flag.get("dismissed_by"),
        "dismissed_reason": flag.get("dismissed_reason"),
        "dismissed_at": dismissed_at.astimezone(UTC).isoformat() if dismissed_at else None,
    }


def _recovery(recovery: dict[str, Any] | None) -> dict[str, Any] | None:
    if recovery is None:
        return None
    return {
        "source": recovery["source"],
        "inbox_id": recovery["inbox_id"],
        "missing": list(recovery["missing"]),
        "completed_by": recovery.get("completed_by"),
    }


# --- M-Pesa Express ------------------------------------------------------------


class StkPushRequestSchema(StrictSchema):
    policy_uuid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    # 07XXXXXXXX, 01XXXXXXXX, +2547..., 2547..., 2541... (spaces allowed); absent: the
    # insuree's phone.
    phone = fields.String(validate=validate.Length(min=1, max=20))
    amount = fields.String(required=True, validate=AMOUNT)


class StkCallbackItemSchema(Schema):
    Name = fields.String(required=True, metadata={"example": "MpesaReceiptNumber"})
    Value = fields.Raw(metadata={"description": "absent for Balance"})


class StkCallbackMetadataSchema(Schema):
    Item = fields.List(fields.Nested(StkCallbackItemSchema), required=True)


class StkCallbackResultSchema(Schema):
    MerchantRequestID = fields.String(required=True)
    CheckoutRequestID = fields.String(required=True)
    ResultCode = fields.Integer(required=True, metadata={"description": "0 paid; 1032 cancelled"})
    ResultDesc = fields.String(required=True)
    CallbackMetadata = fields.Nested(
        StkCallbackMetadataSchema, metadata={"description": "only when ResultCode is 0"}
    )


class StkCallbackBodySchema(Schema):
    stkCallback = fields.Nested(StkCallbackResultSchema, required=True)


class StkCallbackSchema(Schema):
    """Daraja's M-Pesa Express result callback (documentation: the raw body is kept)."""

    Body = fields.Nested(StkCallbackBodySchema, required=True)


class DarajaStkAnswerSchema(Schema):
    ResultCode = fields.Integer(
        required=True,
        validate=validate.OneOf([0, 1]),
        metadata={"description": "0 accepted; 1 only on errors"},
    )
    ResultDesc = answers.text(metadata={"example": "Accepted"})
