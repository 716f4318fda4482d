"""Recording money that has already been received (M-Pesa C2B, external PSPs).

The transaction is inserted `processing` and open, which claims the policy
against any other open payment of it (unique index), then marked `succeeded` and
settled. Each step is idempotent, so calling `record` again with the same
transaction id completes whatever an earlier call left unfinished."""

from __future__ import annotations

from typing import Any

from server.insurance.repository import IDLE, PolicyRepository
from server.kernel.clock import Clock
from server.kernel.documents import DuplicateDocument
from server.ledger import states
from server.ledger.repository import TransactionRepository
from server.ledger.settlement import Settlement


class PolicyBusy(Exception):
    """Another payment of this policy is open (e.g. an OTP debit waiting for its code)."""


class PolicyNotPayable(Exception):
    """The policy was no longer awaiting payment once claimed; the transaction is failed."""

    def __init__(self, transaction: dict[str, Any]) -> None:
        super().__init__(transaction["policy_uuid"])
        self.transaction = transaction


class IncomingPayments:
    def __init__(self, transactions: TransactionRepository, policies: PolicyRepository,
                 settlement: Settlement, clock: Clock) -> None:
        self.transactions = transactions
        self.policies = policies
        self.settlement = settlement
        self.clock = clock

    def new_transaction(self, transaction_id: str, channel: str, policy: dict[str, Any],
                        psp_uuid: str | None, provider_reference: str, actor: str,
                        **extra: Any) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "_id": transaction_id, "channel": channel, "status": states.PROCESSING,
            "open": True, "amount": policy["value"], "currency": policy["currency"],
            "policy_uuid": policy["_id"], "chf_id": policy["chf_id"], "psp_uuid": psp_uuid,
            "provider_reference": provider_reference, "failure": None, "settlement": None,
            "created_by": actor, "created_at": now, "updated_at": now,
            "history": [{"from": None, "to": states.PROCESSING, "at": now,
                         "reason": "payment received", "actor": actor}],
            **extra,
        }

    async def record(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """Insert (or find) the transaction, mark it succeeded, settle it.

        Raises PolicyBusy when another payment of the policy is open, and
        PolicyNotPayable when the claimed policy is not idle (the transaction is then
        `failed`: the money was not applied and can be allocated elsewhere)."""
        try:
            stored = await self.transactions.insert(transaction)
        except DuplicateDocument:
            stored = await self.transactions.find_one({"_id": transaction["_id"]})
            if stored is None:
                raise PolicyBusy(transaction["policy_uuid"]) from None
        if stored["status"] == states.PROCESSING:
            stored = await self._decide(stored)
        if stored["status"] == states.FAILED:
            raise PolicyNotPayable(stored)
        return await self.settlement.settle(stored)

    async def _decide(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """With the policy claimed, no other payment can change it: check it is payable."""
        policy = await self.policies.find_one({"_id": transaction["policy_uuid"]})
        payable = policy is not None and (policy["status"] == IDLE
                                          or policy.get("activated_by") == transaction["_id"])
        now = self.clock.now()
        if payable:
            target, changes = states.SUCCEEDED, {"paid_at": now}
        else:
            target, changes = states.FAILED, {"failure": {
                "code": "policy_not_idle", "message": "the policy is not awaiting payment"}}
        moved = await self.transactions.transition(
            transaction["_id"], states.PROCESSING, target, now,
            actor=transaction["created_by"], reason="" if payable else "policy_not_idle",
            changes=changes)
        return moved or await self.transactions.find_one({"_id": transaction["_id"]})
