"""Refresh-token records: one per issued refresh token, grouped in families (one
family per login). A record says whether its token was used (rotated) or revoked;
the TTL index drops it when the token expires."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.kernel.store import IndexSpec, Store

COLLECTION = "refresh_tokens"
INDEXES: list[IndexSpec] = [
    (COLLECTION, [("jti", 1)], {"unique": True}),
    (COLLECTION, [("family", 1)], {}),
    (COLLECTION, [("expires_at", 1)], {"expireAfterSeconds": 0}),
]


class RefreshTokenRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(COLLECTION)

    async def add(
        self, jti: str, family: str, username: str, issued_at: datetime, expires_at: datetime
    ) -> None:
        await self.collection.insert_one(
            {
                "jti": jti,
                "family": family,
                "username": username,
                "issued_at": issued_at,
                "expires_at": expires_at,
                "used_at": None,
                "revoked_at": None,
            }
        )

    async def claim(self, jti: str, now: datetime) -> bool:
        """Mark the token used, only if it is neither used nor revoked (compare-and-set)."""
        claimed = await self.collection.find_one_and_update(
            {"jti": jti, "used_at": None, "revoked_at": None}, {"$set": {"used_at": now}}
        )
        return claimed is not None

    async def find(self, jti: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"jti": jti})

    async def revoke_family(self, family: str, now: datetime, reason: str) -> int:
        result = await self.collection.update_many(
            {"family": family, "revoked_at": None},
            {"$set": {"revoked_at": now, "revoked_because": reason}},
        )
        return result.modified_count

    async def family_revoked(self, family: str) -> bool:
        return (
            await self.collection.find_one({"family": family, "revoked_at": {"$ne": None}})
            is not None
        )
