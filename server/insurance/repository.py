"""Insurees, products and policies collections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from server.kernel.documents import DocumentRepository
from server.kernel.store import IndexSpec

INSUREES, PRODUCTS, POLICIES = "insurees", "products", "policies"

# openIMIS policy status codes.
IDLE, ACTIVE, SUSPENDED, EXPIRED, READY = 1, 2, 4, 8, 16
POLICY_STATUSES = (IDLE, ACTIVE, SUSPENDED, EXPIRED, READY)

INDEXES: list[IndexSpec] = [
    (INSUREES, [("chf_id", 1)], {"unique": True}),
    (PRODUCTS, [("code", 1)], {"unique": True}),
    (POLICIES, [("chf_id", 1), ("status", 1)], {}),
    # Opaque per-policy token handed to payment providers instead of the policy id.
    (POLICIES, [("payment_token", 1)],
     {"unique": True, "partialFilterExpression": {"payment_token": {"$type": "string"}}}),
]


class InsureeRepository(DocumentRepository):
    collection_name = INSUREES


class ProductRepository(DocumentRepository):
    collection_name = PRODUCTS


class PolicyRepository(DocumentRepository):
    collection_name = POLICIES

    async def activate(self, policy_uuid: str, transaction_uuid: str, effective: datetime,
                       at: datetime) -> dict[str, Any] | None:
        """Idle -> active, as one compare-and-set; None when the policy was not idle."""
        return await self.collection.find_one_and_update(
            {"_id": policy_uuid, "status": IDLE},
            {"$set": {"status": ACTIVE, "effective_date": effective,
                      "activated_by": transaction_uuid, "updated_at": at}},
            return_document=ReturnDocument.AFTER)
