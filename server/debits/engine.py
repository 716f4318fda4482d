"""The one debit engine: initiated -> <waiting> -> processing -> succeeded | failed,
plus `unknown` (the provider's answer to the completing call was lost) and `expired`
(the payer never acted in time). Every debit channel runs through it; its adapter
(server.debits.contract) only speaks to the provider.

Amount, payer, policy and PSP are always read from the stored transaction, never
from the process request. A payer's code passes through to the provider and is
never stored."""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn

from server.debits.contract import DebitAdapter, DebitOrder, code_attempts, payer_deadline
from server.debits.registry import ChannelRegistry
from server.insurance.documents import Policy
from server.insurance.repository import IDLE
from server.insurance.service import InsureeService, PolicyService, require_exact_amount
from server.integrations.transport import (
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.clock import Clock
from server.kernel.documents import DuplicateDocument
from server.kernel.errors import ApiError, Conflict, ServiceUnavailable, ValidationFailed
from server.kernel.money import format_amount
from server.ledger import states
from server.ledger.documents import Transaction
from server.ledger.repository import TransactionRepository
from server.ledger.service import LedgerService
from server.ledger.settlement import Settlement
from server.ledger.transactions import new_transaction
from server.psps.service import PspService

log = logging.getLogger("gateway.debits")

SYSTEM = "system"


class ProviderRefused(ApiError):
    status = 502
    code = "provider_rejected"


class DebitEngine:
    def __init__(
        self,
        channels: ChannelRegistry,
        transactions: TransactionRepository,
        ledger: LedgerService,
        policies: PolicyService,
        insurees: InsureeService,
        psps: PspService,
        settlement: Settlement,
        clock: Clock,
    ) -> None:
        self.channels = channels
        self.transactions = transactions
        self.ledger = ledger
        self.policies = policies
        self.insurees = insurees
        self.psps = psps
        self.settlement = settlement
        self.clock = clock

    # --- start ----------------------------------------------------------

    async def initiate(
        self, policy_uuid: str, psp_uuid: str, amount: str, actor: str
    ) -> Transaction:
        """Check everything the gateway knows, store the debit, then ask the provider."""
        policy = await self.policies.get(policy_uuid)
        insuree = await self.insurees.get(policy["chf_id"])
        psp = await self.psps.get(psp_uuid)
        adapter = self._adapter_for(psp)
        payer = adapter.payer_of(insuree)
        _check_policy(policy, psp, amount)
        adapter.require_ready()
        pin = self.psps.merchant_pin(psp) if adapter.needs_merchant_pin else None
        now = self.clock.now()
        transaction = new_transaction(
            transaction_uuid=str(uuid.uuid4()),
            channel=adapter.channel,
            status=states.INITIATED,
            policy=policy,
            psp_uuid=psp["_id"],
            provider_reference=None,
            actor=actor,
            at=now,
            reason="",
            payer=payer,
            expires_at=None,
            code_attempts=0,
        )
        try:
            await self.transactions.insert(transaction)
        except DuplicateDocument:
            raise Conflict(
                "another payment of this policy is in progress", code="payment_in_progress"
            ) from None
        order = DebitOrder(
            transaction["_id"],
            payer,
            psp["account"],
            format_amount(policy["value"], policy["currency"]),
            policy["currency"],
            insuree["chf_id"],
            pin,
        )
        try:
            reference = await adapter.start(order)
        except ProviderRejected as err:
            await self._fail(transaction, states.INITIATED, err.code, err.reason, actor)
            raise ProviderRefused(
                f"{adapter.label} refused the debit: {err.reason}", {"provider_code": err.code}
            ) from None
        except (ProviderUnavailable, ProviderOutcomeUnknown) as err:
            # Starting a debit only asks the payer: without the completing call no
            # money can move.
            await self._fail(transaction, states.INITIATED, "unavailable", err.message, actor)
            raise ServiceUnavailable(
                f"{adapter.label} did not answer; no money moved, try again",
                code="provider_unavailable",
            ) from None
        waiting = await self._move(
            transaction["_id"],
            states.INITIATED,
            adapter.waiting_state,
            actor=actor,
            changes={"provider_reference": reference, "expires_at": now + adapter.payer_lifetime},
        )
        log.info(
            "debit_started transaction=%s channel=%s policy=%s",
            transaction["_id"],
            adapter.channel,
            policy["_id"],
        )
        return waiting

    def _adapter_for(self, psp: dict[str, Any]) -> DebitAdapter:
        adapter = self.channels.debit_for_psp(psp["kind"])
        if adapter is None or not psp["active"]:
            kinds = ", ".join(sorted(adapter.psp_kind for adapter in self.channels.debits))
            raise ValidationFailed(
                f"the PSP must be an active PSP of a debit channel (kind {kinds})",
                code="invalid_psp",
            )
        return adapter

    # --- complete -------------------------------------------------------

    async def process(self, transaction_uuid: str, code: str, actor: str) -> Transaction:
        """Complete a debit with the payer's code; exactly one caller gets to try."""
        transaction = await self.ledger.get(transaction_uuid)
        adapter = self._adapter_of(transaction)
        adapter.require_ready()
        waiting = adapter.waiting_state
        if transaction["status"] == waiting and self._expired(transaction):
            await self._expire(transaction)
        claimed = await self.transactions.transition(
            transaction_uuid, waiting, states.PROCESSING, self.clock.now(), actor=actor
        )
        if claimed is None:
            await self._refuse_state(transaction_uuid)
        reference = claimed["provider_reference"]
        if reference is None:  # never: a debit reaches its waiting state with its reference
            raise RuntimeError(f"debit {transaction_uuid} has no provider reference")
        try:
            receipt = await adapter.confirm(reference, code)
        except ProviderRejected as err:
            return await self._rejected(adapter, claimed, err, actor)
        except ProviderUnavailable as err:
            # Nothing reached the provider: the code may be entered again.
            await self._move(
                claimed["_id"], states.PROCESSING, waiting, actor=actor, reason=err.message
            )
            raise ServiceUnavailable(
                f"{adapter.label} is unreachable; try the code again", code="provider_unavailable"
            ) from None
        except ProviderOutcomeUnknown as err:
            log.warning(
                "debit_outcome_unknown transaction=%s reason=%s", claimed["_id"], err.message
            )
            return await self._move(
                claimed["_id"], states.PROCESSING, states.UNKNOWN, actor=actor, reason=err.message
            )
        now = self.clock.now()
        succeeded = await self._move(
            claimed["_id"],
            states.PROCESSING,
            states.SUCCEEDED,
            actor=actor,
            changes={"paid_at": now, "provider_confirmation": receipt},
        )
        log.info("debit_succeeded transaction=%s", claimed["_id"])
        return await self.settlement.settle(succeeded)

    def _adapter_of(self, transaction: Transaction) -> DebitAdapter:
        adapter = self.channels.debit(transaction["channel"])
        if adapter is None:
            raise Conflict(
                f"the transaction is a {transaction['channel']} payment, not a debit",
                {"channel": transaction["channel"]},
                code="not_a_debit",
            )
        return adapter

    async def _rejected(
        self, adapter: DebitAdapter, transaction: Transaction, err: ProviderRejected, actor: str
    ) -> Transaction:
        attempts = code_attempts(transaction) + 1
        if adapter.wrong_code(err) and attempts < adapter.max_code_attempts:
            return await self._move(
                transaction["_id"],
                states.PROCESSING,
                adapter.waiting_state,
                actor=actor,
                reason="wrong_otp",
                increments={"code_attempts": 1},
                changes={"failure": {"code": err.code, "message": err.reason}},
            )
        if adapter.wrong_code(err):
            return await self._fail(
                transaction,
                states.PROCESSING,
                "too_many_wrong_otps",
                err.reason,
                actor,
                increments={"code_attempts": 1},
            )
        return await self._fail(transaction, states.PROCESSING, err.code, err.reason, actor)

    async def _fail(
        self,
        transaction: Transaction,
        current: str,
        code: str,
        message: str,
        actor: str,
        increments: dict[str, int] | None = None,
    ) -> Transaction:
        log.info("debit_failed transaction=%s code=%s", transaction["_id"], code)
        return await self._move(
            transaction["_id"],
            current,
            states.FAILED,
            actor=actor,
            reason=code,
            changes={"failure": {"code": code, "message": message}},
            increments=increments,
        )

    async def _move(
        self,
        transaction_uuid: str,
        current: str,
        target: str,
        *,
        actor: str,
        reason: str = "",
        changes: dict[str, Any] | None = None,
        increments: dict[str, int] | None = None,
    ) -> Transaction:
        """A transition this engine holds the debit for (it claimed the state): one that
        finds another state means someone else moved it, and is refused as such."""
        moved = await self.transactions.transition(
            transaction_uuid,
            current,
            target,
            self.clock.now(),
            actor=actor,
            reason=reason,
            changes=changes,
            increments=increments,
        )
        if moved is None:
            await self._refuse_state(transaction_uuid)
        return moved

    # --- operator actions -----------------------------------------------

    async def resolve(
        self, transaction_uuid: str, outcome: str, provider_reference: str, reason: str, actor: str
    ) -> Transaction:
        """An operator settles an `unknown` debit after checking with the provider."""
        now = self.clock.now()
        if outcome == states.SUCCEEDED:
            moved = await self._move(
                transaction_uuid,
                states.UNKNOWN,
                states.SUCCEEDED,
                actor=actor,
                reason=reason,
                changes={"paid_at": now, "provider_confirmation": provider_reference},
            )
        else:
            moved = await self._move(
                transaction_uuid,
                states.UNKNOWN,
                states.FAILED,
                actor=actor,
                reason=reason,
                changes={"failure": {"code": "resolved_failed", "message": reason}},
            )
        log.info("debit_resolved transaction=%s outcome=%s by=%s", transaction_uuid, outcome, actor)
        return await self.settlement.settle(moved) if outcome == states.SUCCEEDED else moved

    async def expire(self, transaction_uuid: str, reason: str, actor: str) -> Transaction:
        """An operator gives up on a debit whose payer will not act."""
        transaction = await self.ledger.get(transaction_uuid)
        adapter = self.channels.debit(transaction["channel"])
        if adapter is None or transaction["status"] != adapter.waiting_state:
            await self._refuse_state(transaction_uuid)
        return await self._move(
            transaction_uuid, adapter.waiting_state, states.EXPIRED, actor=actor, reason=reason
        )

    async def _refuse_state(self, transaction_uuid: str) -> NoReturn:
        current = await self.ledger.get(transaction_uuid)
        raise Conflict(
            f"the transaction is {current['status']}",
            {"status": current["status"]},
            code="invalid_state",
        )

    # --- expiry ---------------------------------------------------------

    def _expired(self, transaction: Transaction) -> bool:
        expires = payer_deadline(transaction)
        return expires is not None and self.clock.now() >= expires

    async def _expire(self, transaction: Transaction) -> Transaction | None:
        return await self.transactions.transition(
            transaction["_id"],
            transaction["status"],
            states.EXPIRED,
            self.clock.now(),
            actor=SYSTEM,
            reason="otp_lifetime_passed",
        )

    async def expire_stale(self, limit: int = 500) -> int:
        """Expire debits whose payer never acted in time; returns how many."""
        stale = await self.transactions.stale(self.channels.waiting_states, self.clock.now(), limit)
        expired = [item for item in stale if await self._expire(item) is not None]
        return len(expired)


def _check_policy(policy: Policy, psp: dict[str, Any], amount: str) -> None:
    if policy["status"] != IDLE:
        raise Conflict(
            "the policy is not awaiting payment",
            {"status": policy["status"]},
            code="policy_not_idle",
        )
    if policy["currency"] != psp["currency"]:
        raise ValidationFailed(
            f"the policy is in {policy['currency']}, the PSP settles in {psp['currency']}",
            code="currency_mismatch",
        )
    require_exact_amount(policy, amount)
