"""The OTP debit flow: initiated -> otp_sent -> processing -> succeeded | failed,
plus `unknown` (verifyCode's answer was lost) and `expired` (OTP never entered).

Amount, payer, policy and PSP are always read from the stored transaction, never
from the process request. The OTP passes through to Qmoney and is never stored."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

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
from server.ledger.repository import TransactionRepository
from server.ledger.service import LedgerService
from server.ledger.settlement import Settlement
from server.psps.service import PspService
from server.qmoney.client import WRONG_OTP, QmoneyClient

log = logging.getLogger("gateway.qmoney")

CHANNEL = "qmoney"


class ProviderRefused(ApiError):
    status = 502
    code = "provider_rejected"


class DebitService:
    def __init__(self, transactions: TransactionRepository, ledger: LedgerService,
                 policies: PolicyService,
                 insurees: InsureeService, psps: PspService, client: QmoneyClient | None,
                 settlement: Settlement, clock: Clock, *, otp_lifetime: timedelta,
                 max_otp_attempts: int) -> None:
        self.transactions = transactions
        self.ledger = ledger
        self.policies = policies
        self.insurees = insurees
        self.psps = psps
        self.client = client
        self.settlement = settlement
        self.clock = clock
        self.otp_lifetime = otp_lifetime
        self.max_otp_attempts = max_otp_attempts

    # --- start ----------------------------------------------------------

    async def initiate(self, policy_uuid: str, psp_uuid: str, amount: str,
                       actor: str) -> dict[str, Any]:
        """Check everything the gateway knows, then ask Qmoney to send the OTP."""
        policy = await self.policies.get(policy_uuid)
        insuree = await self.insurees.get(policy["chf_id"])
        psp = await self.psps.get(psp_uuid)
        self._check_debit(policy, insuree, psp, amount)
        client = self._client()
        pin = self.psps.merchant_pin(psp)
        now = self.clock.now()
        transaction = {
            "_id": str(uuid.uuid4()), "channel": CHANNEL, "status": states.INITIATED,
            "open": True, "amount": policy["value"], "currency": policy["currency"],
            "policy_uuid": policy["_id"], "chf_id": insuree["chf_id"],
            "payer_wallet": insuree["wallet"], "psp_uuid": psp["_id"],
            "provider_reference": None, "otp_attempts": 0, "otp_expires_at": None,
            "failure": None, "settlement": None, "created_by": actor,
            "created_at": now, "updated_at": now,
            "history": [{"from": None, "to": states.INITIATED, "at": now, "reason": "",
                         "actor": actor}],
        }
        try:
            await self.transactions.insert(transaction)
        except DuplicateDocument:
            raise Conflict("another payment of this policy is in progress",
                           code="payment_in_progress") from None
        try:
            reference = await client.get_money(
                insuree["wallet"], psp["account"],
                format_amount(policy["value"], policy["currency"]), pin)
        except ProviderRejected as err:
            await self._fail(transaction, states.INITIATED, err.code, err.reason, actor)
            raise ProviderRefused(f"Qmoney refused the debit: {err.reason}",
                                  {"provider_code": err.code}) from None
        except (ProviderUnavailable, ProviderOutcomeUnknown) as err:
            # getMoney only sends an OTP: without verifyCode no money can move.
            await self._fail(transaction, states.INITIATED, "unavailable", err.message, actor)
            raise ServiceUnavailable("Qmoney did not answer; no money moved, try again",
                                     code="provider_unavailable") from None
        sent = await self.transactions.transition(
            transaction["_id"], states.INITIATED, states.OTP_SENT, self.clock.now(),
            actor=actor, changes={"provider_reference": reference,
                                  "otp_expires_at": now + self.otp_lifetime})
        log.info("debit_otp_sent transaction=%s policy=%s", transaction["_id"], policy["_id"])
        return sent

    def _client(self) -> QmoneyClient:
        if self.client is None:
            raise ServiceUnavailable("Qmoney is not configured (qmoney.username, "
                                     "qmoney.password)", code="provider_not_configured")
        return self.client

    def _check_debit(self, policy: dict, insuree: dict, psp: dict, amount: str) -> None:
        if psp["kind"] != "qmoney" or not psp["active"]:
            raise ValidationFailed("the PSP must be an active Qmoney PSP", code="invalid_psp")
        if not insuree.get("wallet"):
            raise ValidationFailed(f"insuree {insuree['chf_id']} has no Qmoney wallet",
                                   code="no_wallet")
        if policy["status"] != IDLE:
            raise Conflict("the policy is not awaiting payment", {"status": policy["status"]},
                           code="policy_not_idle")
        if policy["currency"] != psp["currency"]:
            raise ValidationFailed(f"the policy is in {policy['currency']}, the PSP settles "
                                   f"in {psp['currency']}", code="currency_mismatch")
        require_exact_amount(policy, amount)

    # --- complete -------------------------------------------------------

    async def process(self, transaction_uuid: str, otp: str, actor: str) -> dict[str, Any]:
        """Verify the payer's OTP with Qmoney; exactly one caller gets to try."""
        client = self._client()
        transaction = await self.ledger.get(transaction_uuid)
        if transaction["status"] == states.OTP_SENT and self._expired(transaction):
            await self._expire(transaction)
        claimed = await self.transactions.transition(
            transaction_uuid, states.OTP_SENT, states.PROCESSING, self.clock.now(), actor=actor)
        if claimed is None:
            await self._refuse_state(transaction_uuid)
        try:
            await client.verify_code(claimed["provider_reference"], otp)
        except ProviderRejected as err:
            return await self._rejected(claimed, err, actor)
        except ProviderUnavailable as err:
            # Nothing reached Qmoney: the OTP may be entered again.
            await self._back_to_otp_sent(claimed, actor, err.message)
            raise ServiceUnavailable("Qmoney is unreachable; try the OTP again",
                                     code="provider_unavailable") from None
        except ProviderOutcomeUnknown as err:
            log.warning("debit_outcome_unknown transaction=%s reason=%s", claimed["_id"],
                        err.message)
            return await self.transactions.transition(
                claimed["_id"], states.PROCESSING, states.UNKNOWN, self.clock.now(),
                actor=actor, reason=err.message)
        now = self.clock.now()
        succeeded = await self.transactions.transition(
            claimed["_id"], states.PROCESSING, states.SUCCEEDED, now, actor=actor,
            changes={"paid_at": now})
        log.info("debit_succeeded transaction=%s", claimed["_id"])
        return await self.settlement.settle(succeeded)

    async def _rejected(self, transaction: dict, err: ProviderRejected,
                        actor: str) -> dict[str, Any]:
        attempts = transaction["otp_attempts"] + 1
        if err.code == WRONG_OTP and attempts < self.max_otp_attempts:
            return await self.transactions.transition(
                transaction["_id"], states.PROCESSING, states.OTP_SENT, self.clock.now(),
                actor=actor, reason="wrong_otp", increments={"otp_attempts": 1},
                changes={"failure": {"code": err.code, "message": err.reason}})
        if err.code == WRONG_OTP:
            return await self._fail(transaction, states.PROCESSING, "too_many_wrong_otps",
                                    err.reason, actor, increments={"otp_attempts": 1})
        return await self._fail(transaction, states.PROCESSING, err.code, err.reason, actor)

    async def _back_to_otp_sent(self, transaction: dict, actor: str,
                                reason: str) -> dict[str, Any]:
        return await self.transactions.transition(
            transaction["_id"], states.PROCESSING, states.OTP_SENT, self.clock.now(),
            actor=actor, reason=reason)

    async def _fail(self, transaction: dict, current: str, code: str, message: str,
                    actor: str, increments: dict[str, int] | None = None) -> dict[str, Any]:
        log.info("debit_failed transaction=%s code=%s", transaction["_id"], code)
        return await self.transactions.transition(
            transaction["_id"], current, states.FAILED, self.clock.now(), actor=actor,
            reason=code, changes={"failure": {"code": code, "message": message}},
            increments=increments)

    # --- operator actions -----------------------------------------------

    async def resolve(self, transaction_uuid: str, outcome: str, provider_reference: str,
                      reason: str, actor: str) -> dict[str, Any]:
        """An operator settles an `unknown` debit after checking with the provider."""
        now = self.clock.now()
        if outcome == states.SUCCEEDED:
            moved = await self.transactions.transition(
                transaction_uuid, states.UNKNOWN, states.SUCCEEDED, now, actor=actor,
                reason=reason, changes={"paid_at": now,
                                        "provider_confirmation": provider_reference})
        else:
            moved = await self.transactions.transition(
                transaction_uuid, states.UNKNOWN, states.FAILED, now, actor=actor,
                reason=reason, changes={"failure": {"code": "resolved_failed",
                                                    "message": reason}})
        if moved is None:
            await self._refuse_state(transaction_uuid)
        log.info("debit_resolved transaction=%s outcome=%s by=%s", transaction_uuid, outcome,
                 actor)
        return await self.settlement.settle(moved) if outcome == states.SUCCEEDED else moved

    async def expire(self, transaction_uuid: str, reason: str, actor: str) -> dict[str, Any]:
        """An operator gives up on a debit whose OTP will not come."""
        moved = await self.transactions.transition(
            transaction_uuid, states.OTP_SENT, states.EXPIRED, self.clock.now(), actor=actor,
            reason=reason)
        if moved is None:
            await self._refuse_state(transaction_uuid)
        return moved

    async def _refuse_state(self, transaction_uuid: str) -> None:
        current = await self.ledger.get(transaction_uuid)
        raise Conflict(f"the transaction is {current['status']}", {"status": current["status"]},
                       code="invalid_state")

    # --- expiry and reads -----------------------------------------------

    def _expired(self, transaction: dict[str, Any]) -> bool:
        expires = transaction.get("otp_expires_at")
        return expires is not None and self.clock.now() >= expires

    async def _expire(self, transaction: dict[str, Any]) -> dict[str, Any] | None:
        return await self.transactions.transition(
            transaction["_id"], states.OTP_SENT, states.EXPIRED, self.clock.now(),
            actor="system", reason="otp_lifetime_passed")

    async def expire_stale(self, limit: int = 500) -> int:
        """Expire debits whose OTP was never entered in time; returns how many."""
        stale = await self.transactions.stale(states.OTP_SENT, self.clock.now(), limit)
        expired = [item for item in stale if await self._expire(item) is not None]
        return len(expired)
