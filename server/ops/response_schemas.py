"""Marshmallow descriptions of the API's answers, used only for the OpenAPI document.

The answers themselves are built by the render_* functions next to each package's
request schemas (and by the dashboard); each schema here mirrors one of them key for
key. A key the function always writes is `required`, a value it may leave empty is
`allow_none`, and unknown keys are refused, so the tests can check real answers
against the document and notice when the two drift apart."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from server.insurance.repository import POLICY_STATUSES
from server.ledger.schemas import CHANNELS
from server.ledger.states import STATES
from server.mpesa.rules import (
    INVALID_ACCOUNT,
    INVALID_AMOUNT,
    INVALID_KYC,
    INVALID_MSISDN,
    INVALID_SHORTCODE,
    OTHER_ERROR,
)
from server.mpesa.schemas import INBOX_STATUSES, PAYMENT_STATUSES
from server.psps.repository import KINDS


def _text(*, nullable: bool = False, **kwargs: Any) -> fields.String:
    return fields.String(required=True, allow_none=nullable, **kwargs)


def _one_of(values: tuple | list, *, nullable: bool = False, **kwargs: Any) -> fields.String:
    return _text(nullable=nullable, validate=validate.OneOf(values), **kwargs)


def _count() -> fields.Integer:
    return fields.Integer(required=True)


def _amount() -> fields.String:
    return _text(metadata={"description": "decimal string with the currency's places",
                           "example": "500.00"})


def _stamp(*, nullable: bool = False, **kwargs: Any) -> fields.DateTime:
    return fields.DateTime(required=True, allow_none=nullable, **kwargs)


def _day(*, nullable: bool = False) -> fields.Date:
    return fields.Date(required=True, allow_none=nullable)


def _policy_status(*, nullable: bool = False) -> fields.Integer:
    return fields.Integer(required=True, allow_none=nullable,
                          validate=validate.OneOf(POLICY_STATUSES),
                          metadata={"description": "openIMIS policy status: 1 idle, 2 active, "
                                                   "4 suspended, 8 expired, 16 ready"})


def _nested(schema: type[Schema], *, nullable: bool = False) -> fields.Nested:
    return fields.Nested(schema, required=True, allow_none=nullable)


def _list_of(schema: type[Schema]) -> fields.List:
    return fields.List(fields.Nested(schema), required=True)


# --- errors ---------------------------------------------------------------


class ErrorBodySchema(Schema):
    code = _text(metadata={"example": "validation_error"})
    message = _text(metadata={"example": "request body is invalid"})
    details = fields.Dict(required=True, metadata={
        "description": "more about the error, e.g. `fields` naming the invalid fields"})


class ErrorSchema(Schema):
    """The single error shape of every endpoint except the Daraja callbacks."""

    error = _nested(ErrorBodySchema)


# --- Daraja callbacks (Daraja's own answer format) ------------------------

VALIDATION_RESULT_CODES = ["0", INVALID_MSISDN, INVALID_ACCOUNT, INVALID_AMOUNT, INVALID_KYC,
                           INVALID_SHORTCODE, OTHER_ERROR]


class DarajaValidationAnswerSchema(Schema):
    ResultCode = _one_of(VALIDATION_RESULT_CODES)
    ResultDesc = _text(metadata={"example": "Accepted"})


class DarajaConfirmationAnswerSchema(Schema):
    ResultCode = fields.Integer(required=True, validate=validate.OneOf([0, 1]),
                                metadata={"description": "0 received; 1 only on errors"})
    ResultDesc = _text(metadata={"example": "Success"})


# --- pages ----------------------------------------------------------------


class PageSchema(Schema):
    """What every list endpoint answers; subclasses say what the items are."""

    total = _count()
    limit = _count()
    offset = _count()


# --- C2B payments and inbox (server/mpesa/schemas.py) ---------------------


class AllocationStepSchema(Schema):
    status = _text()
    by = _text()
    reason = _text()
    policy_uuid = _text(nullable=True)
    at = _stamp()


class ReviewEntrySchema(Schema):
    inbox_id = _text()
    reason = _text()
    at = _stamp()


class C2BPaymentSchema(Schema):
    trans_id = _text(metadata={"example": "RKL51ZDR4F"})
    transaction_type = _text(metadata={"example": "Pay Bill"})
    bill_ref = _text(metadata={"example": "070707070"})
    amount = _amount()
    currency = _text()
    shortcode = _text()
    msisdn = _text(metadata={"example": "2547 ***** 149"})
    msisdn_form = _one_of(["clear", "masked", "hashed", "absent", "other"])
    payer_name = _text()
    trans_time = _stamp()
    received_at = _stamp()
    status = _one_of(PAYMENT_STATUSES)
    unmatched_reason = _text(nullable=True)
    policy_uuid = _text(nullable=True)
    transaction_uuid = _text(nullable=True)
    receipt = _text(nullable=True)
    allocation_history = _list_of(AllocationStepSchema)
    review = _list_of(ReviewEntrySchema)


class C2BPaymentPageSchema(PageSchema):
    items = _list_of(C2BPaymentSchema)


class InboxReplaySchema(Schema):
    by = _text()
    reason = _text()
    at = _stamp()


class InboxEntrySchema(Schema):
    id = _text()
    kind = _one_of(["validation", "confirmation"])
    status = _one_of(INBOX_STATUSES)
    trans_id = _text(nullable=True)
    source_ip = _text()
    received_at = _stamp()
    attempts = _count()
    errors = fields.Raw(required=True, allow_none=True,
                        metadata={"description": "why the body could not be read"})
    body = _text(metadata={"description": "the raw body, as text or base64"})
    body_encoding = _one_of(["utf-8", "base64"])
    replays = _list_of(InboxReplaySchema)


class InboxEntryPageSchema(PageSchema):
    items = _list_of(InboxEntrySchema)


# --- transactions (server/ledger/schemas.py) ------------------------------


class FailureSchema(Schema):
    code = _text()
    message = _text()


class SettlementSchema(Schema):
    status = _one_of(["settled", "refused"])
    reason = _text(nullable=True)
    premium_uuid = _text(nullable=True)
    receipt = _text(nullable=True)
    policy_status = _policy_status(nullable=True)
    effective_date = _day(nullable=True)
    settled_at = _stamp()


class TransitionSchema(Schema):
    from_ = _one_of(STATES, nullable=True, data_key="from")
    to = _one_of(STATES)
    at = _stamp()
    reason = _text()
    actor = _text()


class TransactionSchema(Schema):
    uuid = _text()
    channel = _one_of(CHANNELS)
    status = _one_of(STATES)
    amount = _amount()
    currency = _text()
    policy_uuid = _text()
    chf_id = _text()
    psp_uuid = _text(nullable=True)
    provider_reference = _text(nullable=True)
    failure = _nested(FailureSchema, nullable=True)
    settlement = _nested(SettlementSchema, nullable=True)
    created_by = _text(nullable=True)
    created_at = _stamp()
    updated_at = _stamp()
    history = _list_of(TransitionSchema)
    otp_attempts = fields.Integer(metadata={"description": "Qmoney debits only"})
    otp_expires_at = fields.DateTime(allow_none=True,
                                     metadata={"description": "Qmoney debits only"})


class TransactionPageSchema(PageSchema):
    items = _list_of(TransactionSchema)


# --- payment-provider API (server/psp_api/schemas.py) ---------------------


class PayablePolicySchema(Schema):
    token = _text(metadata={"description": "opaque; names the policy in a payment"})
    product_code = _text()
    product_name = _text()
    amount = _amount()
    currency = _text()
    status = _policy_status()


class VerificationSchema(Schema):
    chf_id = _text()
    first_name = _text()
    last_name = _text()
    policies = _list_of(PayablePolicySchema)
    message = fields.String(metadata={"description": "only when nothing awaits payment"})


class PremiumSchema(Schema):
    uuid = _text()
    amount = _amount()
    currency = _text()
    pay_date = _stamp()
    pay_type = _one_of(["M"])


class PaidPolicySchema(Schema):
    status = _policy_status()
    effective_date = _day()


class ProviderPaymentSchema(Schema):
    payment_id = _text()
    psp_transaction_id = _text()
    status = _one_of(STATES)
    chf_id = _text()
    amount = _amount()
    currency = _text()
    receipt = _text()
    premium = _nested(PremiumSchema)
    policy = _nested(PaidPolicySchema)


# --- admin resources (server/insurance/schemas.py, server/psps/schemas.py) --


class InsureeSchema(Schema):
    chf_id = _text()
    first_name = _text()
    last_name = _text()
    phone = _text()
    wallet = _text(metadata={"description": "Qmoney wallet; empty when none"})
    created_at = _stamp()


class InsureePageSchema(PageSchema):
    items = _list_of(InsureeSchema)


class ProductSchema(Schema):
    code = _text()
    name = _text()
    price = _amount()
    currency = _text()


class ProductPageSchema(PageSchema):
    items = _list_of(ProductSchema)


class PolicySchema(Schema):
    uuid = _text()
    chf_id = _text()
    product_code = _text()
    product_name = _text()
    amount = _amount()
    currency = _text()
    status = _policy_status()
    start_date = _day()
    effective_date = _day(nullable=True)
    expiry_date = _day(nullable=True)
    created_at = _stamp()


class PolicyPageSchema(PageSchema):
    items = _list_of(PolicySchema)


class PspSchema(Schema):
    uuid = _text()
    name = _text()
    kind = _one_of(KINDS)
    account = _text()
    currency = _text()
    is_external_api = fields.Boolean(required=True)
    username = _text(nullable=True)
    has_pin = fields.Boolean(required=True, metadata={"description": "the PIN is write-only"})
    active = fields.Boolean(required=True)
    created_at = _stamp()


class PspPageSchema(PageSchema):
    items = _list_of(PspSchema)


# --- operations (server/ops/dashboard.py, server/ops/handlers.py) --------


class HealthSchema(Schema):
    status = _one_of(["ok"])


class ReadinessSchema(Schema):
    status = _one_of(["ready"])


class DashboardWindowSchema(Schema):
    from_ = _stamp(data_key="from")
    to = _stamp()
    bucket = _one_of(["hour", "day"])


class CurrencyTotalSchema(Schema):
    currency = _text()
    amount = _amount()
    count = _count()


class ChannelFigureSchema(Schema):
    channel = _one_of(CHANNELS)
    currency = _text()
    amount = _amount()
    count = _count()
    succeeded = _count()
    failed = _count()
    success_rate = fields.Float(required=True, allow_none=True,
                                metadata={"description": "succeeded over finished; null "
                                                         "when none finished"})


class PspFigureSchema(Schema):
    psp_uuid = _text()
    psp_name = _text()
    currency = _text()
    amount = _amount()
    count = _count()


class StatusCountSchema(Schema):
    status = _one_of(STATES)
    count = _count()


class SeriesPointSchema(Schema):
    start = _stamp()
    currency = _text()
    amount = _amount()
    count = _count()


class UnmatchedItemSchema(Schema):
    trans_id = _text()
    bill_ref = _text()
    amount = _amount()
    currency = _text()
    reason = _text(nullable=True)
    received_at = _stamp()


class ReviewItemSchema(Schema):
    trans_id = _text()
    amount = _amount()
    currency = _text()
    reason = _text()
    received_at = _stamp()


class StuckDebitItemSchema(Schema):
    uuid = _text()
    status = _one_of(STATES)
    channel = _one_of(CHANNELS)
    amount = _amount()
    currency = _text()
    chf_id = _text()
    updated_at = _stamp()


class FailedInboxItemSchema(Schema):
    id = _text()
    kind = _one_of(["validation", "confirmation"])
    status = _one_of(INBOX_STATUSES)
    received_at = _stamp()


class UnmatchedAttentionSchema(Schema):
    count = _count()
    oldest = _list_of(UnmatchedItemSchema)


class ReviewAttentionSchema(Schema):
    count = _count()
    oldest = _list_of(ReviewItemSchema)


class StuckDebitAttentionSchema(Schema):
    count = _count()
    oldest = _list_of(StuckDebitItemSchema)


class FailedInboxAttentionSchema(Schema):
    count = _count()
    oldest = _list_of(FailedInboxItemSchema)


class AttentionSchema(Schema):
    c2b_unmatched = _nested(UnmatchedAttentionSchema)
    c2b_needs_review = _nested(ReviewAttentionSchema)
    stuck_debits = _nested(StuckDebitAttentionSchema)
    failed_inbox = _nested(FailedInboxAttentionSchema)


class LastErrorSchema(Schema):
    at = _stamp()
    message = _text()


class ProviderHealthSchema(Schema):
    provider = _text()
    endpoint = _text()
    count = _count()
    error_rate = fields.Float(required=True)
    p50_ms = fields.Float(required=True, allow_none=True)
    p95_ms = fields.Float(required=True, allow_none=True)
    last_error = _nested(LastErrorSchema, nullable=True)


class DashboardSchema(Schema):
    window = _nested(DashboardWindowSchema)
    currency = _text(nullable=True)
    totals = _list_of(CurrencyTotalSchema)
    by_channel = _list_of(ChannelFigureSchema)
    by_psp = _list_of(PspFigureSchema)
    by_status = _list_of(StatusCountSchema)
    series = _list_of(SeriesPointSchema)
    attention = _nested(AttentionSchema)
    providers = _list_of(ProviderHealthSchema)
