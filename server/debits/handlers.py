"""Debits of every debit channel: start one, complete it with the payer's code, resolve
or expire it; what each answers (server.web.operations) and the routes of the
transactions API."""

from __future__ import annotations

from server.debits.schemas import DebitRequestSchema, ProcessRequestSchema, ResolveRequestSchema
from server.insurance.schemas import POLICY_UUID_EXAMPLE
from server.kernel.schemas import ReasonSchema
from server.ledger.handlers import ROLES, TRANSACTION_UUID, TransactionListHandler
from server.ledger.handlers import ROUTES as LEDGER_ROUTES
from server.ledger.schemas import TransactionSchema
from server.web.handler import BaseHandler
from server.web.operations import AUTH, BODY, STAFF, Operation

PSP_UUID_EXAMPLE = "2b9e1c0d-4a7f-4e3b-8d6c-91f0a2b4c5d6"


class TransactionCollectionHandler(TransactionListHandler):
    """GET lists the transactions of every channel; POST starts a debit."""

    operations = {
        **TransactionListHandler.operations,
        "post": Operation(
            "Start a Qmoney OTP debit",
            "transactions",
            TransactionSchema,
            roles=STAFF,
            body=DebitRequestSchema,
            example={
                "policy_uuid": POLICY_UUID_EXAMPLE,
                "psp_uuid": PSP_UUID_EXAMPLE,
                "amount": "500.00",
            },
            success={201: "Started: the payer got an OTP (`otp_sent`)"},
            errors=(*BODY, *AUTH, 404, 409, 502, 503),
        ),
    }

    async def post(self) -> None:
        """Start a debit through the channel of the PSP's kind (Qmoney texts the payer a code)."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(DebitRequestSchema)
        transaction = await self.settings["services"].debits.initiate(
            request["policy_uuid"], request["psp_uuid"], request["amount"], identity.username
        )
        self.write_json(self.settings["services"].ledger.render(transaction), status=201)


class ProcessDebitHandler(BaseHandler):
    path_parameters = TRANSACTION_UUID
    operations = {
        "post": Operation(
            "Complete an OTP debit with the payer's code",
            "transactions",
            TransactionSchema,
            roles=STAFF,
            body=ProcessRequestSchema,
            example={"otp": "482913"},
            errors=(*BODY, *AUTH, 404, 409, 503),
            description="200 with the transaction in its new state (a wrong OTP leaves it "
            "`otp_sent`); 409 when it is not `otp_sent`.",
        )
    }

    async def post(self, transaction_uuid: str) -> None:
        """Complete an OTP debit with the code the payer read out."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ProcessRequestSchema)
        transaction = await self.settings["services"].debits.process(
            transaction_uuid, request["otp"], identity.username
        )
        self.write_json(self.settings["services"].ledger.render(transaction))


class ResolveHandler(BaseHandler):
    path_parameters = TRANSACTION_UUID
    operations = {
        "post": Operation(
            "Record the true outcome of an `unknown` debit",
            "transactions",
            TransactionSchema,
            roles=STAFF,
            body=ResolveRequestSchema,
            example={
                "outcome": "succeeded",
                "provider_reference": "QM-20261123-884213",
                "reason": "Qmoney support confirmed the debit",
            },
            errors=(*BODY, *AUTH, 404, 409),
        )
    }

    async def post(self, transaction_uuid: str) -> None:
        """An operator records the true outcome of an `unknown` debit."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ResolveRequestSchema)
        transaction = await self.settings["services"].debits.resolve(
            transaction_uuid,
            request["outcome"],
            request["provider_reference"],
            request["reason"],
            identity.username,
        )
        self.write_json(self.settings["services"].ledger.render(transaction))


class ExpireHandler(BaseHandler):
    path_parameters = TRANSACTION_UUID
    operations = {
        "post": Operation(
            "Give up on a debit waiting for its OTP",
            "transactions",
            TransactionSchema,
            roles=STAFF,
            body=ReasonSchema,
            example={"reason": "the payer cannot receive SMS"},
            errors=(*BODY, *AUTH, 404, 409),
        )
    }

    async def post(self, transaction_uuid: str) -> None:
        """An operator expires a debit whose OTP will not come."""
        identity = await self.require_role(*ROLES)
        request = self.load_json(ReasonSchema)
        transaction = await self.settings["services"].debits.expire(
            transaction_uuid, request["reason"], identity.username
        )
        self.write_json(self.settings["services"].ledger.render(transaction))


# The transactions API: its list (and debits started) here, one transaction read by the
# ledger, the debits' actions on one.
ROUTES = [
    (r"/api/v1/transactions", TransactionCollectionHandler),
    *LEDGER_ROUTES,
    (r"/api/v1/transactions/([^/]+)/process", ProcessDebitHandler),
    (r"/api/v1/transactions/([^/]+)/resolve", ResolveHandler),
    (r"/api/v1/transactions/([^/]+)/expire", ExpireHandler),
]
