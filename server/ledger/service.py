"""Reading the ledger: transactions of every channel."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, cast

from server.insurance.documents import Policy
from server.kernel.errors import NotFound, ValidationFailed
from server.kernel.listing import amount_range, sort_keys
from server.kernel.store import time_window
from server.ledger.documents import Transaction
from server.ledger.repository import LIST_FILTERS, TransactionRepository
from server.ledger.schemas import render_transaction


class LedgerService:
    def __init__(
        self,
        transactions: TransactionRepository,
        channels: Collection[str],
        shown: Callable[[Transaction], dict[str, Any]],
    ) -> None:
        """`channels`: the registered channel names; `shown`: a transaction's
        channel-specific fields as the API shows them (both from the channel registry)."""
        self.transactions = transactions
        self.channels = channels
        self.shown = shown

    def render(self, transaction: Transaction) -> dict[str, Any]:
        # The wire format reads a transaction as a plain dict.
        body = render_transaction(cast(dict[str, Any], transaction))
        return {**body, **self.shown(transaction)}

    async def get(self, transaction_uuid: str) -> Transaction:
        transaction = await self.transactions.find_one({"_id": transaction_uuid})
        if transaction is None:
            raise NotFound(f"no transaction {transaction_uuid}", code="unknown_transaction")
        return transaction

    async def with_policy(self, transaction_uuid: str) -> tuple[Transaction, Policy | None]:
        """The transaction and its policy (None if it vanished), read together."""
        transaction, policy = await self.transactions.with_policy(transaction_uuid)
        if transaction is None:
            raise NotFound(f"no transaction {transaction_uuid}", code="unknown_transaction")
        return transaction, policy

    async def list(
        self, filters: dict[str, Any], limit: int, offset: int
    ) -> tuple[list[Transaction], int]:
        if "channel" in filters and filters["channel"] not in self.channels:
            raise ValidationFailed(
                "query parameters are invalid",
                {"fields": {"channel": [f"Must be one of: {', '.join(self.channels)}."]}},
            )
        query: dict[str, Any] = {
            key: filters[key] for key in (*LIST_FILTERS, "chf_id") if key in filters
        }
        query.update(time_window(filters, "created_at"))
        sort = filters.get("sort", "-created_at")
        amounts = "min_amount" in filters or "max_amount" in filters or "amount" in sort
        if amounts and "currency" not in filters:
            raise ValidationFailed(
                "query parameters are invalid",
                {"fields": {"currency": ["give the currency with an amount range or sort"]}},
            )
        if amounts:
            query.update(amount_range(filters, filters["currency"]))
        return await self.transactions.page(query, sort_keys(sort, "_id"), limit, offset)
