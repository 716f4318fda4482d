"""The `jobs` collection: one lease document per job name.

    {_id: name, next_due_at, holder, lease_id, lease_expires_at, last_success_at,
     last_run: {holder, started_at, finished_at, outcome, summary, error}}

(A `last_run` written before summaries has `result`, one count: server.jobs.history.)

A process runs a job only while it holds the job's lease. Taking it is one atomic
find_one_and_update that matches a free lease (no holder, or a holder whose lease
expired: it died mid-run) and, for a scheduled run, a due one, and that moves
`next_due_at` one interval on in the same write. Two scheduled runs of a job
therefore start at least one interval apart, whichever processes or hosts run them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.kernel.store import Store

LEASES = "jobs"


@dataclass(frozen=True)
class Lease:
    """A lease this process holds; `lease_id` tells it from a later holder's."""

    name: str
    holder: str
    lease_id: str
    started_at: datetime


@dataclass(frozen=True)
class LeaseState:
    """A job's lease as the store has it: who holds it, until when, when it is next due."""

    holder: str | None
    lease_expires_at: datetime | None
    next_due_at: datetime
    # The record of the run that last freed the lease (read by `states` only).
    last_run: dict[str, Any] | None = None

    def held(self, now: datetime) -> bool:
        """A process holds the lease: it took it and its lease has not expired."""
        return (
            self.holder is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def free_or_due_at(self) -> datetime:
        """When the job may next be taken: when it is due, or later if its lease runs on."""
        if self.holder is not None and self.lease_expires_at is not None:
            return max(self.next_due_at, self.lease_expires_at)
        return self.next_due_at


class LeaseRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(LEASES)

    async def create(self, name: str, first_due_at: datetime) -> bool:
        """The job's lease document, free and first due at `first_due_at`. False when it
        exists already: another process created it first, possibly at the same moment."""
        try:
            await self.collection.insert_one(
                {
                    "_id": name,
                    "next_due_at": first_due_at,
                    "holder": None,
                    "lease_id": None,
                    "lease_expires_at": None,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def acquire(
        self,
        name: str,
        holder: str,
        now: datetime,
        *,
        lease_for: timedelta,
        interval: timedelta,
        due_only: bool,
    ) -> Lease | None:
        """Take the job's lease if it is free (and due, with `due_only`); None if not."""
        query: dict[str, Any] = {
            "_id": name,
            "$or": [{"holder": None}, {"lease_expires_at": {"$lte": now}}],
        }
        if due_only:
            query["next_due_at"] = {"$lte": now}
        lease_id = uuid.uuid4().hex
        taken = await self.collection.find_one_and_update(
            query,
            {
                "$set": {
                    "holder": holder,
                    "lease_id": lease_id,
                    "leased_at": now,
                    "lease_expires_at": now + lease_for,
                    "next_due_at": now + interval,
                }
            },
            projection={"_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        return None if taken is None else Lease(name, holder, lease_id, now)

    async def release(self, lease: Lease, last_run: dict[str, Any], succeeded: bool) -> bool:
        """Free the lease and keep the run's summary on it. False when the lease was no
        longer ours: it expired and another process took the job over."""
        changes: dict[str, Any] = {
            "holder": None,
            "lease_id": None,
            "lease_expires_at": None,
            "last_run": last_run,
        }
        if succeeded:
            changes["last_success_at"] = last_run["finished_at"]
        result = await self.collection.update_one(
            {"_id": lease.name, "lease_id": lease.lease_id}, {"$set": changes}
        )
        return result.matched_count == 1

    async def state(self, name: str) -> LeaseState | None:
        document = await self.collection.find_one(
            {"_id": name}, {"holder": 1, "lease_expires_at": 1, "next_due_at": 1}
        )
        if document is None:
            return None
        return LeaseState(
            document.get("holder"), document.get("lease_expires_at"), document["next_due_at"]
        )

    async def states(self, names: Iterable[str]) -> dict[str, LeaseState]:
        """The leases of `names` that exist, with their last runs, by job name."""
        documents = await self.collection.find(
            {"_id": {"$in": list(names)}},
            {"holder": 1, "lease_expires_at": 1, "next_due_at": 1, "last_run": 1},
        ).to_list(None)
        return {
            document["_id"]: LeaseState(
                document.get("holder"),
                document.get("lease_expires_at"),
                document["next_due_at"],
                document.get("last_run"),
            )
            for document in documents
        }
