"""Plain MongoDB operations shared by the repositories of admin-managed documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from server.kernel.store import Store

# The stored shape of a repository's documents (a TypedDict, or a plain dict).
D = TypeVar("D", bound=Mapping[str, Any])


class DuplicateDocument(Exception):
    """A unique index refused the write."""


class DocumentRepository(Generic[D]):
    """One collection; documents use a UUID string as `_id`."""

    collection_name = ""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.collection: AsyncCollection[D] = store.collection(self.collection_name)

    async def insert(self, document: D) -> D:
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            raise DuplicateDocument(self.collection_name) from None
        return document

    async def find_one(self, query: dict[str, Any]) -> D | None:
        return await self.collection.find_one(query)

    async def page(
        self, query: dict[str, Any], sort: list[tuple[str, int]], limit: int, offset: int
    ) -> tuple[list[D], int]:
        cursor = self.collection.find(query).sort(sort).skip(offset).limit(limit)
        return await cursor.to_list(None), await self.collection.count_documents(query)

    async def update(self, query: dict[str, Any], changes: dict[str, Any]) -> D | None:
        """Set fields on the one matching document; None when nothing matched."""
        try:
            return await self.collection.find_one_and_update(
                query, {"$set": changes}, return_document=ReturnDocument.AFTER
            )
        except DuplicateKeyError:
            raise DuplicateDocument(self.collection_name) from None
