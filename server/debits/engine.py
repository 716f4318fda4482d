"""The one debit engine: initiated -> <waiting> -> processing -> succeeded | failed,
plus `unknown` (the provider's answer to the completing call was lost) and `expired`
(the payer never acted in time). Every debit channel runs through it; its adapter
(server.debits.contract) only speaks to the provider.

A debit the provider completes itself (M-Pesa Express: the payer enters the PIN on
the phone) goes from its waiting state (or `unknown`) straight to what the provider
says, through `complete`: succeeded, failed, cancelled or expired. Its callback may
never come, so `check_pending` asks the provider's status call on the adapter's
schedule; after the last check without an answer the debit is `unknown`, for the
janitor (server.debits.janitor: the status call again, on a longer schedule) and then
an operator (`resolve`). How long a debit stays `unknown` is measured here
(`_transition`), whoever resolves it.

Amount, payer, policy and PSP are always read from the stored transaction, never
from the process request. A payer's code passes through to the provider and is
never stored."""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from pymongo.errors import DuplicateKeyError

from server.debits.contract import (
    DECIDED,
    DebitAdapter,
    DebitOrder,
    ProviderRefused,
    ProviderStatus,
    StartAnswerLate,
    StatusAnswer,
    code_attempts,
    payer_deadline,
    unknown_since,
)
from server.debits.registry import ChannelRegistry
from server.insurance.documents import Insuree, Policy
from server.insurance.repository import IDLE
from server.insurance.service import PolicyService, require_exact_amount
from server.integrations.transport import (
    ProviderError,
    ProviderOutcomeUnknown,
    ProviderRejected,
    ProviderUnavailable,
)
from server.kernel.background import BackgroundTasks
from server.kernel.clock import Clock
from server.kernel.documents import DuplicateDocument
from server.kernel.errors import Conflict, ServiceUnavailable, ValidationFailed
from server.kernel.metrics import Metrics
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

__all__ = ["SYSTEM", "Asked", "Completion", "DebitEngine", "Outcome", "ProviderRefused"]


class Outcome(enum.StrEnum):
    """What applying a provider's answer to a debit did (`complete`)."""

    APPLIED = "applied"  # this call moved the debit to the answer's state
    ALREADY = "already"  # the debit already was in that state (with that receipt)
    DISAGREES = "disagrees"  # the debit was decided otherwise: for an operator
    REVIEW = "review"  # the answer does not fit the debit (amount, payer): now `unknown`
    PENDING = "pending"  # nothing decided yet: nothing changed


@dataclass(frozen=True)
class Completion:
    transaction: Transaction
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True)
class Asked:
    """What asking the provider's status call about a debit brought (`ask`): its answer
    (pending, with the error's message, when the call failed), and what applying a
    decided answer did (None: nothing was decided)."""

    answer: StatusAnswer
    completion: Completion | None = None
    failed: bool = False  # the call itself failed (ProviderError)


class DebitEngine:
    def __init__(
        self,
        channels: ChannelRegistry,
        transactions: TransactionRepository,
        ledger: LedgerService,
        policies: PolicyService,
        psps: PspService,
        settlement: Settlement,
        clock: Clock,
        background: BackgroundTasks | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.channels = channels
        self.transactions = transactions
        self.ledger = ledger
        self.policies = policies
        self.psps = psps
        self.settlement = settlement
        self.clock = clock
        # Late answers to a start are awaited here (drained when the gateway stops).
        self.background = BackgroundTasks() if background is None else background
        # The gateway's metrics: how long debits stay `unknown` is observed here.
        self.metrics = metrics or Metrics()

    # --- start ----------------------------------------------------------

    async def initiate(
        self, policy_uuid: str, psp_uuid: str, amount: str, actor: str
    ) -> Transaction:
        """Check everything the gateway knows, store the debit, then ask the provider."""
        policy, insuree = await self.policies.with_insuree(policy_uuid)
        psp = await self.psps.get(psp_uuid)
        adapter = self._adapter_for(psp)
        payer = adapter.payer_of(insuree)
        _check_policy(policy, psp["currency"], "the PSP", amount)
        adapter.require_ready()
        pin = self.psps.merchant_pin(psp) if adapter.needs_merchant_pin else None
        return await self._start(
            adapter, policy, insuree, payer, psp["_id"], psp["account"], pin, actor
        )

    async def push(
        self, channel: str, policy_uuid: str, amount: str, payer: str | None, actor: str
    ) -> Transaction:
        """Start a debit of a channel that names its own merchant account (no PSP), with
        the same checks as `initiate`; `payer` None: the insuree's own (payer_of)."""
        adapter = self.channels.debit(channel)
        if adapter is None or adapter.psp_kind is not None:
            raise ValueError(f"{channel} is not a debit channel started without a PSP")
        account, currency = adapter.merchant_account, adapter.currency
        if not account or not currency:  # the registry refuses such an adapter
            raise ValueError(f"{channel} names no merchant account or currency")
        policy, insuree = await self.policies.with_insuree(policy_uuid)
        payer = payer or adapter.payer_of(insuree)
        _check_policy(policy, currency, adapter.label, amount)
        adapter.require_ready()
        return await self._start(adapter, policy, insuree, payer, None, account, None, actor)

    async def _start(
        self,
        adapter: DebitAdapter,
        policy: Policy,
        insuree: Insuree,
        payer: str,
        psp_uuid: str | None,
        merchant_account: str,
        pin: str | None,
        actor: str,
    ) -> Transaction:
        longest = adapter.max_reference_length
        if longest is not None and len(insuree["chf_id"]) > longest:
            raise ValidationFailed(
                f"insuree number {insuree['chf_id']} is longer than the {longest} characters "
                f"{adapter.label} carries as the payment's reference: use another channel",
                code="reference_too_long",
            )
        now = self.clock.now()
        transaction = new_transaction(
            transaction_uuid=str(uuid.uuid4()),
            channel=adapter.channel,
            status=states.INITIATED,
            policy=policy,
            psp_uuid=psp_uuid,
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
            merchant_account,
            format_amount(policy["value"], policy["currency"]),
            policy["currency"],
            insuree["chf_id"],
            pin,
        )
        try:
            reference = await adapter.start(order)
        except ProviderRejected as err:
            await self._fail(transaction, states.INITIATED, err.code, err.reason, actor)
            raise adapter.refused(err) from None
        except ProviderOutcomeUnknown as err:
            if adapter.start_may_reach_payer:
                return await self._start_unknown(adapter, transaction, err, actor)
            # Starting a debit only asks the payer: without the completing call no
            # money can move.
            await self._fail(transaction, states.INITIATED, "unavailable", err.message, actor)
            raise _unavailable(adapter) from None
        except ProviderUnavailable as err:
            await self._fail(transaction, states.INITIATED, "unavailable", err.message, actor)
            raise _unavailable(adapter) from None
        waiting = await self._move(
            transaction["_id"],
            states.INITIATED,
            adapter.waiting_state,
            actor=actor,
            changes={"provider_reference": reference, **self._waiting_fields(adapter, now)},
        )
        log.info(
            "debit_started transaction=%s channel=%s policy=%s",
            transaction["_id"],
            adapter.channel,
            policy["_id"],
        )
        return waiting

    def _waiting_fields(self, adapter: DebitAdapter, asked_at: datetime) -> dict[str, Any]:
        """The payer's deadline and the first status check of a debit whose payer was
        asked at `asked_at`."""
        lifetime = adapter.payer_lifetime
        fields: dict[str, Any] = {"expires_at": None if lifetime is None else asked_at + lifetime}
        if adapter.status_checks:
            fields |= {
                "checks_from": asked_at,
                "status_checks_done": 0,
                "next_check_at": asked_at + adapter.status_checks[0],
            }
        return fields

    async def _start_unknown(
        self,
        adapter: DebitAdapter,
        transaction: Transaction,
        err: ProviderOutcomeUnknown,
        actor: str,
    ) -> Transaction:
        """The request that asks the payer left and its answer was lost: the payer may
        have been asked, so the debit holds its policy as `unknown`. An answer that is
        only late is still awaited (`_follow_late`)."""
        log.warning(
            "debit_start_unknown transaction=%s channel=%s reason=%s",
            transaction["_id"],
            adapter.channel,
            err.message,
        )
        unknown = await self._move(
            transaction["_id"], states.INITIATED, states.UNKNOWN, actor=actor, reason=err.message
        )
        if isinstance(err, StartAnswerLate):
            self.background.spawn(
                self._follow_late(adapter, transaction["_id"], err.late), "debit-late-answer"
            )
        return unknown

    async def _follow_late(
        self, adapter: DebitAdapter, transaction_uuid: str, late: Awaitable[str]
    ) -> None:
        """The late answer to a start: its reference lets the status checks (and the
        provider's callback) find the debit; a refusal fails it."""
        try:
            reference = await late
        except ProviderRejected as err:
            log.info("debit_late_refusal transaction=%s code=%s", transaction_uuid, err.code)
            await self._transition(
                transaction_uuid,
                states.UNKNOWN,
                states.FAILED,
                actor=SYSTEM,
                reason=err.code,
                changes={"failure": {"code": err.code, "message": err.reason}},
            )
            return
        except ProviderError as err:
            log.warning("debit_late_answer_lost transaction=%s error=%r", transaction_uuid, err)
            return
        except asyncio.CancelledError:  # the gateway stops: the debit stays `unknown`
            log.warning("debit_late_answer_abandoned transaction=%s", transaction_uuid)
            raise
        now = self.clock.now()
        recorded = await self.transactions.set_fields(
            transaction_uuid,
            states.UNKNOWN,
            {"provider_reference": reference, **self._waiting_fields(adapter, now)},
            only_if_missing="provider_reference",
        )
        log.info(
            "debit_late_answer transaction=%s reference=%s recorded=%s",
            transaction_uuid,
            reference,
            recorded is not None,
        )

    def _adapter_for(self, psp: dict[str, Any]) -> DebitAdapter:
        adapter = self.channels.debit_for_psp(psp["kind"])
        if adapter is None or not psp["active"]:
            kinds = ", ".join(sorted(self.channels.psp_kinds))
            raise ValidationFailed(
                f"the PSP must be an active PSP of a debit channel (kind {kinds})",
                code="invalid_psp",
            )
        return adapter

    # --- complete -------------------------------------------------------

    async def process(self, transaction_uuid: str, code: str, actor: str) -> Transaction:
        """Complete a debit with the payer's code; exactly one caller gets to try."""
        transaction, policy = await self.ledger.with_policy(transaction_uuid)
        adapter = self._adapter_of(transaction)
        if adapter.max_code_attempts == 0:
            raise Conflict(
                f"a {adapter.label} debit is completed by the payer on the phone and "
                f"{adapter.label}'s answer, not with a code",
                {"status": transaction["status"], "channel": transaction["channel"]},
                code="no_code_to_enter",
            )
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
        # The policy as read before the provider's answer: its activation is still a
        # compare-and-set on its state, so a stale copy never activates it twice.
        return await self.settlement.settle(succeeded, policy)

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
        moved = await self._transition(
            transaction_uuid,
            current,
            target,
            actor=actor,
            reason=reason,
            changes=changes,
            increments=increments,
        )
        if moved is None:
            await self._refuse_state(transaction_uuid)
        return moved

    async def _transition(
        self,
        transaction_uuid: str,
        current: str,
        target: str,
        *,
        actor: str,
        reason: str = "",
        changes: dict[str, Any] | None = None,
        increments: dict[str, int] | None = None,
    ) -> Transaction | None:
        """The repository's compare-and-set, now. Every way out of `unknown` passes here
        (a provider's answer, a late refusal, an operator's resolution), so how long the
        debit was in doubt is observed here, by channel."""
        at = self.clock.now()
        moved = await self.transactions.transition(
            transaction_uuid,
            current,
            target,
            at,
            actor=actor,
            reason=reason,
            changes=changes,
            increments=increments,
        )
        if moved is not None and current == states.UNKNOWN:
            self._measure_doubt(moved, at)
        return moved

    def _measure_doubt(self, resolved: Transaction, at: datetime) -> None:
        """From when a debit became `unknown` to `at`, when it left it, by channel."""
        since = unknown_since(resolved)
        if since is None:  # never: it was `unknown`
            return
        seconds = max((at - since).total_seconds(), 0.0)
        self.metrics.debit_unknown_resolution_seconds.labels(resolved["channel"]).observe(seconds)

    # --- the provider's own answer ------------------------------------------

    async def complete(
        self, transaction: Transaction, answer: StatusAnswer, actor: str
    ) -> Completion:
        """Apply a provider's answer (its callback or its status call) to a debit waiting
        for its payer or `unknown`: a compare-and-set from the state it is in, so one
        answer, however often it comes and whoever brings it, is applied once. A
        succeeded answer is checked against the stored debit (amount, payer) before it
        is settled: one that does not fit leaves the debit `unknown` with the reason."""
        adapter = self._adapter_of(transaction)
        if answer.status not in DECIDED:
            return Completion(transaction, Outcome.PENDING)
        target = states.State(answer.status.value)
        open_states = (adapter.waiting_state, states.UNKNOWN)
        for _ in range(len(open_states) + 1):
            current = await self.ledger.get(transaction["_id"])
            status = current["status"]
            if status not in open_states:
                return await self._decided(current, answer)
            mismatch = _mismatch(current, answer) if target == states.SUCCEEDED else ""
            if mismatch:
                held = await self._hold_for_review(current, mismatch, actor)
                if held is None:
                    continue
                return held
            try:
                moved = await self._transition(
                    current["_id"],
                    status,
                    target,
                    actor=actor,
                    reason=answer.code or target.value,
                    changes=self._decided_fields(target, answer),
                )
            except DuplicateKeyError:
                # The receipt already completed another debit: never settle it twice.
                reason = f"receipt {answer.receipt} already completed another debit"
                held = await self._hold_for_review(current, reason, actor)
                if held is None:
                    continue
                return held
            if moved is None:
                continue  # moved meanwhile (e.g. a status check made it unknown): again
            log.info(
                "debit_completed transaction=%s status=%s code=%s by=%s",
                moved["_id"],
                target.value,
                answer.code or "-",
                actor,
            )
            if target == states.SUCCEEDED:
                moved = await self.settlement.settle(moved)
            return Completion(moved, Outcome.APPLIED)
        return await self._decided(await self.ledger.get(transaction["_id"]), answer)

    async def _hold_for_review(
        self, current: Transaction, reason: str, actor: str
    ) -> Completion | None:
        """An answer that may not be applied: the debit becomes (or stays) `unknown` with
        the reason, for an operator, who alone decides it now: no status check or janitor
        run may settle it on a later answer that carries less (a status query has no
        amount, payer or receipt). None when it moved meanwhile: look again."""
        held = {"next_check_at": None, "needs_operator": True, "operator_reason": reason}
        if current["status"] == states.UNKNOWN:
            await self.transactions.set_fields(current["_id"], states.UNKNOWN, held)
            return Completion(current, Outcome.REVIEW, reason)
        moved = await self.transactions.transition(
            current["_id"],
            current["status"],
            states.UNKNOWN,
            self.clock.now(),
            actor=actor,
            reason=reason,
            changes=held,
        )
        if moved is None:
            return None
        log.warning("debit_answer_held transaction=%s reason=%s", moved["_id"], reason)
        return Completion(moved, Outcome.REVIEW, reason)

    def _decided_fields(self, target: str, answer: StatusAnswer) -> dict[str, Any]:
        if target == states.SUCCEEDED:
            fields: dict[str, Any] = {"paid_at": self.clock.now(), "next_check_at": None}
            if answer.receipt:  # a status call may say "paid" without the receipt
                fields["provider_confirmation"] = answer.receipt
            return fields
        message = answer.detail or f"{target} by the provider"
        return {
            "failure": {"code": answer.code or target, "message": message},
            "next_check_at": None,
        }

    async def _decided(self, current: Transaction, answer: StatusAnswer) -> Completion:
        """An answer for a debit that is no longer open: the same decision again, or
        another one (for an operator: the provider and the gateway disagree). A receipt
        the debit did not have yet (it succeeded by a status call) is recorded."""
        if current["status"] != answer.status.value:
            return Completion(current, Outcome.DISAGREES)
        if answer.status != ProviderStatus.SUCCEEDED:
            return Completion(current, Outcome.ALREADY)
        mismatch = _mismatch(current, answer)
        if mismatch:
            return Completion(current, Outcome.REVIEW, mismatch)
        known = current.get("provider_confirmation")
        if answer.receipt and not known:
            try:
                recorded = await self.transactions.set_fields(
                    current["_id"],
                    states.SUCCEEDED,
                    {"provider_confirmation": answer.receipt},
                    only_if_missing="provider_confirmation",
                )
            except DuplicateKeyError:
                recorded = None
            current = recorded or await self.ledger.get(current["_id"])
            known = current.get("provider_confirmation")
        if answer.receipt and known != answer.receipt:
            return Completion(current, Outcome.DISAGREES)
        if not current.get("settlement"):
            current = await self.settlement.settle(current)  # a crash cut it off
        return Completion(current, Outcome.ALREADY)

    async def find_by_reference(self, channel: str, reference: str) -> Transaction | None:
        """The debit of `channel` the provider knows by `reference`."""
        return await self.transactions.find_one(
            {"provider_reference": reference, "channel": channel}
        )

    async def check_pending(self, limit: int = 200) -> int:
        """Ask the provider about debits whose next status check is due (the adapters
        that declare `status_checks`); returns how many were asked."""
        checked = {
            adapter.channel: adapter for adapter in self.channels.debits if adapter.status_checks
        }
        if not checked:
            return 0
        open_states = {adapter.waiting_state for adapter in checked.values()} | {states.UNKNOWN}
        due = await self.transactions.due_checks(checked, open_states, self.clock.now(), limit)
        for debit in due:
            try:
                await self._check(checked[debit["channel"]], debit)
            except Exception:  # one debit's trouble never stops the others' checks
                log.exception("status_check_failed transaction=%s", debit["_id"])
        return len(due)

    async def ask(
        self, adapter: DebitAdapter, debit: Transaction, reference: str, actor: str
    ) -> Asked:
        """Ask the provider's status call about a debit and apply a decided answer
        (`complete`, as `actor`). A failed call is an answer without a decision."""
        try:
            answer = await adapter.status(reference)
        except ProviderError as err:
            return Asked(StatusAnswer(ProviderStatus.PENDING, reference, err.message), failed=True)
        except ServiceUnavailable as err:  # the channel is not configured in this process
            return Asked(StatusAnswer(ProviderStatus.PENDING, reference, err.message), failed=True)
        if answer.status not in DECIDED:
            return Asked(answer)
        return Asked(answer, await self.complete(debit, answer, actor))

    async def _check(self, adapter: DebitAdapter, debit: Transaction) -> None:
        reference = debit.get("provider_reference")
        done = debit.get("status_checks_done", 0) + 1
        if reference is None:  # never answered: nothing to ask about
            await self.transactions.set_fields(
                debit["_id"], debit["status"], {"next_check_at": None}
            )
            return
        asked = await self.ask(adapter, debit, reference, SYSTEM)
        answer = asked.answer
        log.info(
            "status_check transaction=%s check=%s answer=%s detail=%s",
            debit["_id"],
            done,
            answer.status.value,
            answer.detail or "-",
        )
        if asked.completion is not None:
            return
        checks = adapter.status_checks
        if done < len(checks):
            start = debit.get("checks_from") or debit["created_at"]
            upcoming = max(start + checks[done], self.clock.now())
            await self.transactions.set_fields(
                debit["_id"],
                debit["status"],
                {"next_check_at": upcoming},
                increments={"status_checks_done": 1},
            )
            return
        last = {"next_check_at": None, "status_checks_done": done}
        if debit["status"] == states.UNKNOWN:
            await self.transactions.set_fields(debit["_id"], states.UNKNOWN, last)
            return
        reason = f"no answer after {done} status checks ({answer.detail or 'still pending'})"
        moved = await self.transactions.transition(
            debit["_id"],
            debit["status"],
            states.UNKNOWN,
            self.clock.now(),
            actor=SYSTEM,
            reason=reason,
            changes=last,
        )
        if moved is not None:
            log.warning("debit_unanswered transaction=%s checks=%s", debit["_id"], done)

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
        # A channel whose provider ends the payer's time itself (no payer_lifetime) is
        # left to that provider's answer and the status checks.
        waiting = frozenset(
            adapter.waiting_state
            for adapter in self.channels.debits
            if adapter.payer_lifetime is not None
        )
        stale = await self.transactions.stale(waiting, self.clock.now(), limit)
        expired = [item for item in stale if await self._expire(item) is not None]
        return len(expired)


def _check_policy(policy: Policy, currency: str, settler: str, amount: str) -> None:
    if policy["status"] != IDLE:
        raise Conflict(
            "the policy is not awaiting payment",
            {"status": policy["status"]},
            code="policy_not_idle",
        )
    if policy["currency"] != currency:
        raise ValidationFailed(
            f"the policy is in {policy['currency']}, {settler} settles in {currency}",
            code="currency_mismatch",
        )
    require_exact_amount(policy, amount)


def _unavailable(adapter: DebitAdapter) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{adapter.label} did not answer; no money moved, try again",
        code="provider_unavailable",
    )


def _mismatch(transaction: Transaction, answer: StatusAnswer) -> str:
    """Why a succeeded answer does not fit the stored debit ("" when it does)."""
    if answer.amount is not None and answer.amount != transaction["amount"]:
        paid = format_amount(answer.amount, transaction["currency"])
        asked = format_amount(transaction["amount"], transaction["currency"])
        return f"amount_mismatch: the provider reports {paid}, the debit asked {asked}"
    payer = transaction.get("payer")
    if answer.payer and payer and answer.payer != payer:
        return f"payer_mismatch: the provider reports {answer.payer}, the debit asked {payer}"
    return ""
