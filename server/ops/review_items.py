"""What waits for an operator's look, in one list: paybill payments flagged for review
(a redelivery or a provider's record that differs, a receipt check that disagrees),
inbox entries that need review, failed or conflict, and premiums the insurance backend
(openIMIS) refused, newest first.

The two sources are read in order from their indexes and merged as they stream, so a
page costs at most `offset + limit` documents of each and keeps only `limit` of them."""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from typing import Any

from marshmallow import fields, validate

from server.inbox.repository import CONFLICT, FAILED, INBOX, NEEDS_REVIEW
from server.kernel.schemas import StrictSchema
from server.kernel.store import Store
from server.ledger.premium_writes import REFUSED
from server.ledger.repository import PREMIUMS
from server.mpesa import repository as payments
from server.ops.desk_items import (
    INBOX_ENTRY,
    PAYMENT,
    PREMIUM,
    DeskItemSchema,
    inbox_item,
    payment_item,
    premium_item,
)
from server.web import answer_schemas as answers

REVIEW_STATUSES = (NEEDS_REVIEW, FAILED, CONFLICT)
# Far enough for any backlog, short enough that a page never streams a whole collection.
MAX_OFFSET = 10_000
Item = tuple[tuple[datetime, str], dict[str, Any]]  # ((time, id), the rendered item)
Stream = AsyncGenerator[Item, None]


class ReviewQuerySchema(StrictSchema):
    kind = fields.String(
        validate=validate.OneOf((PAYMENT, INBOX_ENTRY, PREMIUM)),
        metadata={"description": "only these"},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class DeskReviewItemSchema(DeskItemSchema):
    reasons = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "why it waits: a payment's review flags, an entry's failure"},
    )


DeskReviewItemPageSchema = answers.page_of(DeskReviewItemSchema)


class ReviewItems:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def page(
        self, kind: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Items `offset` to `offset + limit` of the merged list, and its total."""
        sources: dict[str, tuple[str, dict[str, Any], str, str]] = {
            PAYMENT: (payments.PAYMENTS, payments.NEEDS_REVIEW, "trans_time", "trans_id"),
            INBOX_ENTRY: (INBOX, {"status": {"$in": list(REVIEW_STATUSES)}}, "received_at", "_id"),
            PREMIUM: (PREMIUMS, {"insurance_write.state": REFUSED}, "created_at", "_id"),
        }
        chosen = [source for name, source in sources.items() if kind in (None, name)]
        total = 0
        for collection, query, _, _ in chosen:
            total += await self.store.collection(collection).count_documents(query)
        streams = [self._stream(*source, offset + limit) for source in chosen]
        return await _merged(streams, offset, limit), total

    async def _stream(
        self, collection: str, query: dict[str, Any], at: str, key: str, count: int
    ) -> Stream:
        cursor = (
            self.store.collection(collection).find(query).sort([(at, -1), (key, -1)]).limit(count)
        )
        try:
            async for document in cursor:
                yield (document[at], document[key]), _render(collection, document)
        finally:
            closed = cursor.close()
            if inspect.isawaitable(closed):
                await closed


async def _merged(streams: list[Stream], offset: int, limit: int) -> list[dict[str, Any]]:
    """Items `offset` to `offset + limit` of the streams (each newest first), newest first."""
    heads: dict[int, Item] = {}
    for index, stream in enumerate(streams):
        head = await anext(stream, None)
        if head is not None:
            heads[index] = head
    page: list[dict[str, Any]] = []
    seen = 0
    while heads and len(page) < limit:
        newest = max(heads, key=lambda index: heads[index][0])
        item = heads.pop(newest)[1]
        following = await anext(streams[newest], None)
        if following is not None:
            heads[newest] = following
        if seen >= offset:
            page.append(item)
        seen += 1
    for stream in streams:
        await stream.aclose()
    return page


def _render(collection: str, document: Mapping[str, Any]) -> dict[str, Any]:
    if collection == payments.PAYMENTS:
        flags = [flag for flag in document.get("review", []) if "dismissed_at" not in flag]
        return {**payment_item(document), "reasons": [flag["reason"] for flag in flags]}
    if collection == PREMIUMS:
        refusal = document["insurance_write"].get("refusal", "")
        return {**premium_item(document), "reasons": [f"refused by openIMIS: {refusal}"]}
    return {**inbox_item(document), "reasons": [_entry_reason(document)]}


def _entry_reason(entry: Mapping[str, Any]) -> str:
    failure = entry.get("failure")
    if entry["status"] == FAILED and failure:
        return f"processing failed: {failure['type']}: {failure['message']}"
    if entry["status"] == CONFLICT:
        return "differs from the payment stored under its TransID"
    if entry.get("errors"):
        return f"unreadable: {entry['errors']}"
    return str(entry["status"])
