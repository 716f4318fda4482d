"""Reconciliation items: one per payment a provider's record was checked against
(collection `reconciliation_items`), whichever check found it (the M-Pesa pull, a
statement).

An item's `outcome` is what the latest check found: `matched` (the same payment here
and there), `differing` (amount, currency or account differ), `missing_here` (the
provider has it, the gateway had not and could not recover it), `missing_at_provider`
(recorded here only). `recovered_by` says which check brought a payment the gateway
lacked (then stored and settled like a confirmation; its outcome is `matched`). An item
other than matched is open until an operator clears it (`cleared_at`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from server.kernel.store import IndexSpec, Store
from server.mpesa.schemas import NAIROBI

ITEMS = "reconciliation_items"

MATCHED, DIFFERING, MISSING_HERE, MISSING_AT_PROVIDER = (
    "matched",
    "differing",
    "missing_here",
    "missing_at_provider",
)
OUTCOMES = (MATCHED, DIFFERING, MISSING_HERE, MISSING_AT_PROVIDER)
OPEN_OUTCOMES = (DIFFERING, MISSING_HERE, MISSING_AT_PROVIDER)

INDEXES: list[IndexSpec] = [
    (ITEMS, [("day", 1), ("channel", 1)], {}),
    (ITEMS, [("outcome", 1), ("cleared_at", 1), ("at", DESCENDING)], {}),
]


@dataclass(frozen=True)
class Item:
    """One payment as a check found it. `amount` is the provider's (minor units), or
    the gateway's when the provider does not have it; `amount_here` the gateway's."""

    channel: str  # mpesa_c2b, psp_api
    provider: str  # the shortcode, or the PSP's uuid
    key: str  # the receipt (TransID), or the PSP's transaction id
    at: datetime  # when the payment was made (UTC)
    currency: str
    amount: int
    amount_here: int | None
    outcome: str
    source: str  # daraja_pull, statement
    recovered: bool = False
    detail: str = ""


def business_day(moment: datetime) -> str:
    """The payment's day as the accountants count it: the date in Nairobi."""
    return moment.astimezone(NAIROBI).date().isoformat()


class ItemRepository:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.collection: AsyncCollection[dict[str, Any]] = store.collection(ITEMS)

    async def record(self, items: Iterable[Item], checked_at: datetime) -> int:
        """Upsert the items (one round trip against MongoDB); a recovered item keeps who
        recovered it through later checks. Returns how many were written."""
        updates = [_upsert(item, checked_at) for item in items]
        await self.store.upsert_many(ITEMS, updates)
        return len(updates)

    async def get(self, channel: str, key: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": item_id(channel, key)})

    async def clear(
        self, identifier: str, actor: str, reason: str, at: datetime
    ) -> dict[str, Any] | None:
        """An operator closes an open item (after correcting or accepting it); None when
        it is not open. A later check that finds it open again does not reopen it: the
        operator's word and the check's stay side by side."""
        return await self.collection.find_one_and_update(
            {"_id": identifier, "outcome": {"$in": list(OPEN_OUTCOMES)}, "cleared_at": None},
            {"$set": {"cleared_at": at, "cleared_by": actor, "cleared_reason": reason}},
            return_document=ReturnDocument.AFTER,
        )


def item_id(channel: str, key: str) -> str:
    return f"{channel}:{key}"


def _upsert(item: Item, checked_at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    fields: dict[str, Any] = {
        "channel": item.channel,
        "provider": item.provider,
        "key": item.key,
        "at": item.at,
        "day": business_day(item.at),
        "currency": item.currency,
        "amount": item.amount,
        "amount_here": item.amount_here,
        "outcome": item.outcome,
        "detail": item.detail,
        "checked_at": checked_at,
        "checked_by": item.source,
    }
    if item.recovered:
        fields["recovered_by"] = item.source
    return (
        {"_id": item_id(item.channel, item.key)},
        {
            "$set": fields,
            "$addToSet": {"sources": item.source},
            "$setOnInsert": {"first_checked_at": checked_at, "cleared_at": None},
        },
    )
