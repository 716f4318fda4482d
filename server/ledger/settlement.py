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
from datetime import datetime
from typing import Any

from server.insurance.repository import PolicyRepository
from server.kernel.clock import Clock
from server.ledger.repository import PremiumRepository, TransactionRepository

log = logging.getLogger("gateway.settlement")

PAY_TYPE_MOBILE = "M"


class Settlement:
    def __init__(self, transactions: TransactionRepository, premiums: PremiumRepository,
                 policies: PolicyRepository, clock: Clock) -> None:
        self.transactions = transactions
        self.premiums = premiums
        self.policies = policies
        self.clock = clock

    async def settle(self, transaction: dict[str, Any]) -> dict[str, Any]:
        """Settle a succeeded transaction; returns the transaction with its settlement.

        A policy that is no longer idle (paid meanwhile through another channel) is
        not activated twice, and a payment or policy value of zero or less never
        activates one: the settlement is recorded as `refused` for an operator."""
        if transaction.get("settlement"):
            return transaction
        now = self.clock.now()
        paid_at: datetime = transaction.get("paid_at") or now
        policy = await self.policies.find_one({"_id": transaction["policy_uuid"]})
        if policy is None:
            return await self._refuse(transaction, "policy_missing", now)
        if policy.get("activated_by") != transaction["_id"]:
            if transaction["amount"] <= 0 or policy["value"] <= 0:
                return await self._refuse(transaction, "amount_not_positive", now)
            effective = max(paid_at, policy["start_date"])
            activated = await self.policies.activate(policy["_id"], transaction["_id"],
                                                     effective, now)
            if activated is None:
                current = await self.policies.find_one({"_id": policy["_id"]})
                if current is None or current.get("activated_by") != transaction["_id"]:
                    return await self._refuse(transaction, "policy_not_idle", now)
                activated = current
            policy = activated
        premium = await self.premiums.insert_once({
            "_id": str(uuid.uuid4()),
            "transaction_uuid": transaction["_id"],
            "policy_uuid": policy["_id"],
            "chf_id": policy["chf_id"],
            "amount": transaction["amount"],
            "currency": transaction["currency"],
            "pay_date": paid_at,
            "pay_type": PAY_TYPE_MOBILE,
            "receipt": receipt_number(transaction),
            "created_at": now,
        })
        settlement = {"status": "settled", "premium_uuid": premium["_id"],
                      "receipt": premium["receipt"], "policy_status": policy["status"],
                      "effective_date": policy["effective_date"], "settled_at": now}
        log.info("settled transaction=%s policy=%s premium=%s", transaction["_id"],
                 policy["_id"], premium["_id"])
        return await self.transactions.record_settlement(transaction["_id"], settlement)

    async def settle_pending(self, limit: int = 1000) -> int:
        """Finish the settlements a crash left half done; returns how many."""
        pending = await self.transactions.unsettled(limit)
        for transaction in pending:
            await self.settle(transaction)
        return len(pending)

    async def _refuse(self, transaction: dict[str, Any], reason: str,
                      now: datetime) -> dict[str, Any]:
        log.warning("settlement_refused transaction=%s reason=%s", transaction["_id"], reason)
        return await self.transactions.record_settlement(
            transaction["_id"], {"status": "refused", "reason": reason, "settled_at": now})


def receipt_number(transaction: dict[str, Any]) -> str:
    """Stable per transaction, so a re-run gives the same receipt."""
    return "R-" + transaction["_id"].replace("-", "")[:12].upper()
