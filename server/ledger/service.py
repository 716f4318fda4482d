"""Reading the ledger: transactions of every channel."""

from __future__ import annotations

from typing import Any

from server.kernel.errors import NotFound
from server.kernel.store import time_window
from server.ledger.repository import TransactionRepository


class LedgerService:
    def __init__(self, transactions: TransactionRepository) -> None:
        self.transactions = transactions

    async def get(self, transaction_uuid: str) -> dict[str, Any]:
        transaction = await self.transactions.find_one({"_id": transaction_uuid})
        if transaction is None:
            raise NotFound(f"no transaction {transaction_uuid}", code="unknown_transaction")
        return transaction

    async def list(self, filters: dict[str, Any], limit: int,
                   offset: int) -> tuple[list[dict[str, Any]], int]:
        query: dict[str, Any] = {key: filters[key] for key in ("status", "channel", "psp_uuid",
                                                                 "policy_uuid", "chf_id")
                                 if key in filters}
        query.update(time_window(filters, "created_at"))
        return await self.transactions.page(query, [("created_at", -1), ("_id", -1)], limit,
                                            offset)
