"""Transactions of every channel: list and read."""

from __future__ import annotations

from server.kernel.schemas import page_body
from server.ledger.schemas import TransactionQuerySchema, render_transaction
from server.web.handler import BaseHandler

ROLES = ("operator", "admin")


class TransactionListHandler(BaseHandler):
    async def get(self) -> None:
        await self.require_role(*ROLES)
        query = self.load_query(TransactionQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].ledger.list(query, limit, offset)
        self.write_json(page_body([render_transaction(item) for item in items], total, limit,
                                  offset))


class TransactionHandler(BaseHandler):
    async def get(self, transaction_uuid: str) -> None:
        await self.require_role(*ROLES)
        transaction = await self.settings["services"].ledger.get(transaction_uuid)
        self.write_json(render_transaction(transaction))
