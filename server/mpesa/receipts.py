"""One payment, two messages: an M-Pesa Express payment to a paybill with registered C2B
URLs also arrives as a C2B confirmation whose TransID is the MpesaReceiptNumber.
Whichever comes first, exactly one premium is made:

- the STK result first: its debit succeeded with the receipt (`provider_confirmation`,
  unique among M-Pesa Express debits); the confirmation of that TransID is stored
  `settled`, linked to the debit, and makes no transaction of its own;
- the confirmation first: its account number (the insuree number the prompt carried
  as AccountReference) and amount point to a waiting (or `unknown`) M-Pesa Express
  debit of that insuree; the confirmation completes it (the debit engine's `complete`,
  with the TransID as the receipt) and is stored `settled`, linked to it. The result
  callback that follows finds the debit succeeded with the same receipt: nothing more;
- both at once: the debit engine's compare-and-set decides, the other links.

A debit that succeeded by a status query has no receipt yet: the confirmation of its
insuree and amount brings it. A confirmation stored `unmatched` before the debit was
found (its prompt's answer still in flight) is linked when the debit succeeds."""

from __future__ import annotations

import logging

from server.debits.contract import ProviderStatus, StatusAnswer
from server.debits.engine import DebitEngine
from server.kernel.clock import Clock
from server.ledger import states
from server.ledger.documents import Transaction
from server.ledger.repository import TransactionRepository
from server.mpesa.client import ACCOUNT_REFERENCE_MAX
from server.mpesa.documents import C2BPayment, PaymentState, ReceivedPayment
from server.mpesa.repository import SETTLED, UNMATCHED, C2BPaymentRepository
from server.mpesa.stk import CHANNEL as STK_CHANNEL

log = logging.getLogger("gateway.stk")

C2B_ACTOR = "daraja_c2b"


class StkDebitStarting(Exception):
    """A C2B confirmation that may be the copy of a prompt whose push is still being
    answered (its debit `initiated`): processed again later (the inbox's replay), once
    the debit is waiting or decided, never applied to a policy meanwhile."""


class StkReceipts:
    def __init__(
        self,
        transactions: TransactionRepository,
        payments: C2BPaymentRepository,
        debits: DebitEngine,
        clock: Clock,
    ) -> None:
        self.transactions = transactions
        self.payments = payments
        self.debits = debits
        self.clock = clock

    async def c2b_state(
        self, payment: ReceivedPayment, insurees_transactions: list[Transaction] | None
    ) -> PaymentState | None:
        """The state a new C2B payment is stored in when it is the copy of an M-Pesa
        Express payment (settled, linked to its debit); None when it is not one.
        `insurees_transactions`: the transactions of the insuree its account number
        names, read with the match (None when no insuree has that number)."""
        debit = await self._debit_of(payment, insurees_transactions)
        if debit is None:
            return None
        log.info("c2b_is_stk_payment trans_id=%s transaction=%s", payment["trans_id"], debit["_id"])
        return self._linked(debit)

    async def _debit_of(
        self, payment: ReceivedPayment, known: list[Transaction] | None
    ) -> Transaction | None:
        """The debit this confirmation is the copy of. The debits of the insuree its
        account number names are already read. A prompt's AccountReference is the
        insuree number cut to 12 characters, so a 12-character account number may be
        another insuree's cut number: with no debit of its own insuree, the receipt
        alone is looked up. So it is when the number names no insuree, unless it is a
        confirmation's whole insuree number (shorter than 12 characters: M-Pesa echoes
        the prompt's reference, and no prompt carried a number no insuree has). A
        record (pull, statement) or an empty account number (a till) is always looked
        up."""
        if known is not None:
            found = await self._insurees_debit(payment, known)
            if found is not None or len(payment["bill_ref"]) < ACCOUNT_REFERENCE_MAX:
                return found
        elif not _may_be_a_copy(payment):
            return None
        return await self.transactions.find_one(
            {
                "channel": STK_CHANNEL,
                "provider_confirmation": payment["trans_id"],
                "amount": payment["amount"],
                "currency": payment["currency"],
            }
        )

    async def _insurees_debit(
        self, payment: ReceivedPayment, known: list[Transaction]
    ) -> Transaction | None:
        """The debit of the account number's insuree this confirmation is the copy of:
        by receipt, else an open debit of the same money it completes, else one that
        succeeded without a receipt."""
        trans_id = payment["trans_id"]
        same_money = [
            debit
            for debit in known
            if debit.get("channel") == STK_CHANNEL
            and (debit["amount"], debit["currency"]) == (payment["amount"], payment["currency"])
        ]
        for debit in same_money:
            if debit.get("provider_confirmation") == trans_id:
                return debit
        open_debits = [
            debit
            for debit in same_money
            if debit["status"] in (states.INITIATED, states.PROMPT_SENT, states.UNKNOWN)
        ]
        if any(debit["status"] == states.INITIATED for debit in open_debits):
            raise StkDebitStarting(
                f"an M-Pesa Express debit of insuree {payment['bill_ref']} is being "
                "started: the confirmation is processed again once it is answered"
            )
        if (open_debits or _unreceipted(same_money)) and await self._stored_before(payment):
            # Stored already, by another delivery or record of this TransID: only that
            # payment may apply it (this one is a duplicate or differs from it).
            return None
        if len(open_debits) == 1:
            answer = StatusAnswer(
                ProviderStatus.SUCCEEDED,
                open_debits[0].get("provider_reference"),
                "paid: the C2B confirmation of the prompt's payment",
                receipt=trans_id,
                amount=payment["amount"],
            )
            completion = await self.debits.complete(open_debits[0], answer, C2B_ACTOR)
            if completion.transaction.get("provider_confirmation") == trans_id:
                return completion.transaction
        return await self._claim_receipt(payment, same_money)

    async def _claim_receipt(
        self, payment: ReceivedPayment, same_money: list[Transaction]
    ) -> Transaction | None:
        """A debit that succeeded by a status query (no receipt) takes this TransID."""
        unreceipted = _unreceipted(same_money)
        if not unreceipted:
            return None
        newest = max(unreceipted, key=lambda debit: debit.get("paid_at") or debit["created_at"])
        return await self.transactions.set_fields(
            newest["_id"],
            states.SUCCEEDED,
            {"provider_confirmation": payment["trans_id"]},
            only_if_missing="provider_confirmation",
        )

    async def _stored_before(self, payment: ReceivedPayment) -> bool:
        """Whether a payment of this TransID is stored from another inbox entry."""
        stored = await self.payments.get(payment["trans_id"])
        return stored is not None and stored["inbox_id"] != payment["inbox_id"]

    def _linked(self, debit: Transaction) -> PaymentState:
        settlement = debit.get("settlement")
        now = self.clock.now()
        reason = f"the M-Pesa Express payment of transaction {debit['_id']}"
        return {
            "status": SETTLED,
            "updated_at": now,
            "policy_uuid": debit["policy_uuid"],
            "transaction_uuid": debit["_id"],
            "receipt": settlement.get("receipt") if settlement else None,
            "allocation_history": [
                {
                    "by": "system",
                    "reason": reason,
                    "policy_uuid": debit["policy_uuid"],
                    "status": SETTLED,
                    "at": now,
                }
            ],
        }

    async def link_later(self, debit: Transaction) -> C2BPayment | None:
        """A C2B payment of the debit's receipt stored `unmatched` (it came while the
        debit could not be found) becomes `settled`, linked to the debit."""
        receipt = debit.get("provider_confirmation")
        if not receipt:
            return None
        payment = await self.payments.get(receipt)
        if payment is None or payment["status"] != UNMATCHED:
            return None
        if (payment["amount"], payment["currency"]) != (debit["amount"], debit["currency"]):
            return None
        linked = self._linked(debit)
        moved = await self.payments.move(
            receipt,
            (UNMATCHED,),
            SETTLED,
            self.clock.now(),
            {
                "unmatched_reason": None,
                "policy_uuid": debit["policy_uuid"],
                "transaction_uuid": debit["_id"],
                "receipt": linked.get("receipt"),
            },
            {
                "by": "system",
                "reason": linked["allocation_history"][0]["reason"],
                "policy_uuid": debit["policy_uuid"],
            },
        )
        if moved is not None:
            log.info("c2b_linked_to_stk trans_id=%s transaction=%s", receipt, debit["_id"])
        return moved


def _unreceipted(debits: list[Transaction]) -> list[Transaction]:
    """Debits that succeeded by a status query, without the receipt."""
    return [
        debit
        for debit in debits
        if debit["status"] == states.SUCCEEDED and not debit.get("provider_confirmation")
    ]


def _may_be_a_copy(payment: ReceivedPayment) -> bool:
    """Whether a payment whose account number names no insuree may be the copy of an
    M-Pesa Express payment (see StkReceipts._debit_of)."""
    bill_ref = payment["bill_ref"]
    return "recovered" in payment or not bill_ref or len(bill_ref) >= ACCOUNT_REFERENCE_MAX
