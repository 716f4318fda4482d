"""Qmoney OTP debits: start one, complete it with the payer's code, resolve or expire it."""

from __future__ import annotations

from server.ledger.handlers import ROLES, TransactionListHandler
from server.ledger.schemas import render_transaction
from server.qmoney.schemas import (
    DebitRequestSchema,
    ProcessRequestSchema,
    ReasonSchema,
    ResolveRequestSchema,
)
from server.web.handler import BaseHandler


class TransactionCollectionHandler(TransactionListHandler):
    """GET lists the transactions of every channel; POST starts an OTP debit."""

    async def post(self) -> None:
        """Start an OTP debit: Qmoney texts the payer a code."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(DebitRequestSchema)
        transaction = await self.settings["services"].debits.initiate(
            request["policy_uuid"], request["psp_uuid"], request["amount"], identity.username)
        self.write_json(render_transaction(transaction), status=201)


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
