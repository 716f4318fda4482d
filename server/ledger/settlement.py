"""Settlement: a successful payment becomes a premium and an active policy.

Used by every channel. Each step is idempotent on the transaction, so a crash
between the writes is repaired by running it again (no multi-document
transaction is needed, and a standalone MongoDB has none):

1. activate the policy, compare-and-set idle -> active, remembering the transaction;
2. create the premium, unique per transaction;
3. record the settlement on the transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from server.insurance.backend import BuiltInBackend, InsuranceBackend
from server.insurance.documents import Policy
from server.insurance.repository import PolicyRepository
from server.kernel.clock import Clock
from server.ledger import documents
from server.ledger.documents import Transaction
from server.ledger.repository import PremiumRepository, TransactionRepository

log = logging.getLogger("gateway.settlement")

PAY_TYPE_MOBILE = "M"

# The fields a premium's document carries for the payer's receipt (the SMS outbox's
# notice), whatever the channel: written in the premium's own insert.
PremiumNotice = Callable[[Transaction, documents.Settlement, Policy], Mapping[str, Any]]


class Settlement:
    def __init__(
        self,
        transactions: TransactionRepository,
        premiums: PremiumRepository,
        policies: PolicyRepository,
        clock: Clock,
        notice: PremiumNotice | None = None,
        backend: InsuranceBackend | None = None,
    ) -> None:
        self.transactions = transactions
        self.premiums = premiums
        self.policies = policies
        self.clock = clock
        self.notice = notice
        self.backend: InsuranceBackend = backend or BuiltInBackend()

    async def settle(self, transaction: Transaction, policy: Policy | None = None) -> Transaction:
        """Settle a succeeded transaction; returns the transaction with its settlement.
        `policy`, when the caller has just read it, saves reading it again.

        A policy that is no longer idle (paid meanwhile through another channel) is
        not activated twice, and a payment or policy value of zero or less never
        activates one: the settlement is recorded as `refused` for an operator."""
        if transaction.get("settlement"):
            return transaction
        now = self.clock.now()
        paid_at: datetime = transaction.get("paid_at") or now
        if policy is None or policy["_id"] != transaction["policy_uuid"]:
            policy = await self.policies.find_one({"_id": transaction["policy_uuid"]})
        if policy is None:
            return await self._refuse(transaction, "policy_missing", now)
        if not payable_amounts(transaction, policy):
            return await self._refuse(transaction, "amount_not_positive", now)
        activated = await self.activate(transaction, policy, paid_at)
        if activated is None:
            return await self._refuse(transaction, "policy_not_idle", now)
        settlement = await self.record_premium(transaction, activated, paid_at)
        return await self.transactions.record_settlement(transaction["_id"], settlement)

    async def activate(
        self, transaction: Transaction, policy: Policy, paid_at: datetime
    ) -> Policy | None:
        """Step 1: the policy activated by this transaction (now, or by an earlier run
        of it); None when another payment took it."""
        if policy.get("activated_by") == transaction["_id"]:
            return policy
        effective = max(paid_at, policy["start_date"])
        activated = await self.policies.activate(
            policy["_id"],
            transaction["_id"],
            effective,
            self.clock.now(),
            self.backend.activation_fields(),
        )
        if activated is not None:
            return activated
        current = await self.policies.find_one({"_id": policy["_id"]})
        if current is None or current.get("activated_by") != transaction["_id"]:
            return None
        return current

    async def record_premium(
        self, transaction: Transaction, policy: Policy, paid_at: datetime
    ) -> documents.Settlement:
        """Step 2: the transaction's premium (created once), with the payer's notice;
        returns the settlement to record on the transaction (step 3)."""
        now = self.clock.now()
        receipt = receipt_number(transaction)
        settlement: documents.Settlement = {
            "status": "settled",
            "premium_uuid": str(uuid.uuid4()),
            "receipt": receipt,
            "policy_status": policy["status"],
            "effective_date": policy["effective_date"],
            "settled_at": now,
        }
        made: documents.Premium = {
            "_id": settlement["premium_uuid"],
            "transaction_uuid": transaction["_id"],
            "policy_uuid": policy["_id"],
            "chf_id": policy["chf_id"],
            "amount": transaction["amount"],
            "currency": transaction["currency"],
            "pay_date": paid_at,
            "pay_type": PAY_TYPE_MOBILE,
            "receipt": receipt,
            "created_at": now,
        }
        premium = await self.premiums.insert_once(
            cast(
                documents.Premium,
                {
                    **self._notice(transaction, settlement, policy),
                    **self.backend.premium_fields(now),
                    **made,
                },
            )
        )
        log.info(
            "settled transaction=%s policy=%s premium=%s",
            transaction["_id"],
            policy["_id"],
            premium["_id"],
        )
        # A re-run finds the premium made before: the settlement names that one.
        return {**settlement, "premium_uuid": premium["_id"], "receipt": premium["receipt"]}

    def _notice(
        self, transaction: Transaction, settlement: documents.Settlement, policy: Policy
    ) -> Mapping[str, Any]:
        """The notice's fields. Building them never fails the settlement: a payer's
        message may be lost, a payment may not."""
        if self.notice is None:
            return {}
        try:
            return self.notice(transaction, settlement, policy)
        except Exception:
            log.exception("premium_notice_failed transaction=%s", transaction["_id"])
            return {}

    async def settle_pending(self, limit: int = 1000) -> int:
        """Finish the settlements a crash left half done; returns how many."""
        pending = await self.transactions.unsettled(limit)
        for transaction in pending:
            await self.settle(transaction)
        return len(pending)

    async def _refuse(self, transaction: Transaction, reason: str, now: datetime) -> Transaction:
        log.warning("settlement_refused transaction=%s reason=%s", transaction["_id"], reason)
        return await self.transactions.record_settlement(
            transaction["_id"], {"status": "refused", "reason": reason, "settled_at": now}
        )


def settlement_of(transaction: Transaction) -> documents.Settlement:
    """The settlement of a transaction `Settlement.settle` returned: it always has one."""
    settlement = transaction["settlement"]
    if settlement is None:
        raise RuntimeError(f"transaction {transaction['_id']} has no settlement")
    return settlement


def payable_amounts(transaction: Transaction, policy: Policy) -> bool:
    """A payment or policy value of zero or less never activates a policy."""
    return transaction["amount"] > 0 and policy["value"] > 0


def receipt_number(transaction: Transaction) -> str:
    """Stable per transaction, so a re-run gives the same receipt."""
    return "R-" + transaction["_id"].replace("-", "")[:12].upper()
