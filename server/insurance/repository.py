"""Insurees, products and policies collections."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from pymongo import ReturnDocument

from server.insurance.documents import Insuree, Policy, Product
from server.kernel.documents import DocumentRepository
from server.kernel.store import IndexSpec

INSUREES, PRODUCTS, POLICIES = "insurees", "products", "policies"

# openIMIS policy status codes.
IDLE, ACTIVE, SUSPENDED, EXPIRED, READY = 1, 2, 4, 8, 16
POLICY_STATUSES = (IDLE, ACTIVE, SUSPENDED, EXPIRED, READY)

INDEXES: list[IndexSpec] = [
    (INSUREES, [("chf_id", 1)], {"unique": True}),
    (INSUREES, [("phone", 1)], {}),  # the desk's search by phone
    # An operator's search by name (server.insurance.search): a range of either index.
    (INSUREES, [("last_name", 1), ("first_name", 1)], {}),
    (INSUREES, [("first_name", 1)], {}),
    (PRODUCTS, [("code", 1)], {"unique": True}),
    (POLICIES, [("chf_id", 1), ("status", 1)], {}),
    (POLICIES, [("chf_id", 1), ("created_at", -1), ("_id", -1)], {}),  # newest first
    # Opaque per-policy token handed to payment providers instead of the policy id.
    (
        POLICIES,
        [("payment_token", 1)],
        {"unique": True, "partialFilterExpression": {"payment_token": {"$type": "string"}}},
    ),
]


class InsureeRepository(DocumentRepository[Insuree]):
    collection_name = INSUREES

    async def mirror(self, chf_id: str, fields: dict[str, Any], at: datetime) -> None:
        """An insuree as the insurance backend has it (server.insurance.backend): made
        when new; what the gateway keeps of its own (the wallet, the SMS opt-out) stays."""
        await self.collection.update_one(
            {"chf_id": chf_id},
            {
                "$set": {**fields, "updated_at": at},
                "$setOnInsert": {"_id": str(uuid.uuid4()), "wallet": "", "created_at": at},
            },
            upsert=True,
        )

    async def with_idle_policies(
        self, chf_id: str, joined: Sequence[str] = ()
    ) -> tuple[Insuree | None, list[Policy], dict[str, list[dict[str, Any]]]]:
        """The insuree, its policies awaiting payment (oldest first) and the documents of
        the `joined` collections that name it (`chf_id`), in one round trip: a paybill
        confirmation's match is on the hot path."""
        lookups = [
            {
                "$lookup": {
                    "from": name,
                    "localField": "chf_id",
                    "foreignField": "chf_id",
                    "as": name,
                }
            }
            for name in (POLICIES, *joined)
        ]
        found = await self.store.aggregate(
            INSUREES, [{"$match": {"chf_id": chf_id}}, {"$limit": 1}, *lookups]
        )
        if not found:
            return None, [], {name: [] for name in joined}
        insuree = found[0]
        # The aggregate answers plain dicts: an insuree, with its policies joined.
        others = {name: insuree.pop(name) for name in joined}
        return cast(Insuree, insuree), _idle(insuree.pop(POLICIES)), others

    async def matching_with_idle_policies(
        self, query: dict[str, Any], limit: int
    ) -> list[tuple[Insuree, list[Policy]]]:
        """The first `limit` insurees `query` finds in the order of the index serving it
        (answered by number) and the policies of each that await payment (oldest first),
        in one round trip. No sort before the limit: a short name's prefix may match
        many, and only `limit` of them are read."""
        found = await self.store.aggregate(
            INSUREES,
            [
                {"$match": query},
                {"$limit": limit},
                {
                    "$lookup": {
                        "from": POLICIES,
                        "localField": "chf_id",
                        "foreignField": "chf_id",
                        "as": POLICIES,
                    }
                },
            ],
        )
        found.sort(key=lambda insuree: insuree["chf_id"])
        return [(cast(Insuree, insuree), _idle(insuree.pop(POLICIES))) for insuree in found]


def _idle(policies: list[dict[str, Any]]) -> list[Policy]:
    """The policies awaiting payment, oldest first, of an insuree's joined policies (the
    aggregate answers them as plain dicts)."""
    return sorted(
        (cast(Policy, policy) for policy in policies if policy["status"] == IDLE),
        key=lambda policy: (policy["created_at"], policy["_id"]),
    )


class ProductRepository(DocumentRepository[Product]):
    collection_name = PRODUCTS


class PolicyRepository(DocumentRepository[Policy]):
    collection_name = POLICIES

    async def with_insuree(self, policy_uuid: str) -> tuple[Policy | None, Insuree | None]:
        """The policy and its insuree in one round trip (a debit's start)."""
        found = await self.store.aggregate(
            POLICIES,
            [
                {"$match": {"_id": policy_uuid}},
                {"$limit": 1},
                {
                    "$lookup": {
                        "from": INSUREES,
                        "localField": "chf_id",
                        "foreignField": "chf_id",
                        "as": INSUREES,
                    }
                },
            ],
        )
        if not found:
            return None, None
        policy = found[0]
        insurees = policy.pop(INSUREES)
        return cast(Policy, policy), cast(Insuree, insurees[0]) if insurees else None

    async def idle_of(self, chf_id: str, limit: int = 100) -> list[Policy]:
        """An insuree's policies awaiting payment, oldest first."""
        cursor = (
            self.collection.find({"chf_id": chf_id, "status": IDLE})
            .sort([("created_at", 1), ("_id", 1)])
            .limit(limit)
        )
        return await cursor.to_list(None)

    # --- the mirror of a remote insurance backend (server.insurance.backend) ---

    async def uuids_of(self, chf_id: str) -> set[str]:
        cursor = self.collection.find({"chf_id": chf_id}, {"_id": 1})
        return {policy["_id"] async for policy in cursor}

    async def mirror_insert(
        self, policy_uuid: str, chf_id: str, fields: dict[str, Any], at: datetime
    ) -> None:
        """A policy first read from the backend; its uuid is also the token providers get."""
        document = {
            "_id": policy_uuid,
            "chf_id": chf_id,
            "payment_token": policy_uuid,
            "created_at": at,
            **fields,
        }
        await self.collection.update_one(
            {"_id": policy_uuid}, {"$setOnInsert": document}, upsert=True
        )

    async def mirror_update(self, policy_uuid: str, fields: dict[str, Any]) -> None:
        """The backend's view of a known policy. A claimed one keeps its status until its
        premium is in the backend, and once claimed is never made idle again by a view
        read before that."""
        guard: dict[str, Any] = {"_id": policy_uuid, "awaiting_backend": {"$ne": True}}
        if fields["status"] == IDLE:
            guard["activated_by"] = {"$exists": False}
        await self.collection.update_one(guard, {"$set": fields})

    async def backend_written(self, policy_uuid: str, changes: dict[str, Any]) -> None:
        """The claiming payment's premium is in the backend: `changes` as it reports them."""
        await self.collection.update_one(
            {"_id": policy_uuid}, {"$set": changes, "$unset": {"awaiting_backend": ""}}
        )

    async def activate(
        self,
        policy_uuid: str,
        transaction_uuid: str,
        effective: datetime,
        at: datetime,
        marks: Mapping[str, Any] | None = None,
    ) -> Policy | None:
        """Idle -> active, as one compare-and-set; None when the policy was not idle.
        `marks`: the insurance backend's own fields, set in the same write."""
        return await self.collection.find_one_and_update(
            {"_id": policy_uuid, "status": IDLE},
            {
                "$set": {
                    **(marks or {}),
                    "status": ACTIVE,
                    "effective_date": effective,
                    "activated_by": transaction_uuid,
                    "updated_at": at,
                }
            },
            return_document=ReturnDocument.AFTER,
        )
