"""Transactions and premiums collections.

Every transaction written and every state change applied is logged here, one line
each (`transaction_state`), whichever channel or service made it."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any, cast

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.insurance.documents import Policy
from server.insurance.repository import POLICIES
from server.kernel.documents import DocumentRepository
from server.kernel.store import IndexSpec
from server.ledger import states
from server.ledger.documents import Premium, Settlement, Transaction

log = logging.getLogger("gateway.ledger")

TRANSACTIONS, PREMIUMS = "transactions", "premiums"

# Newest first, the id breaking ties so that pages neither repeat nor skip an item.
_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]
# The fields the transactions list filters on besides chf_id (each has its index).
LIST_FILTERS = ("status", "channel", "psp_uuid", "policy_uuid", "currency")

INDEXES: list[IndexSpec] = [
    # One open transaction per policy. `open` is a plain boolean so the partial
    # filter is an equality, which every MongoDB version supports.
    (
        TRANSACTIONS,
        [("policy_uuid", 1)],
        {
            "unique": True,
            "partialFilterExpression": {"open": True},
            "name": "one_open_transaction_per_policy",
        },
    ),
    (TRANSACTIONS, _NEWEST, {}),
    # An insuree's transactions: the list filter, and a paybill confirmation's match.
    (TRANSACTIONS, [("chf_id", 1), *_NEWEST], {}),
    # The list's other filters, each read newest first (server.ledger.schemas
    # TRANSACTION_SORTS); amounts sort within one currency.
    *((TRANSACTIONS, [(key, 1), *_NEWEST], {}) for key in LIST_FILTERS),
    (TRANSACTIONS, [("currency", 1), ("amount", 1), ("_id", 1)], {}),
    # The desk's search: a debit's payer (phone, wallet) and its receipt at the provider.
    (TRANSACTIONS, [("payer", 1), *_NEWEST], {}),
    (TRANSACTIONS, [("provider_confirmation", 1), *_NEWEST], {}),
    (TRANSACTIONS, [("status", 1), ("updated_at", 1)], {}),
    # A provider's reference is used once per provider (PSP API idempotency key).
    (
        TRANSACTIONS,
        [("psp_uuid", 1), ("provider_reference", 1)],
        {
            "unique": True,
            "partialFilterExpression": {"channel": "psp_api"},
            "name": "one_payment_per_psp_reference",
        },
    ),
    # Debits whose provider is asked about them on a schedule (DebitEngine.check_pending).
    (TRANSACTIONS, [("next_check_at", 1)], {"sparse": True}),
    (PREMIUMS, [("transaction_uuid", 1)], {"unique": True}),
    (PREMIUMS, [("receipt", 1)], {}),
    (PREMIUMS, [("chf_id", 1), *_NEWEST], {}),
    # Premiums the insurance backend still has to write (server.ledger.premium_writes).
    (
        PREMIUMS,
        [("insurance_write.state", 1), ("insurance_write.next_at", 1)],
        {"sparse": True},
    ),
    # ... the dashboard's oldest waiting and refused ones, and the refused to review.
    (
        PREMIUMS,
        [("insurance_write.state", 1), ("created_at", 1), ("_id", 1)],
        {"sparse": True},
    ),
]


class TransactionRepository(DocumentRepository[Transaction]):
    collection_name = TRANSACTIONS

    async def with_policy(self, transaction_uuid: str) -> tuple[Transaction | None, Policy | None]:
        """The transaction and its policy in one round trip (a debit's completion)."""
        found = await self.store.aggregate(
            self.collection_name,
            [
                {"$match": {"_id": transaction_uuid}},
                {"$limit": 1},
                {
                    "$lookup": {
                        "from": POLICIES,
                        "localField": "policy_uuid",
                        "foreignField": "_id",
                        "as": POLICIES,
                    }
                },
            ],
        )
        if not found:
            return None, None
        transaction = found[0]
        policies = transaction.pop(POLICIES)
        return cast(Transaction, transaction), cast(Policy, policies[0]) if policies else None

    async def insert(self, document: Transaction) -> Transaction:
        stored = await super().insert(document)
        _log_state(stored, "-", stored["status"], "created", stored.get("created_by", ""))
        return stored

    async def transition(
        self,
        transaction_uuid: str,
        current: str,
        target: str,
        at: datetime,
        *,
        reason: str = "",
        actor: str = "",
        changes: dict[str, Any] | None = None,
        increments: dict[str, int] | None = None,
    ) -> Transaction | None:
        """Compare-and-set current -> target with a history entry; None if not in `current`."""
        states.check(current, target)
        update: dict[str, Any] = {
            "$set": {
                "status": target,
                "open": states.holds_policy(target),
                "updated_at": at,
                **(changes or {}),
            },
            "$push": {
                "history": {
                    "from": current,
                    "to": target,
                    "at": at,
                    "reason": reason,
                    "actor": actor,
                }
            },
        }
        if target == states.UNKNOWN:  # in doubt from now: how long it stays is measured
            update["$set"].setdefault("unknown_since", at)
        if increments:
            update["$inc"] = increments
        moved = await self.collection.find_one_and_update(
            {"_id": transaction_uuid, "status": current},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if moved is not None:
            _log_state(moved, current, target, reason, actor)
        return moved

    async def set_fields(
        self,
        transaction_uuid: str,
        current: str,
        changes: dict[str, Any],
        *,
        increments: dict[str, int] | None = None,
        only_if_missing: str | None = None,
    ) -> Transaction | None:
        """Fields of a transaction that change no state (a debit's next status check, a
        reference that came late), set only while it is in `current` (and, with
        `only_if_missing`, while that field is still None); None when not."""
        query: dict[str, Any] = {"_id": transaction_uuid, "status": current}
        if only_if_missing:
            query[only_if_missing] = None
        update: dict[str, Any] = {"$set": dict(changes)}
        if increments:
            update["$inc"] = increments
        return await self.collection.find_one_and_update(
            query, update, return_document=ReturnDocument.AFTER
        )

    async def note(
        self,
        transaction_uuid: str,
        current: str,
        at: datetime,
        *,
        reason: str,
        actor: str,
        changes: dict[str, Any] | None = None,
        increments: dict[str, int] | None = None,
    ) -> Transaction | None:
        """A history entry that changes no state (from and to are both `current`: e.g. a
        status call that brought no decision), with fields set in the same write, only
        while the transaction is in `current`; None when not."""
        update: dict[str, Any] = {
            "$push": {
                "history": {
                    "from": current,
                    "to": current,
                    "at": at,
                    "reason": reason,
                    "actor": actor,
                }
            }
        }
        if changes:
            update["$set"] = dict(changes)
        if increments:
            update["$inc"] = increments
        noted = await self.collection.find_one_and_update(
            {"_id": transaction_uuid, "status": current},
            update,
            return_document=ReturnDocument.AFTER,
        )
        if noted is not None:
            log.info(
                "transaction_note transaction=%s channel=%s status=%s reason=%s actor=%s",
                transaction_uuid,
                noted.get("channel", "-"),
                current,
                json.dumps(reason),
                actor or "-",
            )
        return noted

    async def in_doubt(
        self,
        channels: Collection[str],
        now: datetime,
        processing_before: datetime,
        limit: int,
    ) -> list[Transaction]:
        """Debits of `channels` the janitor may ask about: `unknown` ones whose next
        attempt is due or not scheduled yet, not handed to the operators and not under
        their channel's status checks any more, and ones `processing` since before
        `processing_before` (the completing call was cut off). Oldest change first."""
        cursor = (
            self.collection.find(
                {
                    "channel": {"$in": sorted(channels)},
                    "needs_operator": {"$ne": True},
                    "$or": [
                        {
                            "status": states.UNKNOWN,
                            "next_check_at": None,  # its status checks, if any, are over
                            "janitor_next_at": {"$not": {"$gt": now}},  # due, or None
                        },
                        {"status": states.PROCESSING, "updated_at": {"$lt": processing_before}},
                    ],
                }
            )
            .sort("updated_at", 1)
            .limit(limit)
        )
        return await cursor.to_list(None)

    async def due_checks(
        self, channels: Collection[str], statuses: Collection[str], now: datetime, limit: int
    ) -> list[Transaction]:
        """Debits of `channels` in `statuses` whose next status check is due, oldest first."""
        cursor = (
            self.collection.find(
                {
                    # None once no check is left: only a date is due.
                    "next_check_at": {"$lte": now, "$type": "date"},
                    "channel": {"$in": sorted(channels)},
                    "status": {"$in": sorted(statuses)},
                }
            )
            .sort("next_check_at", 1)
            .limit(limit)
        )
        return await cursor.to_list(None)

    async def record_settlement(self, transaction_uuid: str, settlement: Settlement) -> Transaction:
        """Settled (or refused): the policy is released for other payments."""
        recorded = await self.collection.find_one_and_update(
            {"_id": transaction_uuid},
            {"$set": {"settlement": settlement, "open": False}},
            return_document=ReturnDocument.AFTER,
        )
        if recorded is None:  # transactions are never deleted
            raise RuntimeError(f"transaction {transaction_uuid} vanished while settled")
        return recorded

    async def record_policy_status(self, transaction_uuid: str, status: int) -> None:
        """The policy's status as the insurance backend reported it after the premium."""
        await self.collection.update_one(
            {"_id": transaction_uuid, "settlement.status": "settled"},
            {"$set": {"settlement.policy_status": status}},
        )

    async def unsettled(self, limit: int) -> list[Transaction]:
        """Succeeded transactions whose settlement never finished (e.g. a crash)."""
        cursor = self.collection.find({"status": states.SUCCEEDED, "settlement": None}).limit(limit)
        return await cursor.to_list(None)

    async def stuck_processing(
        self, channels: Collection[str], updated_before: datetime, limit: int
    ) -> list[Transaction]:
        """Transactions of `channels` still `processing` since before `updated_before`."""
        cursor = self.collection.find(
            {
                "status": states.PROCESSING,
                "channel": {"$in": sorted(channels)},
                "updated_at": {"$lt": updated_before},
            }
        ).limit(limit)
        return await cursor.to_list(None)

    async def stale(self, waiting: frozenset[str], now: datetime, limit: int) -> list[Transaction]:
        """Debits still waiting for their payer past their deadline."""
        cursor = self.collection.find(
            {
                "status": {"$in": sorted(waiting)},
                "$or": [
                    {"expires_at": {"$lte": now}},
                    # Debits stored before the deadline had a channel-neutral name.
                    {"expires_at": {"$exists": False}, "otp_expires_at": {"$lte": now}},
                ],
            }
        ).limit(limit)
        return await cursor.to_list(None)


def _log_state(
    transaction: Transaction, current: str, target: str, reason: str, actor: str
) -> None:
    log.info(
        "transaction_state transaction=%s channel=%s from=%s to=%s reason=%s actor=%s",
        transaction["_id"],
        transaction.get("channel", "-"),
        current,
        target,
        json.dumps(reason) if reason else "-",
        actor or "-",
    )


class PremiumRepository(DocumentRepository[Premium]):
    collection_name = PREMIUMS

    async def insert_once(self, premium: Premium) -> Premium:
        """The premium of a transaction, created at most once."""
        try:
            await self.collection.insert_one(premium)
            return premium
        except DuplicateKeyError:
            existing = await self.collection.find_one(
                {"transaction_uuid": premium["transaction_uuid"]}
            )
        if existing is None:
            raise RuntimeError(f"premium of {premium['transaction_uuid']} vanished")
        return existing

    # --- writes into the insurance backend (server.ledger.premium_writes) ---

    async def writes_due(self, now: datetime, limit: int) -> list[Premium]:
        cursor = (
            self.collection.find(
                {"insurance_write.state": "pending", "insurance_write.next_at": {"$lte": now}}
            )
            .sort([("insurance_write.state", 1), ("insurance_write.next_at", 1)])
            .limit(limit)
        )
        return await cursor.to_list(None)

    async def start_write(
        self, premium_uuid: str, attempts: int, mutation_id: str, at: datetime, held: datetime
    ) -> bool:
        """Claim the next attempt (compare-and-set on the attempts made), before the
        premium is sent: a run cut off after sending leaves the count, and the next run
        asks the backend whether the premium is there before sending it again. No other
        run takes the premium before `held` (the longest an attempt can take)."""
        claimed = await self.collection.update_one(
            {"_id": premium_uuid, "insurance_write.attempts": attempts},
            {
                "$set": {
                    "insurance_write.attempts": attempts + 1,
                    "insurance_write.mutation_id": mutation_id,
                    "insurance_write.attempted_at": at,
                    "insurance_write.next_at": held,
                }
            },
        )
        return claimed.modified_count == 1

    async def write_later(
        self,
        premium_uuid: str,
        next_at: datetime,
        failures: int,
        error: str | None,
        follows: int = 0,
    ) -> None:
        """Tried again at `next_at`; `follows`: looks in a row at an unfinished attempt."""
        await self.collection.update_one(
            {"_id": premium_uuid, "insurance_write.state": "pending"},
            {
                "$set": {
                    "insurance_write.next_at": next_at,
                    "insurance_write.failures": failures,
                    "insurance_write.last_error": error,
                    "insurance_write.follows": follows,
                }
            },
        )

    async def write_ended(
        self, premium_uuid: str, changes: dict[str, Any], from_states: tuple[str, ...]
    ) -> None:
        """Written or refused: no longer due. Only from `from_states`: a premium found
        written after it was refused (a late attempt landed) is written."""
        await self.collection.update_one(
            {"_id": premium_uuid, "insurance_write.state": {"$in": list(from_states)}},
            {
                "$set": {f"insurance_write.{key}": value for key, value in changes.items()},
                "$unset": {"insurance_write.next_at": ""},
            },
        )

    async def write_reopened(
        self, premium_uuid: str, retried: dict[str, Any], at: datetime
    ) -> Premium | None:
        """A refused premium due again at `at`, its counts reset, who reopened it, when
        and why kept; None when it is not refused."""
        return await self.collection.find_one_and_update(
            {"_id": premium_uuid, "insurance_write.state": "refused"},
            {
                "$set": {
                    "insurance_write.state": "pending",
                    "insurance_write.next_at": at,
                    "insurance_write.follows": 0,
                    "insurance_write.failures": 0,
                    "insurance_write.retried": retried,
                }
            },
            return_document=ReturnDocument.AFTER,
        )

    async def write_figures(self) -> dict[str, Any]:
        """How many premiums wait for the backend (and since when), how many it refused."""
        groups = await self.store.aggregate(
            PREMIUMS,
            [
                {"$match": {"insurance_write.state": {"$in": ["pending", "refused"]}}},
                {
                    "$group": {
                        "_id": "$insurance_write.state",
                        "count": {"$sum": 1},
                        "oldest_at": {"$min": "$created_at"},
                    }
                },
            ],
        )
        by_state = {group["_id"]: group for group in groups}
        pending = by_state.get("pending", {})
        return {
            "waiting": pending.get("count", 0),
            "oldest_at": pending.get("oldest_at"),
            "refused": by_state.get("refused", {}).get("count", 0),
        }
