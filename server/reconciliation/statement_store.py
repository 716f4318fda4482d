"""Imported statements (collection `statements`, one document per file) and their rows
(`statement_rows`, one document per payment row, whichever file brought it first).

A file is known by (kind, provider, file_hash): its document is written when its
import starts and completed (`imported_at`, `summary`) when it ends, so a file whose
import was cut off is finished by importing it again, and one that was completed is
answered from its document. A row is known by (kind, provider, key): the receipt, or
the provider's transaction id; it is written once its payment has been checked, with
what the check found."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from server.kernel.store import IndexSpec, Store

STATEMENTS, STATEMENT_ROWS = "statements", "statement_rows"
DUPLICATE_KEY = 11000

INDEXES: list[IndexSpec] = [
    (STATEMENTS, [("kind", 1), ("provider", 1), ("file_hash", 1)], {"unique": True}),
    (STATEMENTS, [("complete", 1), ("imported_at", DESCENDING)], {}),
    (STATEMENT_ROWS, [("kind", 1), ("provider", 1), ("key", 1)], {"unique": True}),
    (STATEMENT_ROWS, [("statement_id", 1)], {}),
]


class StatementDocument(TypedDict):
    _id: str
    kind: str  # mpesa, psp
    provider: str  # the shortcode, or the PSP's uuid
    file_hash: str  # sha256 of the file's bytes
    file_name: str | None
    started_at: datetime
    imported_at: datetime | None  # when its import was completed
    imported_by: str
    complete: bool
    rows: int
    period_from: datetime
    period_to: datetime
    summary: dict[str, int] | None


@dataclass(frozen=True)
class RowRecord:
    """A payment row checked: its key, what the check found, and the row as given."""

    key: str
    outcome: str
    at: datetime
    fields: Mapping[str, str]


class StatementRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[StatementDocument] = store.collection(STATEMENTS)

    async def start(self, document: StatementDocument) -> StatementDocument:
        """The file's document: `document` inserted, or the one already there for the
        same (kind, provider, file_hash), complete or cut off."""
        try:
            await self.collection.insert_one(document)
            return document
        except DuplicateKeyError:
            found = await self.collection.find_one(
                {
                    "kind": document["kind"],
                    "provider": document["provider"],
                    "file_hash": document["file_hash"],
                }
            )
        if found is None:  # documents are never deleted
            raise RuntimeError(f"statement {document['file_hash']} vanished")
        return found

    async def complete(
        self, statement_id: str, summary: dict[str, int], at: datetime
    ) -> StatementDocument | None:
        """Mark the import complete; None when another import of it completed first."""
        return await self.collection.find_one_and_update(
            {"_id": statement_id, "complete": False},
            {"$set": {"complete": True, "imported_at": at, "summary": summary}},
            return_document=ReturnDocument.AFTER,
        )

    async def get(self, statement_id: str) -> StatementDocument | None:
        return await self.collection.find_one({"_id": statement_id})

    async def page(
        self, query: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[StatementDocument], int]:
        """Completed imports matching `query`, newest first."""
        query = {**query, "complete": True}
        cursor = (
            self.collection.find(query)
            .sort([("imported_at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return await cursor.to_list(None), await self.collection.count_documents(query)


class StatementRowRepository:
    def __init__(self, store: Store) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = store.collection(STATEMENT_ROWS)

    async def known(self, kind: str, provider: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The rows already recorded among `keys`: key -> {statement_id, outcome}."""
        cursor = self.collection.find(
            {"kind": kind, "provider": provider, "key": {"$in": keys}},
            {"key": 1, "statement_id": 1, "outcome": 1},
        )
        return {row["key"]: row for row in await cursor.to_list(None)}

    async def record(
        self,
        statement_id: str,
        kind: str,
        provider: str,
        rows: Iterable[RowRecord],
        at: datetime,
    ) -> int:
        """Insert the rows in one round trip; a row another import recorded meanwhile
        stays as that import wrote it. Returns how many were written."""
        documents = [
            {
                "_id": str(uuid.uuid4()),
                "kind": kind,
                "provider": provider,
                "key": row.key,
                "statement_id": statement_id,
                "outcome": row.outcome,
                "at": row.at,
                # Column names hold dots ("Receipt No."): kept as pairs, in file order.
                "row": [[name, value] for name, value in row.fields.items()],
                "recorded_at": at,
            }
            for row in rows
        ]
        if not documents:
            return 0
        try:
            await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as err:
            errors = err.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            return len(documents) - len(errors)
        return len(documents)
