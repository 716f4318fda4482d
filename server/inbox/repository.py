"""The inbox collection: the raw body of every callback, whichever provider sent it,
with its `source` (`daraja_c2b`, ...) and `kind`, written before it is processed.

It keeps the collection name it had when it held only paybill callbacks, so stored
entries stay where they are."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from server.inbox.documents import Dismissal, EncodedBody, InboxEntry, InboxOutcome
from server.kernel.store import IndexSpec, Store

INBOX = "c2b_inbox"

# Newest first, the id breaking ties (the list's sorts: server.mpesa.schemas.INBOX_SORTS).
_NEWEST = [("received_at", DESCENDING), ("_id", DESCENDING)]
# The fields the inbox list filters on; trans_id also finds a payment's deliveries.
LIST_FILTERS = ("status", "source", "kind", "trans_id")

INDEXES: list[IndexSpec] = [
    (INBOX, [("status", 1), ("received_at", 1)], {}),
    (INBOX, _NEWEST, {}),
    *((INBOX, [(key, 1), *_NEWEST], {}) for key in LIST_FILTERS),
]

# Inbox states. `received` is written before any processing, so an entry still
# `received` after a crash, or `failed`, is work for replay.
RECEIVED, PROCESSED, DUPLICATE, CONFLICT, NEEDS_REVIEW, FAILED = (
    "received",
    "processed",
    "duplicate",
    "conflict",
    "needs_review",
    "failed",
)
REPLAYABLE = (RECEIVED, FAILED)
REVIEWABLE = (*REPLAYABLE, NEEDS_REVIEW)
# An operator who has looked at an entry that failed, is for review or conflicts with
# an earlier delivery may dismiss it (server.inbox.dismissal): it is never replayed.
DISMISSED = "dismissed"
DISMISSABLE = (NEEDS_REVIEW, FAILED, CONFLICT)

# An entry without a source was stored before entries named theirs: all were these.
LEGACY_SOURCE_KIND = ("daraja_c2b", "confirmation")
FAILURE_MESSAGE_CHARS = 500


def encode_body(raw: bytes) -> EncodedBody:
    """Keep the body readable when it is text, exact in every case."""
    try:
        return {"body": raw.decode("utf-8"), "body_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(raw).decode("ascii"), "body_encoding": "base64"}


def decode_body(entry: InboxEntry) -> bytes:
    if entry["body_encoding"] == "base64":
        return base64.b64decode(entry["body"])
    return entry["body"].encode("utf-8")


def _marked(
    status: str,
    processed_at: datetime,
    *,
    trans_id: str | None = None,
    answer: dict[str, Any] | None = None,
    errors: Any = None,
) -> InboxOutcome:
    fields: InboxOutcome = {"status": status, "processed_at": processed_at, "errors": errors}
    if trans_id is not None:
        fields["trans_id"] = trans_id
    if answer is not None:
        fields["answer"] = answer
    return fields


class InboxRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[InboxEntry] = store.collection(INBOX)

    async def add(
        self,
        source: str,
        kind: str,
        raw: bytes,
        source_ip: str,
        headers: dict[str, str],
        received_at: datetime,
        *,
        outcome: dict[str, Any] | None = None,
    ) -> InboxEntry:
        """The raw callback, `received`; or, when its outcome is already known (a
        validation decided from the body alone), already marked with it."""
        entry: InboxEntry = {
            "_id": str(uuid.uuid4()),
            "source": source,
            "kind": kind,
            **encode_body(raw),
            "source_ip": source_ip,
            "headers": headers,
            "received_at": received_at,
            "status": RECEIVED,
            "attempts": 0,
        }
        if outcome is not None:
            entry = {**entry, **_marked(processed_at=received_at, **outcome), "attempts": 1}
        await self.collection.insert_one(entry)
        return entry

    async def mark(
        self,
        entry_id: str,
        status: str,
        at: datetime,
        *,
        trans_id: str | None = None,
        answer: dict[str, Any] | None = None,
        errors: Any = None,
        failure: BaseException | None = None,
    ) -> None:
        """The entry's outcome; a `failed` one records what failed (`failure`)."""
        fields: dict[str, Any] = {
            **_marked(status, at, trans_id=trans_id, answer=answer, errors=errors),
            "failure": None
            if failure is None
            else {"type": type(failure).__name__, "message": str(failure)[:FAILURE_MESSAGE_CHARS]},
        }
        await self.collection.update_one(
            {"_id": entry_id}, {"$set": fields, "$inc": {"attempts": 1}}
        )

    async def get(self, entry_id: str) -> InboxEntry | None:
        return await self.collection.find_one({"_id": entry_id})

    async def dismiss(self, entry_id: str, dismissal: Dismissal) -> InboxEntry | None:
        """Compare-and-set on the status the dismissal names (`from_status`): the entry
        becomes `dismissed`, keeping the dismissal; None when its status changed."""
        return await self.collection.find_one_and_update(
            {"_id": entry_id, "status": dismissal["from_status"]},
            {"$set": {"status": DISMISSED, "dismissal": dismissal}},
            return_document=ReturnDocument.AFTER,
        )

    async def note_replay(self, entry_id: str, by: str, reason: str, at: datetime) -> None:
        await self.collection.update_one(
            {"_id": entry_id}, {"$push": {"replays": {"by": by, "reason": reason, "at": at}}}
        )

    async def page(
        self,
        query: dict[str, Any],
        limit: int,
        offset: int,
        sort: list[tuple[str, int]] | None = None,
    ) -> tuple[list[InboxEntry], int]:
        cursor = self.collection.find(query).sort(sort or _NEWEST).skip(offset).limit(limit)
        return await cursor.to_list(None), await self.collection.count_documents(query)

    async def of_trans_id(self, trans_id: str, limit: int) -> list[InboxEntry]:
        """The deliveries that named `trans_id` (validation, confirmation, records,
        results), newest first."""
        cursor = self.collection.find({"trans_id": trans_id}).sort(_NEWEST).limit(limit)
        return await cursor.to_list(None)

    async def replayable(
        self,
        work: Collection[tuple[str, str]],
        statuses: Iterable[str],
        received_before: datetime,
        limit: int,
    ) -> list[InboxEntry]:
        """Entries of the (source, kind) pairs in `work` in one of `statuses`, oldest first."""
        pairs: list[dict[str, Any]] = [{"source": source, "kind": kind} for source, kind in work]
        if LEGACY_SOURCE_KIND in work:  # entries stored before they named a source
            pairs.append({"source": {"$exists": False}, "kind": LEGACY_SOURCE_KIND[1]})
        if not pairs:
            return []
        cursor = (
            self.collection.find(
                {
                    "$or": pairs,
                    "status": {"$in": list(statuses)},
                    "received_at": {"$lte": received_before},
                }
            )
            .sort("received_at", 1)
            .limit(limit)
        )
        return await cursor.to_list(None)
