"""The desk's search across channels: one typed text, asked of every source by the
exact keys it can be (server.ops.search_keys), each lookup an equality on an indexed
field and at most `limit` documents; the answers merged newest first.

Sources and keys: paybill payments by TransID, account number and the payer's number
(clear, masked or hashed); transactions of every channel by id, provider reference
(a PSP's transaction id, an M-Pesa Express CheckoutRequestID), provider receipt (the
M-Pesa receipt of an M-Pesa Express debit, a Qmoney confirmation), insuree number and
payer (phone, wallet); insurees by number and phone; inbox entries, premiums and
policies by id; premiums by receipt."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import Schema, fields, pre_load, validate

from server.debits.registry import Channel
from server.inbox.repository import INBOX
from server.insurance.repository import INSUREES, POLICIES
from server.kernel.schemas import StrictSchema
from server.kernel.store import Store
from server.ledger.repository import PREMIUMS, TRANSACTIONS
from server.mpesa.repository import PAYMENTS
from server.ops import desk_items
from server.ops.desk_items import DeskItemSchema
from server.ops.search_keys import SearchKeys, search_keys
from server.web import answer_schemas as answers

# What matched, per item: the key the text was read as.
MATCHES = (
    "trans_id",
    "account",
    "phone",
    "phone_masked",
    "phone_hashed",
    "insuree_number",
    "provider_reference",
    "provider_receipt",
    "payer",
    "receipt",
    "id",
)
NEWEST = {
    PAYMENTS: [("trans_time", -1), ("trans_id", -1)],
    TRANSACTIONS: [("created_at", -1), ("_id", -1)],
    INSUREES: [("chf_id", 1)],
    INBOX: [("received_at", -1), ("_id", -1)],
    PREMIUMS: [("created_at", -1), ("_id", -1)],
    POLICIES: [("created_at", -1), ("_id", -1)],
}
TIME_FIELD = {
    PAYMENTS: "trans_time",
    TRANSACTIONS: "created_at",
    INSUREES: "created_at",
    INBOX: "received_at",
    PREMIUMS: "created_at",
    POLICIES: "created_at",
}


class SearchQuerySchema(StrictSchema):
    q = fields.String(
        required=True,
        validate=validate.Length(min=3, max=100),
        metadata={
            "description": "a TransID or receipt, an insuree number or account, a phone "
            "number (any common form; also `2547 ***** 149` or a SHA-256 digest), a "
            "provider's transaction id, a transaction, policy, premium or inbox entry id; "
            "3-100 characters"
        },
    )
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))

    @pre_load
    def strip(self, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        data = dict(data)
        if isinstance(data.get("q"), str):
            data["q"] = data["q"].strip()
        return data


class SearchItemSchema(DeskItemSchema):
    match = answers.one_of(
        MATCHES,
        metadata={
            "description": "what the text was read as; `phone_masked`: the payer's number "
            "M-Pesa masked has the same first four and last three digits, so it is only "
            "possibly the number typed"
        },
    )


class SearchAnswerSchema(Schema):
    items = answers.list_of(SearchItemSchema)
    query = answers.text(metadata={"description": "the text searched, as typed"})


@dataclass(frozen=True)
class Lookup:
    """One equality query of one collection, and what a match of it means."""

    collection: str
    query: dict[str, Any]
    match: Callable[[Mapping[str, Any]], str]


class Search:
    def __init__(self, store: Store, channels: Sequence[Channel]) -> None:
        self.store = store
        self.labels = {channel.name: channel.label for channel in channels}

    async def find(self, text: str, limit: int) -> list[dict[str, Any]]:
        """The items `text` names, newest first, at most `limit`."""
        lookups = _lookups(search_keys(text))
        found = await asyncio.gather(*(self._run(lookup, limit) for lookup in lookups))
        items: dict[tuple[str, str], tuple[datetime, dict[str, Any]]] = {}
        for lookup, documents in zip(lookups, found, strict=True):
            for document in documents:
                item = self._render(lookup.collection, document)
                item["match"] = lookup.match(document)
                at = document[TIME_FIELD[lookup.collection]]
                items.setdefault((item["kind"], item["id"]), (at, item))
        newest = sorted(items.values(), key=lambda pair: pair[0], reverse=True)
        return [item for _, item in newest[:limit]]

    async def _run(self, lookup: Lookup, limit: int) -> list[dict[str, Any]]:
        cursor = (
            self.store.collection(lookup.collection)
            .find(lookup.query)
            .sort(NEWEST[lookup.collection])
            .limit(limit)
        )
        documents: list[dict[str, Any]] = await cursor.to_list(None)
        return documents

    def _render(self, collection: str, document: Mapping[str, Any]) -> dict[str, Any]:
        if collection == PAYMENTS:
            return desk_items.payment_item(document)
        if collection == TRANSACTIONS:
            label = self.labels.get(document["channel"], document["channel"])
            return desk_items.transaction_item(document, label)
        if collection == INSUREES:
            return desk_items.insuree_item(document)
        if collection == INBOX:
            return desk_items.inbox_item(document)
        if collection == PREMIUMS:
            return desk_items.premium_item(document)
        return desk_items.policy_item(document)


def _lookups(keys: SearchKeys) -> list[Lookup]:
    """Every lookup the keys allow, in the order a match is credited to them."""
    lookups: list[Lookup] = []

    def add(collection: str, field: str, values: Sequence[str], match: str) -> None:
        if values:
            query = {field: values[0] if len(values) == 1 else {"$in": list(values)}}
            lookups.append(Lookup(collection, query, lambda _document: match))

    phone = keys.phone
    if keys.uuid:
        for collection in (TRANSACTIONS, INBOX, PREMIUMS, POLICIES):
            add(collection, "_id", [keys.uuid], "id")
    if keys.trans_id:
        add(PAYMENTS, "trans_id", [keys.trans_id], "trans_id")
        add(TRANSACTIONS, "provider_confirmation", [keys.trans_id], "provider_receipt")
    if keys.receipt:
        add(PREMIUMS, "receipt", [keys.receipt], "receipt")
    add(TRANSACTIONS, "provider_reference", keys.references, "provider_reference")
    if keys.chf_id:
        add(INSUREES, "chf_id", [keys.chf_id], "insuree_number")
        add(TRANSACTIONS, "chf_id", [keys.chf_id], "insuree_number")
    if phone.msisdns:
        lookups.append(
            Lookup(PAYMENTS, {"msisdn": {"$in": list(phone.msisdns)}}, _phone_match(keys))
        )
    add(INSUREES, "phone", phone.clear, "phone")
    if keys.account:
        add(PAYMENTS, "bill_ref", [keys.account], "account")
    payers = list(dict.fromkeys([*phone.clear, *([keys.account] if keys.account else [])]))
    add(TRANSACTIONS, "payer", payers, "payer")
    return lookups


def _phone_match(keys: SearchKeys) -> Callable[[Mapping[str, Any]], str]:
    masked, hashed = set(keys.phone.masked), set(keys.phone.hashed)

    def match(payment: Mapping[str, Any]) -> str:
        if payment["msisdn"] in masked:
            return "phone_masked"
        return "phone_hashed" if payment["msisdn"] in hashed else "phone"

    return match
