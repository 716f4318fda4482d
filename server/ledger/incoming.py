"""Recording money that has already been received (M-Pesa C2B, external PSPs).

The transaction is inserted `processing` and open, which claims the policy
against any other open payment of it (unique index). Then the settlement's steps
run (server.ledger.settlement: activate the policy, create the premium) and the
transaction becomes `succeeded` with its settlement in one write. Each step is
idempotent, so running `record` again with the same transaction id (a replay, or
`finish_pending` after a crash) completes whatever an earlier run left unfinished."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from server.insurance.documents import Policy
from server.insurance.repository import PolicyRepository
from server.kernel.clock import Clock
from server.kernel.documents import DuplicateDocument
from server.ledger import states
from server.ledger.documents import Transaction
from server.ledger.repository import TransactionRepository
from server.ledger.settlement import Settlement, payable_amounts
from server.ledger.transactions import new_transaction


class PolicyBusy(Exception):
    """Another payment of this policy is open (e.g. an OTP debit waiting for its code)."""


class PolicyNotPayable(Exception):
    """The policy was no longer awaiting payment once claimed; the transaction is failed."""

    def __init__(self, transaction: Transaction) -> None:
        super().__init__(transaction["policy_uuid"])
        self.transaction = transaction


class IncomingPayments:
    def __init__(
        self,
        transactions: TransactionRepository,
        policies: PolicyRepository,
        settlement: Settlement,
        clock: Clock,
    ) -> None:
        self.transactions = transactions
        self.policies = policies
        self.settlement = settlement
        self.clock = clock

    def new_transaction(
        self,
        transaction_id: str,
        channel: str,
        policy: Policy,
        psp_uuid: str | None,
        provider_reference: str,
        actor: str,
        payer: str | None = None,
        channel_data: dict[str, Any] | None = None,
    ) -> Transaction:
        """Money received: the transaction starts `processing`, claiming the policy."""
        return new_transaction(
            transaction_uuid=transaction_id,
            channel=channel,
            status=states.PROCESSING,
            policy=policy,
            psp_uuid=psp_uuid,
            provider_reference=provider_reference,
            actor=actor,
            at=self.clock.now(),
            reason="payment received",
            payer=payer,
            channel_data=channel_data,
        )

    async def record(self, transaction: Transaction, policy: Policy | None = None) -> Transaction:
        """Insert (or find) the transaction, activate its policy, create its premium,
        mark it succeeded and settled. `policy`, when the caller has just read it, saves
        reading it again.

        Raises PolicyBusy when another payment of the policy is open, and
        PolicyNotPayable when the claimed policy is not idle (the transaction is then
        `failed`: the money was not applied and can be allocated elsewhere)."""
        try:
            stored = await self.transactions.insert(transaction)
        except DuplicateDocument:
            found = await self.transactions.find_one({"_id": transaction["_id"]})
            if found is None:
                raise PolicyBusy(transaction["policy_uuid"]) from None
            stored = found
        if stored["status"] == states.PROCESSING:
            stored = await self._complete(stored, policy)
        if stored["status"] == states.FAILED:
            raise PolicyNotPayable(stored)
        return await self.settlement.settle(stored, policy)

    async def _complete(self, transaction: Transaction, policy: Policy | None) -> Transaction:
        """With the policy claimed, no other payment can change it: apply the payment."""
        if policy is None or policy["_id"] != transaction["policy_uuid"]:
            policy = await self.policies.find_one({"_id": transaction["policy_uuid"]})
        now = self.clock.now()
        if policy is not None and not payable_amounts(transaction, policy):
            # Succeeded: the money was received; settlement refuses to apply it.
            return await self._move(transaction, states.SUCCEEDED, {"paid_at": now})
        activated = (
            None if policy is None else await self.settlement.activate(transaction, policy, now)
        )
        if activated is None:
            return await self._move(
                transaction,
                states.FAILED,
                {
                    "failure": {
                        "code": "policy_not_idle",
                        "message": "the policy is not awaiting payment",
                    }
                },
                reason="policy_not_idle",
            )
        settlement = await self.settlement.record_premium(transaction, activated, now)
        return await self._move(
            transaction, states.SUCCEEDED, {"paid_at": now, "settlement": settlement, "open": False}
        )

    async def _move(
        self, transaction: Transaction, target: str, changes: dict[str, Any], reason: str = ""
    ) -> Transaction:
        moved = await self.transactions.transition(
            transaction["_id"],
            states.PROCESSING,
            target,
            self.clock.now(),
            actor=transaction["created_by"],
            reason=reason,
            changes=changes,
        )
        if moved is not None:
            return moved
        # Another run of the same transaction moved it first.
        current = await self.transactions.find_one({"_id": transaction["_id"]})
        if current is None:
            raise RuntimeError(f"transaction {transaction['_id']} vanished while applied")
        return current

    async def finish_pending(
        self, channels: Collection[str], older_than: timedelta, limit: int = 1000
    ) -> int:
        """Complete received payments a crash left `processing`; returns how many.
        Only `channels` that receive money: a debit `processing` is waiting for its
        provider's answer, which only that answer may decide."""
        pending = await self.transactions.stuck_processing(
            channels, self.clock.now() - older_than, limit
        )
        for transaction in pending:
            # PolicyNotPayable: decided (failed), and the payment's channel shows why.
            with contextlib.suppress(PolicyBusy, PolicyNotPayable):
                await self.record(transaction)
        return len(pending)
