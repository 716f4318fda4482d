"""Transactions of every channel: list and read; what each answers
(server.web.operations) and the route of one transaction."""

from __future__ import annotations

from server.kernel.errors import Conflict
from server.kernel.schemas import ReasonSchema, page_body
from server.ledger.premium_schemas import LedgerPremiumSchema, render_premium
from server.ledger.schemas import TransactionPageSchema, TransactionQuerySchema, TransactionSchema
from server.web.handler import BaseHandler
from server.web.operations import AUTH, BODY, STAFF, Operation

ROLES = ("operator", "admin")

TRANSACTION_UUID = {"transaction_uuid": "Uuid of the transaction"}


class TransactionListHandler(BaseHandler):
    operations = {
        "get": Operation(
            "List transactions of every channel, newest first",
            "transactions",
            TransactionPageSchema,
            roles=STAFF,
            query=TransactionQuerySchema,
            errors=(400, *AUTH),
        )
    }

    async def get(self) -> None:
        await self.require_role(*ROLES)
        query = self.load_query(TransactionQuerySchema)
        limit, offset = query.pop("limit"), query.pop("offset")
        ledger = self.settings["services"].ledger
        items, total = await ledger.list(query, limit, offset)
        self.write_json(page_body([ledger.render(item) for item in items], total, limit, offset))


class TransactionHandler(BaseHandler):
    path_parameters = TRANSACTION_UUID
    operations = {
        "get": Operation(
            "One transaction with its history",
            "transactions",
            TransactionSchema,
            roles=STAFF,
            errors=(*AUTH, 404),
        )
    }

    async def get(self, transaction_uuid: str) -> None:
        await self.require_role(*ROLES)
        ledger = self.settings["services"].ledger
        self.write_json(ledger.render(await ledger.get(transaction_uuid)))


class PremiumWriteHandler(BaseHandler):
    path_parameters = {"premium_uuid": "Uuid of the premium"}
    operations = {
        "post": Operation(
            "Send a premium openIMIS refused again",
            "transactions",
            LedgerPremiumSchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "the policy was reopened in openIMIS"},
            errors=(*BODY, *AUTH, 404, 409),
            description=(
                "After the cause was put right in openIMIS (insurance.backend: openimis): "
                "the write-premiums job sends it again, once it has checked openIMIS does "
                "not have it already."
            ),
        )
    }

    async def post(self, premium_uuid: str) -> None:
        identity = await self.require_role(*ROLES)
        request = self.load_json(ReasonSchema)
        writes = self.settings["services"].premium_writes
        if writes is None:
            raise Conflict(
                "the built-in insurance backend has no premiums to send",
                code="no_insurance_backend",
            )
        retried = await writes.retry(premium_uuid, identity.username, request["reason"])
        self.write_json(render_premium(retried))


# The list of transactions is routed with the debits' handler (which also starts one).
ROUTES = [
    (r"/api/v1/transactions/([^/]+)", TransactionHandler),
    (r"/api/v1/premiums/([^/]+)/write", PremiumWriteHandler),
]
