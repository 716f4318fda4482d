"""Applying confirmed C2B payments to policies.

A paybill payment whose account number (BillRefNumber) is an insuree number
with exactly one idle policy of exactly that amount settles that policy.
Otherwise it is `unmatched` with the reason, for an operator to allocate.

Payment statuses: a new payment is stored `allocating` (to the policy it matched) or
`unmatched`; allocating -> settled | unmatched; unmatched -> allocating (operator)
-> ... Leaving `unmatched` for `allocating` is a compare-and-set claim, so one
payment is never applied twice; an allocation cut off by a crash is resumed from the
policy it recorded. A payment to a shortcode the gateway does not serve is stored
`held`, flagged for review, and never leaves that state: no policy is paid from it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from server.insurance.documents import Insuree, Policy
from server.insurance.repository import IDLE, InsureeRepository
from server.insurance.service import PolicyService
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, NotFound, ValidationFailed
from server.kernel.money import format_amount
from server.ledger.documents import Transaction
from server.ledger.incoming import IncomingPayments, PolicyBusy, PolicyNotPayable
from server.ledger.repository import TRANSACTIONS
from server.ledger.settlement import settlement_of
from server.mpesa.documents import (
    AllocationEvent,
    C2BPayment,
    PaymentState,
    ReceivedPayment,
    UnmatchedDetail,
)
from server.mpesa.repository import ALLOCATING, HELD, SETTLED, UNMATCHED, C2BPaymentRepository

log = logging.getLogger("gateway.c2b")

CHANNEL = "mpesa_c2b"
SHORTCODE_NOT_SERVED = "shortcode_not_served"
# The most distinct policy values an amount_mismatch keeps for its words.
NEEDED_SHOWN = 5
# The unmatched reasons whose words need more than the payment's own fields.
DETAILED_REASONS = ("amount_mismatch", "several_candidates")
# Transaction ids are derived from (TransID, policy): a re-run finds its own transaction.
_TRANSACTION_IDS = uuid.UUID("5f1c9a3e-8a57-4c0e-9d0b-6c1b2f7f4e21")


def transaction_id(trans_id: str, policy_uuid: str) -> str:
    return str(uuid.uuid5(_TRANSACTION_IDS, f"{CHANNEL}:{trans_id}:{policy_uuid}"))


@dataclass(frozen=True)
class AccountMatch:
    """What an account number (BillRefNumber) points to: the insuree of that number, its
    policies awaiting payment, and its transactions (which tell whether a payment is the
    copy of one already received another way)."""

    insuree: Insuree | None
    idle: list[Policy]
    transactions: list[Transaction]


class Allocation:
    def __init__(
        self,
        payments: C2BPaymentRepository,
        insurees: InsureeRepository,
        policies: PolicyService,
        incoming: IncomingPayments,
        clock: Clock,
    ) -> None:
        self.payments = payments
        self.insurees = insurees
        self.policies = policies
        self.incoming = incoming
        self.clock = clock

    async def match(self, bill_ref: str, *, with_transactions: bool = True) -> AccountMatch:
        """One round trip: the insuree, its idle policies and (unless not wanted) its
        transactions."""
        if not bill_ref:
            return AccountMatch(None, [], [])
        joined = (TRANSACTIONS,) if with_transactions else ()
        await self.policies.refresh(bill_ref)
        insuree, idle, others = await self.insurees.with_idle_policies(bill_ref, joined)
        # The aggregate answers plain dicts: the insuree's transactions, as stored.
        transactions = cast(list[Transaction], others.get(TRANSACTIONS, []))
        return AccountMatch(insuree, idle, transactions)

    async def candidate(
        self, bill_ref: str, amount: int, currency: str, match: AccountMatch | None = None
    ) -> tuple[Policy | None, str]:
        """The one policy the account number and amount point to, or the reason why none."""
        if match is None:
            match = await self.match(bill_ref, with_transactions=False)
        insuree, idle = match.insuree, match.idle
        if insuree is None:
            return None, "unknown_account"
        if not idle:
            return None, "no_idle_policy"
        same = [
            policy
            for policy in idle
            if policy["value"] == amount and policy["currency"] == currency
        ]
        if not same:
            return None, "amount_mismatch"
        if len(same) > 1:
            return None, "several_candidates"
        return same[0], ""

    async def first_state(
        self, payment: ReceivedPayment, match: AccountMatch | None = None
    ) -> tuple[PaymentState, Policy | None]:
        """The fields a new payment is stored with: `allocating` to the one policy its
        account number and amount point to, or `unmatched` with the reason; and that
        policy, for `auto`. Matching before the insert saves a write per payment; the
        insert stays the exactly-once point (unique TransID), and `auto` then completes
        an allocating payment."""
        if match is None:
            match = await self.match(payment["bill_ref"], with_transactions=False)
        policy, reason = await self.candidate(
            payment["bill_ref"], payment["amount"], payment["currency"], match
        )
        now = self.clock.now()
        if policy is None:
            return {
                "status": UNMATCHED,
                "updated_at": now,
                "unmatched_reason": reason,
                "unmatched_detail": unmatched_detail(
                    reason, match, payment["amount"], payment["currency"]
                ),
                "allocation_history": [_event(UNMATCHED, reason, None, now)],
            }, None
        return {
            "status": ALLOCATING,
            "updated_at": now,
            "allocation": {"policy_uuid": policy["_id"], "by": "system"},
            "allocation_history": [
                _event(ALLOCATING, "matched by account number", policy["_id"], now)
            ],
        }, policy

    async def with_detail(self, payment: C2BPayment) -> C2BPayment:
        """The payment, with the detail its unmatched reason's words need when it was
        stored before details were (read from its account's idle policies now; not
        stored). For one payment: a list renders stored details only."""
        reason = payment.get("unmatched_reason")
        if reason not in DETAILED_REASONS or payment.get("unmatched_detail") is not None:
            return payment
        match = await self.match(payment["bill_ref"], with_transactions=False)
        detail = unmatched_detail(reason, match, payment["amount"], payment["currency"])
        return {**payment, "unmatched_detail": detail}

    def held_state(self, inbox_id: str, reason: str) -> PaymentState:
        """The fields a new payment that must never settle is stored with: `held`, with
        the reason, and flagged for review by the confirmation that brought it."""
        now = self.clock.now()
        return {
            "status": HELD,
            "updated_at": now,
            "unmatched_reason": reason,
            "allocation_history": [_event(HELD, reason, None, now)],
            "review": [{"inbox_id": inbox_id, "reason": reason, "at": now}],
            "review_open": True,
        }

    async def auto(self, payment: C2BPayment, policy: Policy | None = None) -> C2BPayment:
        """Complete a payment stored as allocating (new, or cut off by a crash);
        `policy` is the one `first_state` matched, when the caller has it."""
        if payment["status"] == ALLOCATING:
            return await self._complete(payment, policy)
        if payment["status"] == UNMATCHED:
            log.info(
                "c2b_unmatched trans_id=%s reason=%s",
                payment["trans_id"],
                payment["unmatched_reason"],
            )
        return payment

    async def allocate(self, trans_id: str, policy_uuid: str, actor: str, note: str) -> C2BPayment:
        """An operator applies an unmatched payment to a policy."""
        payment = await self.payments.get(trans_id)
        if payment is None:
            raise NotFound(f"no C2B payment with TransID {trans_id}")
        require_unmatched(payment)
        if payment["amount"] <= 0:
            paid = format_amount(payment["amount"], payment["currency"])
            raise ValidationFailed(
                f"the payment ({paid} {payment['currency']}) is not more "
                "than zero: it cannot pay a policy",
                {"amount": paid, "currency": payment["currency"]},
                code="amount_not_positive",
            )
        policy = await self.policies.get(policy_uuid)
        if policy["status"] != IDLE:
            raise Conflict(
                "the policy is not awaiting payment",
                {"status": policy["status"]},
                code="policy_not_idle",
            )
        if (policy["value"], policy["currency"]) != (payment["amount"], payment["currency"]):
            expected = format_amount(policy["value"], policy["currency"])
            paid = format_amount(payment["amount"], payment["currency"])
            raise ValidationFailed(
                f"the payment ({paid} {payment['currency']}) does not equal the policy's "
                f"value ({expected} {policy['currency']})",
                {"expected": expected, "currency": policy["currency"]},
                code="amount_mismatch",
            )
        claimed = await self._claim(trans_id, policy_uuid, actor, note)
        if claimed is None:
            current = await self._stored(trans_id)
            raise Conflict(
                f"the payment is {current['status']}",
                {"status": current["status"]},
                code="invalid_state",
            )
        result = await self._complete(claimed)
        if result["status"] != SETTLED:
            raise Conflict(
                f"the payment could not be applied: {result['unmatched_reason']}",
                {"reason": result["unmatched_reason"]},
                code="not_allocated",
            )
        return result

    async def _claim(
        self, trans_id: str, policy_uuid: str, actor: str, note: str
    ) -> C2BPayment | None:
        return await self.payments.move(
            trans_id,
            (UNMATCHED,),
            ALLOCATING,
            self.clock.now(),
            {"allocation": {"policy_uuid": policy_uuid, "by": actor}},
            {"by": actor, "reason": note, "policy_uuid": policy_uuid},
        )

    async def _complete(self, payment: C2BPayment, policy: Policy | None = None) -> C2BPayment:
        allocation = payment.get("allocation")
        if allocation is None:  # never: a payment is allocating to the policy it names
            raise RuntimeError(f"the C2B payment {payment['trans_id']} names no policy")
        policy_uuid = allocation["policy_uuid"]
        actor = allocation["by"]
        if policy is None or policy["_id"] != policy_uuid:
            policy = await self.policies.get(policy_uuid)
        transaction = self.incoming.new_transaction(
            transaction_id(payment["trans_id"], policy_uuid),
            CHANNEL,
            policy,
            None,
            payment["trans_id"],
            actor,
            payer=payment["msisdn"],
        )
        reason = ""
        try:
            recorded = await self.incoming.record(transaction, policy)
        except PolicyBusy:
            reason = "payment_in_progress"
        except PolicyNotPayable:
            reason = "policy_not_idle"
        else:
            settlement = settlement_of(recorded)
            if settlement["status"] != "settled":
                reason = settlement.get("reason") or "not_settled"
        now = self.clock.now()
        if reason:
            log.info("c2b_unmatched trans_id=%s reason=%s", payment["trans_id"], reason)
            moved = await self.payments.move(
                payment["trans_id"],
                (ALLOCATING,),
                UNMATCHED,
                now,
                {
                    "unmatched_reason": reason,
                    "unmatched_detail": {"policy_uuid": policy_uuid},
                    "allocation": None,
                },
                {"by": actor, "reason": reason, "policy_uuid": policy_uuid},
            )
        else:
            log.info("c2b_settled trans_id=%s policy=%s", payment["trans_id"], policy_uuid)
            moved = await self.payments.move(
                payment["trans_id"],
                (ALLOCATING,),
                SETTLED,
                now,
                {
                    "unmatched_reason": None,
                    "unmatched_detail": None,
                    "policy_uuid": policy_uuid,
                    "transaction_uuid": recorded["_id"],
                    "receipt": settlement_of(recorded)["receipt"],
                },
                {"by": actor, "reason": "settled", "policy_uuid": policy_uuid},
            )
        return moved or await self._stored(payment["trans_id"])

    async def _stored(self, trans_id: str) -> C2BPayment:
        """A payment read again after a compare-and-set missed: it was there a moment
        ago, and payments are never deleted."""
        payment = await self.payments.get(trans_id)
        if payment is None:
            raise RuntimeError(f"the C2B payment {trans_id} vanished while being allocated")
        return payment


def require_unmatched(payment: C2BPayment) -> None:
    """Only an unmatched payment is allocated (Conflict otherwise): a held one never,
    one being applied or applied already not again."""
    if payment["status"] == HELD:
        raise Conflict(
            f"the payment went to shortcode {payment['shortcode']}, which this "
            "gateway does not serve: it is kept for review and never applied "
            "to a policy",
            {
                "status": HELD,
                "reason": payment["unmatched_reason"],
                "shortcode": payment["shortcode"],
            },
            code=payment["unmatched_reason"],
        )
    if payment["status"] != UNMATCHED:
        raise Conflict(
            f"the payment is {payment['status']}: only an unmatched payment is allocated",
            {"status": payment["status"]},
            code="invalid_state",
        )


def unmatched_detail(
    reason: str, match: AccountMatch, amount: int, currency: str
) -> UnmatchedDetail:
    """What the words for `reason` need (server.mpesa.reasons), from the match that
    decided it: stored with the payment in its insert, so no list reads policies."""
    if reason == "amount_mismatch":
        values = sorted({(policy["value"], policy["currency"]) for policy in match.idle})
        return {
            "needed": [{"amount": value, "currency": code} for value, code in values[:NEEDED_SHOWN]]
        }
    if reason == "several_candidates":
        same = [p for p in match.idle if (p["value"], p["currency"]) == (amount, currency)]
        return {"candidates": len(same)}
    return {}


def _event(status: str, reason: str, policy_uuid: str | None, at: datetime) -> AllocationEvent:
    """An allocation the gateway itself decided."""
    return {
        "by": "system",
        "reason": reason,
        "policy_uuid": policy_uuid,
        "status": status,
        "at": at,
    }
