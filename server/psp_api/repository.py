"""Audit trail of the payment-provider API: every request, kept for the retention period."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING

from server.kernel.store import IndexSpec, Store

AUDIT = "psp_audit"
INDEXES: list[IndexSpec] = [(AUDIT, [("psp_uuid", 1), ("at", DESCENDING)], {})]


class AuditRepository:
    def __init__(self, store: Store) -> None:
        self.collection = store.collection(AUDIT)

    async def add(self, entry: dict[str, Any]) -> None:
        await self.collection.insert_one(entry)
