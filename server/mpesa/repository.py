"""C2B payments: every confirmed paybill payment, once per TransID."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from server.kernel.store import IndexSpec, Store
from server.mpesa.documents import C2BPayment, ReviewFlag
from server.notifications.documents import NOTICE_STATE

PAYMENTS = "c2b_payments"

# The list's sorts and filters (server.mpesa.schemas.PAYMENT_SORTS) each end with
# trans_id, the sort's tie-break, so a page is read from the index in order.
_NEWEST = [("trans_time", DESCENDING), ("trans_id", DESCENDING)]

INDEXES: list[IndexSpec] = [
    (PAYMENTS, [("trans_id", 1)], {"unique": True}),
    (PAYMENTS, _NEWEST, {}),
    (PAYMENTS, [("bill_ref", 1), *_NEWEST], {}),
    (PAYMENTS, [("status", 1), *_NEWEST], {}),
    (PAYMENTS, [("status", 1), ("received_at", 1)], {}),
    (PAYMENTS, [("shortcode", 1), *_NEWEST], {}),
    # The payer's number as M-Pesa sent it (clear, masked or hashed): the desk's search.
    (PAYMENTS, [("msisdn", 1), *_NEWEST], {}),
    (PAYMENTS, [("received_at", DESCENDING), ("trans_id", DESCENDING)], {}),
    (PAYMENTS, [("amount", 1), ("trans_id", 1)], {}),
    # Payments with a review flag not dismissed (NEEDS_REVIEW), newest first; and those
    # stored before the field, which start-up finds under its missing key
    # (C2BPaymentRepository.mark_open_reviews).
    (PAYMENTS, [("review_open", 1), *_NEWEST], {}),
]

# What a C2B payment can be: being applied to a policy, applied, waiting for an operator,
# or held (paid to a shortcode this gateway does not serve; never applied).
ALLOCATING, SETTLED, UNMATCHED, HELD = "allocating", "settled", "unmatched", "held"
PAYMENT_STATUSES = (ALLOCATING, SETTLED, UNMATCHED, HELD)

# The payments with a review flag no operator has dismissed (the review_open index).
NEEDS_REVIEW = {"review_open": True}
NO_REVIEW_NEEDED = {"review_open": {"$ne": True}}


class InsertOutcome(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same TransID, same content: a redelivery
    CONFLICT = "conflict"  # same TransID, different content


class C2BPaymentRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[C2BPayment] = store.collection(PAYMENTS)

    async def insert_once(self, payment: C2BPayment) -> tuple[InsertOutcome, C2BPayment]:
        """Insert unless the TransID is stored; then say whether it is the same payment."""
        try:
            await self.collection.insert_one(payment)
            return InsertOutcome.NEW, payment
        except DuplicateKeyError:
            existing = await self.collection.find_one({"trans_id": payment["trans_id"]})
        if existing is None:  # cannot happen with a unique index, kept loud if it does
            raise RuntimeError(f"duplicate key but no payment {payment['trans_id']}")
        same = existing["fingerprint"] == payment["fingerprint"]
        return (InsertOutcome.DUPLICATE if same else InsertOutcome.CONFLICT), existing

    async def add_notice(self, trans_id: str, notice: dict[str, Any]) -> None:
        """Give an unmatched payment the payer's notice, unless it carries one or had
        one (copied into the outbox)."""
        if notice:
            await self.collection.update_one(
                {"trans_id": trans_id, "status": UNMATCHED, NOTICE_STATE: {"$exists": False}},
                {"$set": notice},
            )

    async def complete_recovered(self, trans_id: str, confirmed: C2BPayment, inbox_id: str) -> None:
        """A payment stored from a provider's record gets what its late confirmation
        adds (names, balance, invoice); its allocation, status, time and number stay as
        they are (the record's number is the clear one; the confirmation's is masked)."""
        await self.collection.update_one(
            {"trans_id": trans_id, "recovered.completed_by": {"$exists": False}},
            {
                "$set": {
                    "payer_name": confirmed["payer_name"],
                    "invoice_number": confirmed["invoice_number"],
                    "org_balance": confirmed["org_balance"],
                    "third_party_trans_id": confirmed["third_party_trans_id"],
                    "recovered.completed_by": inbox_id,
                    "recovered.missing": [],
                }
            },
        )

    async def cores(self, trans_ids: list[str]) -> dict[str, tuple[int, str, str]]:
        """(amount, shortcode, account) of the stored payments among `trans_ids`."""
        cursor = self.collection.find(
            {"trans_id": {"$in": trans_ids}},
            {"trans_id": 1, "amount": 1, "shortcode": 1, "bill_ref": 1},
        )
        return {
            payment["trans_id"]: (payment["amount"], payment["shortcode"], payment["bill_ref"])
            for payment in await cursor.to_list(None)
        }

    async def flagged(self, trans_ids: list[str], reason: str) -> set[str]:
        """Which of `trans_ids` carry a review flag for `reason`."""
        if not trans_ids:
            return set()
        cursor = self.collection.find(
            {"trans_id": {"$in": trans_ids}, "review.reason": reason}, {"trans_id": 1}
        )
        return {payment["trans_id"] for payment in await cursor.to_list(None)}

    async def flag_for_review(
        self, trans_id: str, inbox_id: str, reason: str, at: datetime
    ) -> C2BPayment | None:
        # Once per delivery: processing the same inbox entry again adds no second flag.
        return await self.collection.find_one_and_update(
            {"trans_id": trans_id, "review.inbox_id": {"$ne": inbox_id}},
            {
                "$push": {"review": {"inbox_id": inbox_id, "reason": reason, "at": at}},
                "$set": {"review_open": True},
            },
            return_document=ReturnDocument.AFTER,
        )

    async def replace_review(
        self, trans_id: str, flags: list[ReviewFlag], review: list[ReviewFlag]
    ) -> C2BPayment | None:
        """Compare-and-set of the review flags: `review` replaces `flags`, as they were
        read, and none is open any more; None when they changed meanwhile (a flag added,
        or dismissed by another operator, whose who, when and why then stand)."""
        return await self.collection.find_one_and_update(
            {"trans_id": trans_id, "review": flags},
            {"$set": {"review": review, "review_open": False}},
            return_document=ReturnDocument.AFTER,
        )

    async def mark_open_reviews(self) -> int:
        """Give `review_open` to payments stored before it existed (once: the filter is
        served by the review_open index's missing key, empty after the first run). Their
        flags could not be dismissed then, so a payment with any flag is open."""
        missing: dict[str, Any] = {"review_open": {"$exists": False}}
        opened = await self.collection.update_many(
            {**missing, "review.0": {"$exists": True}}, {"$set": {"review_open": True}}
        )
        await self.collection.update_many(
            {**missing, "review.0": {"$exists": False}}, {"$set": {"review_open": False}}
        )
        return opened.modified_count

    async def get(self, trans_id: str) -> C2BPayment | None:
        return await self.collection.find_one({"trans_id": trans_id})

    async def move(
        self,
        trans_id: str,
        current: tuple[str, ...],
        target: str,
        at: datetime,
        changes: dict[str, Any] | None = None,
        event: dict[str, Any] | None = None,
    ) -> C2BPayment | None:
        """Compare-and-set of the payment's status; None when it was not in `current`."""
        update: dict[str, Any] = {"$set": {"status": target, "updated_at": at, **(changes or {})}}
        if event is not None:
            update["$push"] = {"allocation_history": {**event, "status": target, "at": at}}
        return await self.collection.find_one_and_update(
            {"trans_id": trans_id, "status": {"$in": list(current)}},
            update,
            return_document=ReturnDocument.AFTER,
        )

    async def page(
        self,
        query: dict[str, Any],
        limit: int,
        offset: int,
        sort: list[tuple[str, int]] | None = None,
    ) -> tuple[list[C2BPayment], int]:
        cursor = self.collection.find(query).sort(sort or _NEWEST).skip(offset).limit(limit)
        items = await cursor.to_list(None)
        return items, await self.collection.count_documents(query)
