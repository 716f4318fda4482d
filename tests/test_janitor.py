"""The janitor resolves debits in doubt with their provider's status call, on a backoff
schedule, and hands what stays unknown to the operators. The adapter here speaks to no
provider (its status call answers from a script) and the clock is moved by the test;
M-Pesa Express runs the same janitor over real sockets (test_janitor_end_to_end.py)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest

from server.debits.contract import DebitOrder, ProviderRefused, ProviderStatus, StatusAnswer
from server.debits.engine import DebitEngine
from server.debits.janitor import JANITOR, Janitor, attempt_due
from server.debits.registry import Channel, ChannelRegistry
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.integrations.notifications import RecordingNotifier
from server.integrations.transport import ProviderRejected, ProviderUnavailable
from server.jobs.settings import JobsSettings
from server.kernel.errors import Conflict, ValidationFailed
from server.kernel.metrics import Metrics
from server.kernel.settings import SettingError
from server.ledger import states
from server.ledger.transactions import new_transaction
from server.ops.dashboard import Dashboard
from server.qmoney.adapter import QmoneyDebits
from server.qmoney.settings import QmoneySettings
from server.startup.config import ConfigError, load_settings
from server.startup.services import build_services

from support import TEST_ENV, make_settings
from systems import ManualClock

PHONE = "254708374149"
BACKOFF = JobsSettings().janitor_backoff()
GRACE = timedelta(minutes=2)


class AskedDebits:
    """A channel with a status call: `statuses` are its answers, in order (an exception
    is raised instead); `asked` the references it was asked about."""

    channel = "test_prompt"
    label = "Test prompt"
    psp_kind = None
    merchant_account = "600984"
    currency = "KES"
    waiting_state = "prompt_sent"
    payer_lifetime = None
    max_code_attempts = 0
    needs_merchant_pin = False
    status_checks = (timedelta(seconds=30),)
    status_call = True
    start_may_reach_payer = True
    max_reference_length = None

    def __init__(self) -> None:
        self.statuses: list[StatusAnswer | Exception] = []
        self.asked: list[str] = []

    def require_ready(self) -> None:
        return None

    def payer_of(self, insuree: dict[str, Any]) -> str:
        if not insuree.get("phone"):
            raise ValidationFailed("no phone", code="no_phone")
        return str(insuree["phone"])

    async def start(self, order: DebitOrder) -> str:
        return f"CK-{order.transaction_uuid[:8]}"

    def refused(self, refusal: ProviderRejected) -> Exception:
        return ProviderRefused(refusal.reason, {"provider_code": refusal.code})

    async def confirm(self, provider_reference: str, code: str) -> str:
        raise AssertionError("never called: the payer enters no code here")

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        return False

    async def status(self, provider_reference: str) -> StatusAnswer:
        self.asked.append(provider_reference)
        answer = self.statuses.pop(0) if self.statuses else PENDING
        if isinstance(answer, Exception):
            raise answer
        return answer

    def shown(self, transaction: dict[str, Any]) -> dict[str, Any]:
        return {}


PENDING = StatusAnswer(ProviderStatus.PENDING, detail="The transaction is being processed")


def paid(amount: int = 150000) -> StatusAnswer:
    return StatusAnswer(
        ProviderStatus.SUCCEEDED, receipt="NLJ7RT61SV", amount=amount, payer=PHONE, code="0"
    )


class Setup:
    def __init__(self, store, backoff: tuple[timedelta, ...] = BACKOFF) -> None:
        self.clock = ManualClock()
        self.services = build_services(
            make_settings(), store, None, RecordingNotifier(), self.clock
        )
        self.adapter = AskedDebits()
        self.qmoney = QmoneyDebits(None, QmoneySettings())
        self.registry = ChannelRegistry(
            [
                Channel("mpesa_c2b", "M-Pesa paybill"),
                Channel(self.adapter.channel, self.adapter.label, self.adapter),
                Channel(self.qmoney.channel, self.qmoney.label, self.qmoney),
            ]
        )
        services = self.services
        self.metrics = Metrics()
        self.engine = DebitEngine(
            self.registry,
            services.ledger.transactions,
            services.ledger,
            services.policies,
            services.psps,
            services.settlement,
            self.clock,
            metrics=self.metrics,
        )
        self.transactions = services.ledger.transactions
        self.janitor = Janitor(self.engine, backoff, GRACE)
        self.store = store

    async def policy(self, chf_id: str, currency: str = "KES") -> dict:
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

    async def unknown(self, chf_id: str = "070707070") -> dict:
        """A debit whose status checks ended without an answer: `unknown` now."""
        started = await self.engine.push(
            self.adapter.channel, (await self.policy(chf_id))["_id"], "1500.00", None, "op"
        )
        moved = await self.transactions.transition(
            started["_id"],
            "prompt_sent",
            states.UNKNOWN,
            self.clock.now(),
            actor="system",
            reason="no answer after 1 status checks",
            changes={"next_check_at": None},
        )
        assert moved is not None
        return moved

    async def get(self, debit: dict) -> dict:
        return await self.services.ledger.get(debit["_id"])

    def after(self, debit: dict, minutes: float) -> None:
        """Move the clock to `minutes` after the debit became unknown."""
        since = debit["unknown_since"]
        self.clock.offset = timedelta(0)
        self.clock.offset = since + timedelta(minutes=minutes) - self.clock.now()

    def resolutions(self, channel: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "gateway_debit_unknown_resolution_seconds_count", {"channel": channel}
        )
        return value or 0.0


def janitor_steps(debit: dict) -> list[dict]:
    return [step for step in debit["history"] if step["actor"] == JANITOR]


# --- the schedule -------------------------------------------------------------


def test_attempts_are_due_1_5_15_and_60_minutes_after_the_debit_became_in_doubt() -> None:
    since = ManualClock().now()
    assert [attempt_due(since, BACKOFF, done) for done in range(5)] == [
        since + timedelta(minutes=1),
        since + timedelta(minutes=5),
        since + timedelta(minutes=15),
        since + timedelta(minutes=60),
        None,
    ]


@pytest.mark.asyncio
async def test_the_janitor_asks_on_the_schedule_and_only_when_due(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    asked_at = []
    for minute in (0.5, 1, 3, 5, 14, 15, 59):
        setup.after(debit, minute)
        before = len(setup.adapter.asked)
        await setup.janitor.run()
        if len(setup.adapter.asked) > before:
            asked_at.append(minute)
    assert asked_at == [1, 5, 15]
    current = await setup.get(debit)
    assert current["status"] == "unknown" and current["janitor_attempts"] == 3
    assert current["janitor_next_at"] == debit["unknown_since"] + timedelta(minutes=60)
    assert not current.get("needs_operator")


# --- one attempt ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_undecided_attempt_leaves_a_history_entry_and_schedules_the_next(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    setup.after(debit, 0.5)
    assert (await setup.janitor.run())["scheduled"] == 1
    assert setup.adapter.asked == [] and janitor_steps(await setup.get(debit)) == []
    setup.after(debit, 1)
    summary = await setup.janitor.run()
    assert summary == {
        "checked": 1,
        "resolved": 0,
        "still_unknown": 1,
        "given_up": 0,
        "scheduled": 0,
        "disagreed": 0,
    }
    current = await setup.get(debit)
    [step] = janitor_steps(current)
    assert (step["from"], step["to"]) == ("unknown", "unknown")
    assert step["reason"].startswith("attempt 1 of 4: pending (The transaction is being processed)")
    assert current["status"] == "unknown" and current["updated_at"] == debit["updated_at"]
    assert current["janitor_next_at"] == debit["unknown_since"] + timedelta(minutes=5)


@pytest.mark.asyncio
async def test_a_failed_status_call_is_an_attempt_too(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    setup.adapter.statuses = [ProviderUnavailable("test", "connection refused")]
    setup.after(debit, 1)
    assert (await setup.janitor.run())["still_unknown"] == 1
    [step] = janitor_steps(await setup.get(debit))
    assert "the status call failed (connection refused)" in step["reason"]


@pytest.mark.asyncio
async def test_a_decided_answer_completes_settles_and_measures_the_doubt(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    setup.adapter.statuses = [PENDING, paid()]
    for minute in (1, 5):
        setup.after(debit, minute)
        await setup.janitor.run()
    done = await setup.get(debit)
    assert done["status"] == "succeeded" and done["settlement"]["status"] == "settled"
    assert done["provider_confirmation"] == "NLJ7RT61SV"
    last = done["history"][-1]
    assert (last["from"], last["to"], last["actor"]) == ("unknown", "succeeded", JANITOR)
    assert len(janitor_steps(done)) == 2  # the undecided attempt, then the decision
    assert setup.resolutions("test_prompt") == 1
    seconds = setup.metrics.registry.get_sample_value(
        "gateway_debit_unknown_resolution_seconds_sum", {"channel": "test_prompt"}
    )
    assert 299 <= seconds <= 301
    assert (await setup.janitor.run())["checked"] == 0  # nothing in doubt any more


@pytest.mark.asyncio
async def test_an_answer_that_does_not_fit_goes_straight_to_the_operators(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    setup.adapter.statuses = [paid(amount=100)]
    setup.after(debit, 1)
    assert (await setup.janitor.run())["given_up"] == 1
    current = await setup.get(debit)
    assert current["status"] == "unknown" and current["needs_operator"] is True
    assert "amount_mismatch" in current["operator_reason"] and current["settlement"] is None


# --- giving up --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_after_the_last_attempt_the_debit_is_for_an_operator(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    for minute in (1, 5, 15):
        setup.after(debit, minute)
        await setup.janitor.run()
    setup.after(debit, 60)
    assert (await setup.janitor.run())["given_up"] == 1
    current = await setup.get(debit)
    assert current["status"] == "unknown" and current["needs_operator"] is True
    assert current["janitor_attempts"] == 4 and current["janitor_next_at"] is None
    assert current["janitor_gave_up_at"] is not None
    assert "automatic status checks exhausted" in janitor_steps(current)[-1]["reason"]
    assert "attempt 4 of 4" in current["operator_reason"]
    setup.after(debit, 600)
    assert (await setup.janitor.run())["checked"] == 0  # never asked again
    assert len(setup.adapter.asked) == 4
    board = Dashboard(store, setup.clock, setup.registry.channels)
    stuck = (await board.summary(None, None, None))["attention"]["stuck_debits"]
    [item] = stuck["oldest"]
    assert (item["uuid"], item["status"]) == (debit["_id"], "unknown")
    assert item["note"].startswith("automatic status checks exhausted")
    # an operator's resolution is measured too
    await setup.engine.resolve(debit["_id"], "failed", "", "the payer saw no prompt", "olga")
    assert setup.resolutions("test_prompt") == 1


@pytest.mark.asyncio
async def test_an_unknown_debit_is_not_on_the_dashboard_while_the_janitor_works(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    board = Dashboard(store, setup.clock, setup.registry.channels)
    for minute in (1, 5, 15, 30):
        setup.after(debit, minute)
        await setup.janitor.run()
    assert (await board.summary(None, None, None))["attention"]["stuck_debits"]["count"] == 0
    setup.after(debit, 60 + 20)  # the janitor stopped: its attempt is long overdue
    [item] = (await board.summary(None, None, None))["attention"]["stuck_debits"]["oldest"]
    assert "overdue" in item["note"]


@pytest.mark.asyncio
async def test_a_debit_without_a_provider_reference_goes_to_the_operators(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    await store.collection("transactions").update_one(
        {"_id": debit["_id"]}, {"$set": {"provider_reference": None}}
    )
    setup.after(debit, 1)
    assert (await setup.janitor.run())["given_up"] == 1
    assert setup.adapter.asked == []
    current = await setup.get(debit)
    assert current["needs_operator"] is True
    assert "reference" in current["operator_reason"]


# --- what is picked -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_debit_processing_past_the_grace_is_picked(store) -> None:
    setup = Setup(store)
    policy = await setup.policy("1")
    started = await setup.engine.push(setup.adapter.channel, policy["_id"], "1500.00", None, "op")
    claimed = await setup.transactions.transition(
        started["_id"], "prompt_sent", "processing", setup.clock.now(), actor="op"
    )
    assert claimed is not None
    setup.clock.offset = GRACE - timedelta(seconds=5)
    assert (await setup.janitor.run())["checked"] == 0  # still within the grace
    assert (await setup.get(started))["status"] == "processing"
    setup.clock.offset = GRACE + timedelta(seconds=5)
    setup.adapter.statuses = [paid()]
    summary = await setup.janitor.run()
    assert (summary["checked"], summary["resolved"]) == (1, 1)
    done = await setup.get(started)
    assert [step["to"] for step in done["history"]][-2:] == ["unknown", "succeeded"]
    cut_off = done["history"][-2]
    assert cut_off["actor"] == JANITOR and "completing call was lost" in cut_off["reason"]
    assert done["settlement"]["status"] == "settled"
    assert setup.resolutions("test_prompt") == 1


@pytest.mark.asyncio
async def test_a_debit_under_its_status_checks_is_left_to_them(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    await store.collection("transactions").update_one(
        {"_id": debit["_id"]}, {"$set": {"next_check_at": setup.clock.now()}}
    )
    setup.after(debit, 2)
    assert (await setup.janitor.run())["checked"] == 0 and setup.adapter.asked == []


@pytest.mark.asyncio
async def test_qmoney_unknown_debits_are_never_picked(store) -> None:
    setup = Setup(store)
    assert setup.qmoney.status_call is False
    policy = await setup.policy("5811724", currency="GMD")
    lost = new_transaction(
        transaction_uuid="lost-answer",
        channel="qmoney",
        status=states.UNKNOWN,
        policy=policy,
        psp_uuid="psp-q",
        provider_reference="QM-1",
        actor="op",
        at=setup.clock.now(),
        reason="no answer to verifyCode",
        payer="5811724c",
        expires_at=None,
        code_attempts=0,
    )
    await setup.transactions.insert(lost)
    for minute in (1, 5, 15, 60, 120):
        setup.clock.offset = timedelta(minutes=minute)
        assert (await setup.janitor.run())["checked"] == 0
    current = await setup.services.ledger.get("lost-answer")
    assert current["status"] == "unknown" and len(current["history"]) == 1
    assert "needs_operator" not in current and "janitor_from" not in current
    board = Dashboard(store, setup.clock, setup.registry.channels)
    [item] = (await board.summary(None, None, None))["attention"]["stuck_debits"]["oldest"]
    assert item["note"] == (
        "Qmoney has no status call: an operator checks with Qmoney and resolves it"
    )


# --- the metric, whoever resolves --------------------------------------------------


@pytest.mark.asyncio
async def test_a_late_callback_out_of_unknown_is_measured_by_channel(store) -> None:
    setup = Setup(store)
    debit = await setup.unknown()
    setup.after(debit, 3)
    await setup.engine.complete(await setup.get(debit), paid(), "daraja_stk")
    assert setup.resolutions("test_prompt") == 1 and setup.resolutions("qmoney") == 0


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "message"),
    [
        (("5", "1"), "positive and increasing"),
        (("0", "5"), "positive and increasing"),
        (("1", "1"), "positive and increasing"),
        ((), "at least one"),
        (("1", "1.5"), "not whole minutes"),
        (("soon",), "not whole minutes"),
    ],
)
def test_the_backoff_setting_is_checked(minutes: tuple[str, ...], message: str) -> None:
    with pytest.raises(SettingError, match=f"janitor_backoff_minutes: .*{message}"):
        JobsSettings(janitor_backoff_minutes=minutes).check()


def test_the_backoff_and_interval_come_from_the_environment() -> None:
    settings = load_settings(
        env={
            **TEST_ENV,
            "GATEWAY_JOBS_JANITOR_BACKOFF_MINUTES": "2, 10, 30",
            "GATEWAY_JOBS_JANITOR_INTERVAL_SECONDS": "30",
        }
    )
    assert settings.jobs.janitor_backoff() == (
        timedelta(minutes=2),
        timedelta(minutes=10),
        timedelta(minutes=30),
    )
    assert settings.jobs.janitor_interval_seconds == 30
    assert load_settings(env=TEST_ENV).jobs.janitor_backoff() == BACKOFF
    with pytest.raises(ConfigError, match="jobs.janitor_backoff_minutes"):
        load_settings(env={**TEST_ENV, "GATEWAY_JOBS_JANITOR_BACKOFF_MINUTES": "60,15"})
    with pytest.raises(ConfigError, match="jobs.janitor_interval_seconds"):
        load_settings(env={**TEST_ENV, "GATEWAY_JOBS_JANITOR_INTERVAL_SECONDS": "0"})


@pytest.mark.asyncio
async def test_a_debit_held_for_review_is_never_settled_by_a_later_status_answer(store) -> None:
    """The callback's amount did not fit: the debit is held for an operator, and the
    status query's "paid" (which carries no amount, payer or receipt) does not settle it."""
    setup = Setup(store)
    policy = await setup.policy("070707070")
    started = await setup.engine.push(setup.adapter.channel, policy["_id"], "1500.00", None, "op")
    wrong_amount = StatusAnswer(
        ProviderStatus.SUCCEEDED, receipt="RCPT1", amount=100, payer=PHONE, code="0"
    )
    await setup.engine.complete(started, wrong_amount, "daraja_stk")
    held = await setup.get(started)
    assert (held["status"], held["needs_operator"]) == ("unknown", True)
    setup.adapter.statuses = [
        StatusAnswer(ProviderStatus.SUCCEEDED, started.get("provider_reference"), "paid", code="0")
    ]
    setup.after(held, 61)
    summary = await setup.janitor.run()
    assert summary["resolved"] == 0
    after = await setup.get(started)
    assert after["status"] == "unknown" and not after.get("settlement")
