"""Users collection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from server.kernel.store import IndexSpec, Store

COLLECTION = "users"
INDEXES: list[IndexSpec] = [(COLLECTION, [("username", 1)], {"unique": True})]


class UserExists(Exception):
    pass


class UserRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(COLLECTION)

    async def create(
        self, username: str, password_hash: str, role: str, created_at: datetime
    ) -> dict[str, Any]:
        document = {
            "username": username,
            "password_hash": password_hash,
            "role": role,
            "active": True,
            "created_at": created_at,
        }
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            raise UserExists(username) from None
        return document

    async def find(self, username: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"username": username})
