"""Transactions: list and read (every channel), start and process OTP debits (Qmoney)."""

from __future__ import annotations

from server.kernel.schemas import page_body
from server.ledger.schemas import TransactionQuerySchema, render_transaction
from server.qmoney.schemas import (
    DebitRequestSchema,
    ProcessRequestSchema,
    ReasonSchema,
    ResolveRequestSchema,
)
from server.web.handler import BaseHandler

ROLES = ("operator", "admin")


class TransactionCollectionHandler(BaseHandler):
    async def get(self) -> None:
        await self.require_role(*ROLES)
        query = self.load_query(TransactionQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        items, total = await self.settings["services"].ledger.list(query, limit, offset)
        self.write_json(page_body([render_transaction(item) for item in items], total, limit,
                                  offset))

    async def post(self) -> None:
        """Start an OTP debit: Qmoney texts the payer a code."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(DebitRequestSchema)
        transaction = await self.settings["services"].debits.initiate(
            request["policy_uuid"], request["psp_uuid"], request["amount"], identity.username)
        self.write_json(render_transaction(transaction), status=201)


class TransactionHandler(BaseHandler):
    async def get(self, transaction_uuid: str) -> None:
        await self.require_role(*ROLES)
        transaction = await self.settings["services"].ledger.get(transaction_uuid)
        self.write_json(render_transaction(transaction))


class ProcessDebitHandler(BaseHandler):
    async def post(self, transaction_uuid: str) -> None:
        """Complete an OTP debit with the code the payer read out."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ProcessRequestSchema)
        transaction = await self.settings["services"].debits.process(
            transaction_uuid, request["otp"], identity.username)
        self.write_json(render_transaction(transaction))


class ResolveHandler(BaseHandler):
    async def post(self, transaction_uuid: str) -> None:
        """An operator records the true outcome of an `unknown` debit."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ResolveRequestSchema)
        transaction = await self.settings["services"].debits.resolve(
            transaction_uuid, request["outcome"], request["provider_reference"],
            request["reason"], identity.username)
        self.write_json(render_transaction(transaction))


class ExpireHandler(BaseHandler):
    async def post(self, transaction_uuid: str) -> None:
        """An operator expires a debit whose OTP will not come."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ReasonSchema)
        transaction = await self.settings["services"].debits.expire(
            transaction_uuid, request["reason"], identity.username)
        self.write_json(render_transaction(transaction))
