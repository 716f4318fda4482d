"""Debits the provider completes itself: started without a PSP (`push`), decided by the
provider's answer (`complete`), asked about on a schedule (`check_pending`). The adapter
here speaks to no provider; M-Pesa Express runs the same engine over real sockets
(test_stk_end_to_end.py)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest

from server.debits.contract import (
    DebitOrder,
    ProviderRefused,
    ProviderStatus,
    StartAnswerLate,
    StatusAnswer,
)
from server.debits.engine import DebitEngine, Outcome
from server.debits.registry import Channel, ChannelRegistry
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.integrations.notifications import RecordingNotifier
from server.integrations.transport import ProviderRejected
from server.kernel.background import BackgroundTasks
from server.kernel.errors import Conflict, ValidationFailed
from server.ledger.repository import PREMIUMS
from server.startup.services import build_services

from support import make_settings
from systems import ManualClock

PHONE = "254708374149"


class PromptDebits:
    """A channel whose provider prompts the payer's phone and answers by callback or
    status call: `statuses` are the status call's answers, in order."""

    channel = "test_prompt"
    label = "Test prompt"
    psp_kind = None
    merchant_account = "600984"
    currency = "KES"
    waiting_state = "prompt_sent"
    payer_lifetime = None
    max_code_attempts = 0
    needs_merchant_pin = False
    status_checks = (timedelta(seconds=30), timedelta(minutes=2))
    start_may_reach_payer = True
    max_reference_length = None

    def __init__(self) -> None:
        self.orders: list[DebitOrder] = []
        self.statuses: list[StatusAnswer] = []
        self.start_error: Exception | None = None

    def require_ready(self) -> None:
        return None

    def payer_of(self, insuree: dict[str, Any]) -> str:
        if not insuree.get("phone"):
            raise ValidationFailed("no phone", code="no_phone")
        return str(insuree["phone"])

    async def start(self, order: DebitOrder) -> str:
        self.orders.append(order)
        if self.start_error is not None:
            raise self.start_error
        return f"CK-{len(self.orders)}"

    def refused(self, refusal: ProviderRejected) -> Exception:
        return ProviderRefused(refusal.reason, {"provider_code": refusal.code})

    async def confirm(self, provider_reference: str, code: str) -> str:
        raise AssertionError("never called: the payer enters no code here")

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        return False

    async def status(self, provider_reference: str) -> StatusAnswer:
        return self.statuses.pop(0)

    def shown(self, transaction: dict[str, Any]) -> dict[str, Any]:
        return {}


class Setup:
    def __init__(self, store) -> None:
        self.clock = ManualClock()
        self.background = BackgroundTasks()
        self.services = build_services(
            make_settings(), store, None, RecordingNotifier(), self.clock
        )
        self.adapter = PromptDebits()
        registry = ChannelRegistry(
            [
                Channel("mpesa_c2b", "M-Pesa paybill"),
                Channel(self.adapter.channel, "P", self.adapter),
            ]
        )
        services = self.services
        self.engine = DebitEngine(
            registry,
            services.ledger.transactions,
            services.ledger,
            services.policies,
            services.psps,
            services.settlement,
            self.clock,
            self.background,
        )
        self.store = store

    async def policy(self, chf_id: str = "070707070", currency: str = "KES") -> dict:
        code = f"BASIC_{currency}"
        with contextlib.suppress(Conflict):
            await self.services.products.create(
                ProductCreateSchema().load(
                    {"code": code, "name": "Basic", "price": "1500.00", "currency": currency}
                )
            )
        await self.services.insurees.create(
            InsureeCreateSchema().load(
                {"chf_id": chf_id, "first_name": "Awa", "last_name": "W", "phone": PHONE}
            )
        )
        return await self.services.policies.create(
            PolicyCreateSchema().load(
                {"chf_id": chf_id, "product_code": code, "start_date": "2026-01-01"}
            )
        )

    async def push(self, policy: dict, phone: str | None = None) -> dict:
        return await self.engine.push(
            self.adapter.channel, policy["_id"], "1500.00", phone, "operator"
        )

    async def premiums(self) -> int:
        return await self.store.collection(PREMIUMS).count_documents({})


def paid(receipt: str = "NLJ7RT61SV", amount: int = 150000, payer: str = PHONE) -> StatusAnswer:
    return StatusAnswer(ProviderStatus.SUCCEEDED, receipt=receipt, amount=amount, payer=payer)


PENDING = StatusAnswer(ProviderStatus.PENDING, detail="The transaction is being processed")


@pytest.mark.asyncio
async def test_a_push_needs_no_psp_and_waits_for_the_prompt(store) -> None:
    setup = Setup(store)
    policy = await setup.policy()
    started = await setup.push(policy)
    assert started["status"] == "prompt_sent" and started["psp_uuid"] is None
    assert started["provider_reference"] == "CK-1" and started["payer"] == PHONE
    assert started["expires_at"] is None and started["status_checks_done"] == 0
    assert started["next_check_at"] == started["checks_from"] + timedelta(seconds=30)
    [order] = setup.adapter.orders
    assert (order.merchant_account, order.amount, order.currency) == ("600984", "1500.00", "KES")
    assert order.reference == "070707070"
    with pytest.raises(Conflict) as busy:
        await setup.push(policy)
    assert busy.value.code == "payment_in_progress"
    with pytest.raises(Conflict) as no_code:
        await setup.engine.process(started["_id"], "1234", "operator")
    assert no_code.value.code == "no_code_to_enter"


@pytest.mark.asyncio
async def test_a_push_has_the_checks_of_a_debit(store) -> None:
    setup = Setup(store)
    gambian = await setup.policy("1", currency="GMD")
    with pytest.raises(ValidationFailed) as currency:
        await setup.push(gambian)
    assert currency.value.code == "currency_mismatch"
    policy = await setup.policy("2")
    with pytest.raises(ValidationFailed):
        await setup.engine.push(setup.adapter.channel, policy["_id"], "1499.00", None, "op")
    assert setup.adapter.orders == []


@pytest.mark.asyncio
async def test_a_succeeded_answer_settles_once_however_often_it_comes(store) -> None:
    setup = Setup(store)
    policy = await setup.policy()
    started = await setup.push(policy)
    results = await asyncio.gather(
        *(setup.engine.complete(started, paid(), "callback") for _ in range(4))
    )
    assert sorted(result.outcome for result in results) == [
        Outcome.ALREADY,
        Outcome.ALREADY,
        Outcome.ALREADY,
        Outcome.APPLIED,
    ]
    done = await setup.services.ledger.get(started["_id"])
    assert done["status"] == "succeeded" and done["provider_confirmation"] == "NLJ7RT61SV"
    assert done["settlement"]["status"] == "settled" and await setup.premiums() == 1
    assert (await setup.services.policies.get(policy["_id"]))["status"] == 2
    other = await setup.engine.complete(started, paid("OTHER1"), "callback")
    assert other.outcome is Outcome.DISAGREES and await setup.premiums() == 1


@pytest.mark.asyncio
async def test_an_answer_of_another_amount_or_payer_is_for_review(store) -> None:
    setup = Setup(store)
    first = await setup.push(await setup.policy("1"))
    result = await setup.engine.complete(first, paid(amount=100), "callback")
    assert result.outcome is Outcome.REVIEW and result.transaction["status"] == "unknown"
    assert "amount_mismatch" in result.reason and await setup.premiums() == 0
    second = await setup.push(await setup.policy("2"))
    result = await setup.engine.complete(second, paid(payer="254711111111"), "callback")
    assert result.outcome is Outcome.REVIEW and "payer_mismatch" in result.reason


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (ProviderStatus.CANCELLED, "1032"),
        (ProviderStatus.EXPIRED, "1019"),
        (ProviderStatus.FAILED, "2001"),
    ],
)
async def test_a_declined_prompt_frees_the_policy(store, status, code) -> None:
    setup = Setup(store)
    policy = await setup.policy()
    started = await setup.push(policy)
    answer = StatusAnswer(status, code=code, detail="the payer said no")
    result = await setup.engine.complete(started, answer, "callback")
    assert result.outcome is Outcome.APPLIED and result.transaction["status"] == status.value
    assert result.transaction["failure"] == {"code": code, "message": "the payer said no"}
    again = await setup.push(policy)
    assert again["status"] == "prompt_sent"


@pytest.mark.asyncio
async def test_status_checks_follow_the_schedule_then_leave_it_unknown(store) -> None:
    setup = Setup(store)
    started = await setup.push(await setup.policy())
    assert await setup.engine.check_pending() == 0  # not due yet
    setup.adapter.statuses = [PENDING, PENDING]
    setup.clock.offset += timedelta(seconds=31)
    assert await setup.engine.check_pending() == 1
    after_first = await setup.services.ledger.get(started["_id"])
    assert after_first["status"] == "prompt_sent" and after_first["status_checks_done"] == 1
    assert after_first["next_check_at"] == started["checks_from"] + timedelta(minutes=2)
    assert await setup.engine.check_pending() == 0
    setup.clock.offset += timedelta(minutes=2)
    assert await setup.engine.check_pending() == 1
    unknown = await setup.services.ledger.get(started["_id"])
    assert unknown["status"] == "unknown" and unknown["next_check_at"] is None
    assert "no answer after 2 status checks" in unknown["history"][-1]["reason"]
    assert await setup.engine.check_pending() == 0
    late = await setup.engine.complete(unknown, paid(), "callback")  # the callback, at last
    assert late.outcome is Outcome.APPLIED and late.transaction["status"] == "succeeded"


@pytest.mark.asyncio
async def test_a_status_check_that_answers_completes_the_debit(store) -> None:
    setup = Setup(store)
    started = await setup.push(await setup.policy())
    setup.adapter.statuses = [paid()]
    setup.clock.offset += timedelta(seconds=31)
    assert await setup.engine.check_pending() == 1
    done = await setup.services.ledger.get(started["_id"])
    assert done["status"] == "succeeded" and await setup.premiums() == 1


@pytest.mark.asyncio
async def test_a_late_answer_to_the_push_lets_the_checks_resolve_it(store) -> None:
    setup = Setup(store)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    setup.adapter.start_error = StartAnswerLate("test", "no answer in time", answer)
    started = await setup.push(await setup.policy())
    assert started["status"] == "unknown" and started["provider_reference"] is None
    answer.set_result("CK-LATE")
    await setup.background.drain(5)
    recorded = await setup.services.ledger.get(started["_id"])
    assert recorded["status"] == "unknown" and recorded["provider_reference"] == "CK-LATE"
    setup.adapter.statuses = [StatusAnswer(ProviderStatus.CANCELLED, code="1032")]
    setup.clock.offset += timedelta(seconds=31)
    assert await setup.engine.check_pending() == 1
    assert (await setup.services.ledger.get(started["_id"]))["status"] == "cancelled"


@pytest.mark.asyncio
async def test_a_late_refusal_of_the_push_fails_the_debit(store) -> None:
    setup = Setup(store)
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    setup.adapter.start_error = StartAnswerLate("test", "no answer in time", answer)
    started = await setup.push(await setup.policy())
    answer.set_exception(ProviderRejected("test", "500.001.1001", "subscriber busy"))
    await setup.background.drain(5)
    failed = await setup.services.ledger.get(started["_id"])
    assert failed["status"] == "failed" and failed["failure"]["code"] == "500.001.1001"


@pytest.mark.asyncio
async def test_the_expire_job_leaves_a_debit_the_provider_ends_itself(store) -> None:
    setup = Setup(store)
    started = await setup.push(await setup.policy())
    setup.clock.offset += timedelta(days=1)
    assert await setup.engine.expire_stale() == 0
    assert (await setup.services.ledger.get(started["_id"]))["status"] == "prompt_sent"
