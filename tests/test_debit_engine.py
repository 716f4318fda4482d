"""The debit engine drives any channel's adapter through one state machine: a channel
added to the registry needs no code of the engine's. The adapter here is a test
channel speaking to no provider; Qmoney's own end-to-end tests run the same engine
over real sockets (test_qmoney_debit.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from server.debits.contract import DebitOrder, ProviderRefused, ProviderStatus, StatusAnswer
from server.debits.engine import DebitEngine
from server.debits.registry import Channel, ChannelRegistry, Direction
from server.insurance.schemas import InsureeCreateSchema, PolicyCreateSchema, ProductCreateSchema
from server.integrations.notifications import RecordingNotifier
from server.integrations.transport import ProviderOutcomeUnknown, ProviderRejected
from server.kernel.clock import Clock
from server.kernel.errors import Conflict, ValidationFailed
from server.psps.schemas import PspCreateSchema
from server.startup.services import Services, build_services

from support import make_settings

WRONG = "WRONG"


class ScriptedDebits:
    """A debit channel whose provider answers from a script: each `confirm` takes the
    next answer (a receipt or an error to raise)."""

    channel = "test_wallet"
    label = "Test wallet"
    psp_kind = "mpesa"
    merchant_account = None
    currency = None
    waiting_state = "otp_sent"
    payer_lifetime = timedelta(minutes=5)
    max_code_attempts = 2
    needs_merchant_pin = False
    status_checks = ()
    start_may_reach_payer = False
    max_reference_length = None

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.orders: list[DebitOrder] = []

    def require_ready(self) -> None:
        return None

    def payer_of(self, insuree: dict[str, Any]) -> str:
        if not insuree.get("phone"):
            raise ValidationFailed("no phone", code="no_phone")
        return str(insuree["phone"])

    async def start(self, order: DebitOrder) -> str:
        self.orders.append(order)
        return f"REF-{len(self.orders)}"

    def refused(self, refusal: ProviderRejected) -> Exception:
        return ProviderRefused(refusal.reason, {"provider_code": refusal.code})

    async def confirm(self, provider_reference: str, code: str) -> str:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def wrong_code(self, refusal: ProviderRejected) -> bool:
        return refusal.code == WRONG

    async def status(self, provider_reference: str) -> StatusAnswer:
        return StatusAnswer(ProviderStatus.PENDING, provider_reference)

    def shown(self, transaction: dict[str, Any]) -> dict[str, Any]:
        return {"attempts": transaction["code_attempts"]}


async def _setup(
    store, answers: list[Any]
) -> tuple[DebitEngine, ScriptedDebits, Services, dict, dict]:
    services = build_services(make_settings(), store, None, RecordingNotifier(), Clock())
    adapter = ScriptedDebits(answers)
    registry = ChannelRegistry(
        [Channel("mpesa_c2b", "M-Pesa paybill"), Channel(adapter.channel, adapter.label, adapter)]
    )
    engine = DebitEngine(
        registry,
        services.ledger.transactions,
        services.ledger,
        services.policies,
        services.psps,
        services.settlement,
        Clock(),
    )
    await services.products.create(
        ProductCreateSchema().load(
            {"code": "BASIC", "name": "Basic", "price": "1500.00", "currency": "KES"}
        )
    )
    await services.insurees.create(
        InsureeCreateSchema().load(
            {
                "chf_id": "070707070",
                "first_name": "Awa",
                "last_name": "Jallow",
                "phone": "254708374149",
            }
        )
    )
    policy = await services.policies.create(
        PolicyCreateSchema().load(
            {"chf_id": "070707070", "product_code": "BASIC", "start_date": "2026-01-01"}
        )
    )
    psp = await services.psps.create(
        PspCreateSchema().load(
            {"name": "Test wallet", "kind": "mpesa", "account": "600984", "currency": "KES"}
        )
    )
    return engine, adapter, services, policy, psp


def test_the_registry_lists_channels_in_order_and_refuses_a_second_adapter_per_kind() -> None:
    first, second = ScriptedDebits([]), ScriptedDebits([])
    second.channel = "other_wallet"
    registry = ChannelRegistry(
        [Channel("mpesa_c2b", "M-Pesa paybill"), Channel(first.channel, first.label, first)]
    )
    assert registry.names == ("mpesa_c2b", "test_wallet")
    assert [channel.direction for channel in registry.channels] == [
        Direction.INBOUND,
        Direction.DEBIT,
    ]
    assert registry.debit_for_psp("mpesa") is first and registry.debit("mpesa_c2b") is None
    with pytest.raises(ValueError, match="two debit channels"):
        ChannelRegistry([Channel(first.channel, "a", first), Channel("other_wallet", "b", second)])
    with pytest.raises(ValueError, match="registered twice"):
        ChannelRegistry([Channel("x", "a"), Channel("x", "b")])


@pytest.mark.asyncio
async def test_a_registered_channel_runs_start_to_settlement_through_the_engine(store) -> None:
    engine, adapter, services, policy, psp = await _setup(
        store, [ProviderRejected("test", WRONG, "wrong code"), "RECEIPT-1"]
    )
    started = await engine.initiate(policy["_id"], psp["_id"], "1500.00", "operator")
    assert started["status"] == "otp_sent" and started["channel"] == "test_wallet"
    assert started["provider_reference"] == "REF-1" and started["payer"] == "254708374149"
    assert adapter.orders[0].amount == "1500.00" and adapter.orders[0].merchant_pin is None

    retry = await engine.process(started["_id"], "0000", "operator")
    assert retry["status"] == "otp_sent" and retry["code_attempts"] == 1
    assert engine.channels.shown(retry) == {"attempts": 1}

    done = await engine.process(started["_id"], "1234", "operator")
    assert done["status"] == "succeeded" and done["provider_confirmation"] == "RECEIPT-1"
    assert done["settlement"]["status"] == "settled"
    assert (await services.policies.get(policy["_id"]))["status"] == 2
    assert [step["to"] for step in done["history"]] == [
        "initiated",
        "otp_sent",
        "processing",
        "otp_sent",
        "processing",
        "succeeded",
    ]


@pytest.mark.asyncio
async def test_a_lost_answer_leaves_the_debit_unknown_and_it_is_never_retried(store) -> None:
    engine, _, _, policy, psp = await _setup(store, [ProviderOutcomeUnknown("test", "lost")])
    started = await engine.initiate(policy["_id"], psp["_id"], "1500.00", "operator")
    unknown = await engine.process(started["_id"], "1234", "operator")
    assert unknown["status"] == "unknown"
    with pytest.raises(Conflict):
        await engine.process(started["_id"], "1234", "operator")
    resolved = await engine.resolve(started["_id"], "succeeded", "RCPT", "checked", "operator")
    assert resolved["status"] == "succeeded" and resolved["settlement"]["status"] == "settled"


@pytest.mark.asyncio
async def test_a_payment_of_another_channel_is_not_a_debit(store) -> None:
    engine, _, services, policy, _ = await _setup(store, [])
    transaction = services.ledger.transactions
    await transaction.insert(
        {
            "_id": "t-1",
            "channel": "mpesa_c2b",
            "status": "processing",
            "open": False,
            "policy_uuid": policy["_id"],
            "history": [],
        }
    )
    with pytest.raises(Conflict) as refused:
        await engine.process("t-1", "1234", "operator")
    assert refused.value.code == "not_a_debit"


@pytest.mark.asyncio
async def test_a_debit_stored_before_the_neutral_names_keeps_its_count_and_deadline(store) -> None:
    """A debit in flight across the upgrade: its wrong codes and its deadline were
    stored as `otp_attempts` and `otp_expires_at`."""
    engine, _, services, policy, psp = await _setup(
        store, [ProviderRejected("test", WRONG, "wrong code")]
    )
    started = await engine.initiate(policy["_id"], psp["_id"], "1500.00", "operator")
    await services.ledger.transactions.collection.update_one(
        {"_id": started["_id"]},
        {
            "$set": {"otp_attempts": 1, "otp_expires_at": started["expires_at"]},
            "$unset": {"code_attempts": "", "expires_at": ""},
        },
    )
    failed = await engine.process(started["_id"], "0000", "operator")
    assert failed["status"] == "failed"
    assert failed["failure"]["code"] == "too_many_wrong_otps"


@pytest.mark.asyncio
async def test_a_debit_stored_before_the_neutral_names_still_expires(store) -> None:
    engine, _, services, policy, psp = await _setup(store, [])
    started = await engine.initiate(policy["_id"], psp["_id"], "1500.00", "operator")
    await services.ledger.transactions.collection.update_one(
        {"_id": started["_id"]},
        {
            "$set": {"otp_expires_at": started["created_at"] - timedelta(minutes=1)},
            "$unset": {"expires_at": ""},
        },
    )
    assert await engine.expire_stale() == 1
    assert (await services.ledger.get(started["_id"]))["status"] == "expired"
