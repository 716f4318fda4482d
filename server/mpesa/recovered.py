"""Payments M-Pesa's own records show: a Pull Transactions row or an org-portal statement
row, read as the confirmation Daraja would have sent, with the fields such a record
cannot give named.

A recovered record is written to the inbox as `{"ShortCode": ..., "Record": {...}}`
(the record exactly as the provider gave it, and the shortcode it was asked for), and
processed by the same path as a confirmation (server.mpesa.service)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError

from server.kernel.identifiers import SHORTCODE, TRANS_ID, Identifier
from server.mpesa.schemas import NAIROBI, C2BCallback

# Inbox sources of recovered records, and their kind.
PULL_SOURCE = "daraja_pull"
STATEMENT_SOURCE = "statement"
RECORD_KIND = "transaction"

# What a confirmation carries that a record never does.
PULL_MISSING = (
    "FirstName",
    "MiddleName",
    "LastName",
    "InvoiceNumber",
    "OrgAccountBalance",
    "ThirdPartyTransID",
)
STATEMENT_MISSING = ("MiddleName", "InvoiceNumber", "ThirdPartyTransID")

# Pull Transactions' transaction types, as a confirmation names them.
PULL_TYPES = {"c2b-pay-bill-debit": "Pay Bill", "c2b-buy-goods-debit": "Buy Goods"}
# The org portal's reason types.
STATEMENT_TYPES = {"pay bill online": "Pay Bill", "buy goods online": "Buy Goods"}
STATEMENT_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class RecoveredRecord:
    """A provider record as a confirmation, and the confirmation fields it lacks."""

    source: str
    callback: C2BCallback
    missing: tuple[str, ...]


def record_body(shortcode: str, record: Mapping[str, Any]) -> bytes:
    """The inbox body of a recovered record."""
    return json.dumps({"ShortCode": shortcode, "Record": dict(record)}).encode()


def read_record(source: str, raw: bytes) -> RecoveredRecord:
    """An inbox body of `record_body`, read; ValidationError names what is unreadable."""
    try:
        body = json.loads(raw, parse_float=str, parse_int=str)
    except (ValueError, RecursionError):
        raise ValidationError("body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("Record"), dict):
        raise ValidationError("body must be an object with a Record object")
    shortcode = _identifier(SHORTCODE, body.get("ShortCode"), "ShortCode")
    if source == PULL_SOURCE:
        return pull_record(shortcode, body["Record"])
    if source == STATEMENT_SOURCE:
        return statement_record(shortcode, body["Record"])
    raise ValidationError(f"no record format for source {source!r}")


def pull_record(shortcode: str, row: Mapping[str, Any]) -> RecoveredRecord:
    """A Pull Transactions row (keys in any case): transactionId, trxDate, msisdn,
    sender, transactiontype, billreference, amount."""
    fields = {str(key).lower(): value for key, value in row.items()}
    sender = _text(fields.get("sender"))
    callback = C2BCallback(
        trans_id=_identifier(TRANS_ID, fields.get("transactionid"), "transactionId"),
        transaction_type=PULL_TYPES.get(
            _text(fields.get("transactiontype")).lower(), _text(fields.get("transactiontype"))
        ),
        trans_time=_pull_time(_text(fields.get("trxdate"))),
        trans_amount=_required(fields.get("amount"), "amount"),
        shortcode=shortcode,
        bill_ref=_text(fields.get("billreference")).strip(),
        invoice_number="",
        org_balance="",
        third_party_trans_id="",
        msisdn=_text(fields.get("msisdn")),
        # A sender that is a name is kept whole; one that repeats the number is not a name.
        first_name="" if sender.lstrip("+").isdigit() else sender,
        middle_name="",
        last_name="",
    )
    return RecoveredRecord(PULL_SOURCE, callback, PULL_MISSING)


def statement_record(shortcode: str, row: Mapping[str, Any]) -> RecoveredRecord:
    """A statement row paid in (server.reconciliation reads the file): Receipt No.,
    Completion Time, Paid In, Reason Type, Other Party Info ("2547... - NAME"), A/C No."""
    phone, _, name = _text(row.get("Other Party Info")).partition(" - ")
    reason = _text(row.get("Reason Type"))
    callback = C2BCallback(
        trans_id=_identifier(TRANS_ID, row.get("Receipt No."), "Receipt No."),
        transaction_type=STATEMENT_TYPES.get(reason.lower(), reason),
        trans_time=_statement_time(_text(row.get("Completion Time"))),
        trans_amount=_required(row.get("Paid In"), "Paid In"),
        shortcode=shortcode,
        bill_ref=_text(row.get("A/C No.")).strip(),
        invoice_number="",
        org_balance=_text(row.get("Balance")),
        third_party_trans_id="",
        msisdn=phone.strip(),
        first_name=name.strip(),
        middle_name="",
        last_name="",
    )
    return RecoveredRecord(STATEMENT_SOURCE, callback, STATEMENT_MISSING)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _required(value: Any, name: str) -> str:
    text = _text(value).strip()
    if not text:
        raise ValidationError(f"{name} is missing", name)
    return text


def _identifier(rule: Identifier, value: Any, name: str) -> str:
    normalised = rule.normalise(_required(value, name))
    if not rule.is_valid(normalised):
        raise ValidationError(f"{name} must be {rule.allowed}", name)
    return normalised


def _pull_time(text: str) -> datetime:
    """`2026-12-01T08:15:32.000+03:00`; without an offset, Nairobi time."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=NAIROBI)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # Overflow: the calendar's edges (0001-01-01)
        raise ValidationError("trxDate is not a date and time", "trxDate") from None


def _statement_time(text: str) -> datetime:
    try:
        local = datetime.strptime(text.strip(), STATEMENT_TIME)
        return local.replace(tzinfo=NAIROBI).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationError(
            "Completion Time must be YYYY-MM-DD HH:MM:SS", "Completion Time"
        ) from None
