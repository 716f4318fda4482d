"""The exports, one definition each: collection, time field, filters (those of the
matching list, without paging), columns and row.

Every row has its ids, its times in ISO 8601 UTC, its amount as a decimal string with
the currency in a column of its own, its status, channel and provider, the insuree or
account it is for and its receipt. The filters are loaded by the same schemas over HTTP
and on the command line."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import fields, validate

from server.kernel.money import format_amount
from server.kernel.schemas import iso_stamp
from server.kernel.store import IndexSpec
from server.ledger import states
from server.ledger.repository import PREMIUMS, TRANSACTIONS
from server.mpesa.allocation import CHANNEL as C2B_CHANNEL
from server.mpesa.repository import (
    NEEDS_REVIEW,
    NO_REVIEW_NEEDED,
    PAYMENT_STATUSES,
    PAYMENTS,
    UNMATCHED,
)
from server.ops.exports import Export, ExportQuerySchema, Lookups
from server.reconciliation import items

# The windows and order of premiums and reconciliation items (those of payments and
# transactions are their lists' own indexes).
INDEXES: list[IndexSpec] = [
    (PREMIUMS, [("pay_date", 1), ("_id", 1)], {}),
    (items.ITEMS, [("at", 1), ("_id", 1)], {}),
]


def _stamp(value: datetime | None) -> str:
    return iso_stamp(value) or ""


def _amount(document: Mapping[str, Any], key: str = "amount") -> str:
    value = document.get(key)
    return "" if value is None else format_amount(value, document["currency"])


def _equal(filters: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: filters[key] for key in keys if key in filters}


# --- M-Pesa paybill payments, and those still unmatched ------------------------------


class UnmatchedExportQuerySchema(ExportQuerySchema):
    shortcode = fields.String(validate=validate.Length(max=12))
    bill_ref = fields.String(validate=validate.Length(max=40))
    needs_review = fields.Boolean()


class PaymentExportQuerySchema(UnmatchedExportQuerySchema):
    status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))


def payment_where(filters: Mapping[str, Any]) -> dict[str, Any]:
    query = _equal(filters, "shortcode", "bill_ref", "status", "currency")
    if "needs_review" in filters:  # a review flag no operator has dismissed
        query.update(NEEDS_REVIEW if filters["needs_review"] else NO_REVIEW_NEEDED)
    return query


def unmatched_where(filters: Mapping[str, Any]) -> dict[str, Any]:
    return {**payment_where(filters), "status": UNMATCHED}


PAYMENT_COLUMNS = (
    "trans_id",
    "trans_time",
    "received_at",
    "amount",
    "currency",
    "status",
    "channel",
    "provider",
    "account",
    "payer_name",
    "msisdn",
    "policy_uuid",
    "transaction_uuid",
    "receipt",
    "unmatched_reason",
    "needs_review",
    "recovered_by",
)
PAYMENT_FIELDS = (
    "trans_id",
    "trans_time",
    "received_at",
    "amount",
    "currency",
    "status",
    "shortcode",
    "bill_ref",
    "payer_name",
    "msisdn",
    "policy_uuid",
    "transaction_uuid",
    "receipt",
    "unmatched_reason",
    "review_open",
    "recovered",
)


def payment_row(payment: Mapping[str, Any], _: Lookups) -> list[str]:
    return [
        payment["trans_id"],
        _stamp(payment["trans_time"]),
        _stamp(payment.get("received_at")),
        _amount(payment),
        payment["currency"],
        payment["status"],
        C2B_CHANNEL,
        payment.get("shortcode", ""),
        payment.get("bill_ref", ""),
        payment.get("payer_name", ""),
        payment.get("msisdn", ""),
        payment.get("policy_uuid") or "",
        payment.get("transaction_uuid") or "",
        payment.get("receipt") or "",
        payment.get("unmatched_reason") or "",
        "yes" if payment.get("review_open") else "no",
        (payment.get("recovered") or {}).get("source", ""),
    ]


def unmatched_row(payment: Mapping[str, Any], lookups: Lookups) -> list[str]:
    """A payment's row, and since when it has been unmatched (its latest move there)."""
    moves = [
        event["at"]
        for event in payment.get("allocation_history", [])
        if event.get("status") == UNMATCHED
    ]
    return [*payment_row(payment, lookups), _stamp(moves[-1] if moves else None)]


PAYMENTS_EXPORT = Export(
    name="payments",
    summary="M-Pesa paybill payments, by their M-Pesa time",
    collection=PAYMENTS,
    time_field="trans_time",
    tiebreak="trans_id",
    filters=PaymentExportQuerySchema,
    columns=PAYMENT_COLUMNS,
    where=payment_where,
    row=payment_row,
    projection=PAYMENT_FIELDS,
)

UNMATCHED_EXPORT = Export(
    name="unmatched",
    summary="M-Pesa paybill payments unmatched now, by their M-Pesa time",
    collection=PAYMENTS,
    time_field="trans_time",
    tiebreak="trans_id",
    filters=UnmatchedExportQuerySchema,
    columns=(*PAYMENT_COLUMNS, "unmatched_since"),
    where=unmatched_where,
    row=unmatched_row,
    projection=(*PAYMENT_FIELDS, "allocation_history"),
)


# --- transactions of every channel --------------------------------------------------


class TransactionExportQuerySchema(ExportQuerySchema):
    status = fields.String(validate=validate.OneOf(states.STATES))
    channel = fields.String(validate=validate.Length(min=1, max=32))  # a registered one
    psp_uuid = fields.String(validate=validate.Length(max=64))
    policy_uuid = fields.String(validate=validate.Length(max=64))
    chf_id = fields.String(validate=validate.Length(max=20))


def transaction_where(filters: Mapping[str, Any]) -> dict[str, Any]:
    return _equal(filters, "status", "channel", "psp_uuid", "policy_uuid", "chf_id", "currency")


def transaction_row(transaction: Mapping[str, Any], lookups: Lookups) -> list[str]:
    provider = lookups.provider(transaction)
    settlement = transaction.get("settlement") or {}
    failure = transaction.get("failure") or {}
    return [
        transaction["_id"],
        _stamp(transaction["created_at"]),
        _stamp(transaction.get("paid_at")),
        _stamp(transaction.get("updated_at")),
        _amount(transaction),
        transaction["currency"],
        transaction["status"],
        transaction["channel"],
        provider,
        lookups.name(provider),
        transaction.get("provider_reference") or "",
        transaction.get("provider_confirmation") or "",
        transaction.get("chf_id", ""),
        transaction.get("policy_uuid", ""),
        settlement.get("status", ""),
        settlement.get("receipt") or "",
        settlement.get("premium_uuid") or "",
        failure.get("code", ""),
    ]


TRANSACTIONS_EXPORT = Export(
    name="transactions",
    summary="Transactions of every channel, by when they were made",
    collection=TRANSACTIONS,
    time_field="created_at",
    tiebreak="_id",
    filters=TransactionExportQuerySchema,
    columns=(
        "uuid",
        "created_at",
        "paid_at",
        "updated_at",
        "amount",
        "currency",
        "status",
        "channel",
        "provider",
        "provider_name",
        "provider_reference",
        "provider_confirmation",
        "chf_id",
        "policy_uuid",
        "settlement",
        "receipt",
        "premium_uuid",
        "failure",
    ),
    where=transaction_where,
    row=transaction_row,
    projection=(
        "_id",
        "created_at",
        "paid_at",
        "updated_at",
        "amount",
        "currency",
        "status",
        "channel",
        "psp_uuid",
        "provider_reference",
        "provider_confirmation",
        "chf_id",
        "policy_uuid",
        "settlement",
        "failure",
    ),
    channel_filter=True,
)


# --- premiums -------------------------------------------------------------------------


class PremiumExportQuerySchema(ExportQuerySchema):
    chf_id = fields.String(validate=validate.Length(max=20))
    policy_uuid = fields.String(validate=validate.Length(max=64))


def premium_where(filters: Mapping[str, Any]) -> dict[str, Any]:
    return _equal(filters, "chf_id", "policy_uuid", "currency")


def premium_row(premium: Mapping[str, Any], lookups: Lookups) -> list[str]:
    transaction = lookups.transactions.get(premium["transaction_uuid"], {})
    provider = lookups.provider(transaction)
    return [
        premium["_id"],
        _stamp(premium["pay_date"]),
        _stamp(premium.get("created_at")),
        _amount(premium),
        premium["currency"],
        premium.get("chf_id", ""),
        premium.get("policy_uuid", ""),
        premium["transaction_uuid"],
        transaction.get("channel", ""),
        provider,
        lookups.name(provider),
        transaction.get("provider_reference") or "",
        premium.get("receipt", ""),
        premium.get("pay_type", ""),
    ]


PREMIUMS_EXPORT = Export(
    name="premiums",
    summary="Premiums paid, by their pay date",
    collection=PREMIUMS,
    time_field="pay_date",
    tiebreak="_id",
    filters=PremiumExportQuerySchema,
    columns=(
        "premium_uuid",
        "pay_date",
        "created_at",
        "amount",
        "currency",
        "chf_id",
        "policy_uuid",
        "transaction_uuid",
        "channel",
        "provider",
        "provider_name",
        "provider_reference",
        "receipt",
        "pay_type",
    ),
    where=premium_where,
    row=premium_row,
    projection=(
        "_id",
        "pay_date",
        "created_at",
        "amount",
        "currency",
        "chf_id",
        "policy_uuid",
        "transaction_uuid",
        "receipt",
        "pay_type",
    ),
    joins_transactions=True,
)


# --- reconciliation items -------------------------------------------------------------


class ReconciliationExportQuerySchema(ExportQuerySchema):
    channel = fields.String(validate=validate.Length(min=1, max=32))  # a registered one
    provider = fields.String(validate=validate.Length(min=1, max=64))
    outcome = fields.String(validate=validate.OneOf(items.OUTCOMES))
    recovered = fields.Boolean(metadata={"description": "recovered by a check, or not"})
    open = fields.Boolean(metadata={"description": "open (not matched and not cleared), or not"})


def item_where(filters: Mapping[str, Any]) -> dict[str, Any]:
    query = _equal(filters, "channel", "provider", "outcome", "currency")
    if "recovered" in filters:
        query["recovered_by"] = {"$ne": None} if filters["recovered"] else None
    if filters.get("open") is True:
        query["$and"] = [{"outcome": {"$in": list(items.OPEN_OUTCOMES)}}, {"cleared_at": None}]
    elif filters.get("open") is False:
        query["$or"] = [{"outcome": items.MATCHED}, {"cleared_at": {"$ne": None}}]
    return query


def item_row(item: Mapping[str, Any], lookups: Lookups) -> list[str]:
    return [
        item["_id"],
        item["day"],
        _stamp(item["at"]),
        item["channel"],
        item["provider"],
        lookups.name(item["provider"]),
        item["key"],
        item["currency"],
        _amount(item),
        _amount(item, "amount_here"),
        item["outcome"],
        item.get("recovered_by") or "",
        item.get("detail") or "",
        " ".join(item.get("sources") or []),
        _stamp(item.get("checked_at")),
        _stamp(item.get("cleared_at")),
        item.get("cleared_by") or "",
        item.get("cleared_reason") or "",
    ]


RECONCILIATION_EXPORT = Export(
    name="reconciliation",
    summary="Reconciliation items (each payment a check looked at), by payment time",
    collection=items.ITEMS,
    time_field="at",
    tiebreak="_id",
    filters=ReconciliationExportQuerySchema,
    columns=(
        "id",
        "day",
        "at",
        "channel",
        "provider",
        "provider_name",
        "key",
        "currency",
        "amount",
        "amount_here",
        "outcome",
        "recovered_by",
        "detail",
        "sources",
        "checked_at",
        "cleared_at",
        "cleared_by",
        "cleared_reason",
    ),
    where=item_where,
    row=item_row,
    projection=(
        "_id",
        "day",
        "at",
        "channel",
        "provider",
        "key",
        "currency",
        "amount",
        "amount_here",
        "outcome",
        "recovered_by",
        "detail",
        "sources",
        "checked_at",
        "cleared_at",
        "cleared_by",
        "cleared_reason",
    ),
    channel_filter=True,
)

EXPORTS: dict[str, Export] = {
    export.name: export
    for export in (
        PAYMENTS_EXPORT,
        UNMATCHED_EXPORT,
        TRANSACTIONS_EXPORT,
        PREMIUMS_EXPORT,
        RECONCILIATION_EXPORT,
    )
}
